/** oidc-provider ships no type declarations; the tests use a handful of its members, typed where they are used. */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export default class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    callback(): (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;
    use(middleware: (ctx: { path: string; method: string; body: unknown }, next: () => Promise<void>) => Promise<void>): void;
  }
}
