/**
 * The dev issuer of `authgate demo`: the general test issuer with an RS256 key, bound where the demo config
 * expects it, minting demo access tokens (RFC 9068 shape: typ at+jwt, jti, aud). It never issues tokens over
 * HTTP; the demo prints the ones it mints.
 */
import type { Server } from 'node:http';
import { startDevIssuer as startGeneralIssuer } from '../testing/dev-issuer.js';
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
  close(): Promise<void>;
}

export const DEV_ISSUER_ENV = 'AUTHGATE_DEMO_ISSUER';

/** Start on the host and port of `requestedUrl` (port 0 picks a free one; `url` then carries the real port). */
export async function startDevIssuer(requestedUrl: string): Promise<DevIssuer> {
  const address = demoAddress(requestedUrl, DEV_ISSUER_ENV);
  const bind = async (server: Server): Promise<string> =>
    boundUrl(requestedUrl, address, await listenForDemo(server, address, 'dev issuer', DEV_ISSUER_ENV));
  const issuer = await startGeneralIssuer({ algorithm: 'RS256', bind });
  return {
    url: issuer.issuer,
    discoveryUrl: issuer.discoveryUri,
    jwksUrl: issuer.jwksUri,
    mint: (user, options) =>
      issuer.mint(
        { sub: user.subject, email: user.email, roles: [...user.roles], permissions: [...user.permissions], client_id: 'authgate-demo-cli' },
        { audience: options.audience, ttl: options.lifetimeSeconds },
      ),
    close: () => issuer.close(),
  };
}
