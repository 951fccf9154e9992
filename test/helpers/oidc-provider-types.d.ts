/** The part of oidc-provider (which ships no type declarations) that the test helper uses. */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  interface Model {
    save(): Promise<string>;
  }
  interface Client {
    readonly clientId: string;
  }
  interface GrantModel extends Model {
    addOIDCScope(scope: string): void;
  }

  export default class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    callback(): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
    readonly Client: { find(id: string): Promise<Client | undefined> };
    readonly Grant: new (fields: { clientId: string; accountId: string }) => GrantModel;
    readonly RefreshToken: new (fields: Record<string, unknown>) => Model;
  }
}
