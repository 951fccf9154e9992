/**
 * The dev issuer of `authgate demo`: the general test issuer with an RS256 key, bound where the demo config
 * expects it, minting demo access tokens (RFC 9068 shape: typ at+jwt, jti, aud) for the demo to print, and signing
 * the demo users in with a browser (a page to pick one; no passwords) for the gateway's browser sign-in.
 */
import type { Server } from 'node:http';
import type { JWTPayload } from 'jose';
import { startDevIssuer as startGeneralIssuer, type DevClient } from '../testing/dev-issuer.js';
import { boundUrl, demoAddress, listenForDemo } from './listen.js';

export interface DemoUser {
  readonly subject: string;
  readonly email: string;
  readonly roles: readonly string[];
  readonly permissions: readonly string[];
}

export interface MintOptions {
  readonly audience: string;
  readonly lifetimeSeconds: number;
}

export interface DevIssuer {
  /** The `iss` of every minted token, and the base of the discovery document. */
  readonly url: string;
  readonly discoveryUrl: string;
  readonly jwksUrl: string;
  mint(user: DemoUser, options: MintOptions): Promise<string>;
  /** The gateway's sign-in client: where codes may go, and the audience of its access tokens. */
  registerClient(client: DevClient): void;
  close(): Promise<void>;
}

export const DEV_ISSUER_ENV = 'AUTHGATE_DEMO_ISSUER';

/**
 * Start on the host and port of `requestedUrl` (port 0 picks a free one; `url` then carries the real port); `users`
 * (by name) may sign in with a browser.
 */
export async function startDevIssuer(requestedUrl: string, users: Readonly<Record<string, DemoUser>>): Promise<DevIssuer> {
  const address = demoAddress(requestedUrl, DEV_ISSUER_ENV);
  const bind = async (server: Server): Promise<string> =>
    boundUrl(requestedUrl, address, await listenForDemo(server, address, 'dev issuer', DEV_ISSUER_ENV));
  const signIn = Object.fromEntries(Object.entries(users).map(([name, user]) => [name, claimsOf(user)]));
  const issuer = await startGeneralIssuer({ algorithm: 'RS256', bind, users: signIn });
  return {
    url: issuer.issuer,
    discoveryUrl: issuer.discoveryUri,
    jwksUrl: issuer.jwksUri,
    mint: (user, options) =>
      issuer.mint({ ...claimsOf(user), client_id: 'authgate-demo-cli' }, { audience: options.audience, ttl: options.lifetimeSeconds }),
    registerClient: (client) => issuer.registerClient(client),
    close: () => issuer.close(),
  };
}

function claimsOf(user: DemoUser): JWTPayload {
  return { sub: user.subject, email: user.email, roles: [...user.roles], permissions: [...user.permissions] };
}
