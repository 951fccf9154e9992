/**
 * A development OpenID issuer for `authgate demo`: a fresh RS256 key pair per run, discovery and JWKS over
 * loopback HTTP, and a `mint` function for demo access tokens (RFC 9068 shape: typ at+jwt, jti, aud).
 * It never issues tokens over HTTP; the demo prints the ones it mints.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { closeServer } from '../lib/listen.js';
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
  const { privateKey, publicKey } = await generateKeyPair('RS256', { modulusLength: 2048 });
  const kid = `demo-${randomUUID()}`;
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } satisfies JWK] });
  const discoveryPath = `${address.basePath}/.well-known/openid-configuration`;
  const jwksPath = `${address.basePath}/jwks.json`;
  // Filled once the real port is known: the discovery document names it.
  const documents = new Map<string, string>();

  const server = createServer((req, res) => {
    const body = req.method === 'GET' || req.method === 'HEAD' ? documents.get((req.url ?? '/').split('?', 1)[0] ?? '') : undefined;
    if (body === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' }).end(body);
  });
  const port = await listenForDemo(server, address, 'dev issuer', DEV_ISSUER_ENV);
  const url = boundUrl(requestedUrl, address, port);
  const origin = new URL(url).origin;
  documents.set(jwksPath, jwks);
  documents.set(
    discoveryPath,
    JSON.stringify({
      issuer: url,
      jwks_uri: `${origin}${jwksPath}`,
      id_token_signing_alg_values_supported: ['RS256'],
      response_types_supported: ['token'],
      subject_types_supported: ['public'],
    }),
  );

  return {
    url,
    discoveryUrl: `${origin}${discoveryPath}`,
    jwksUrl: `${origin}${jwksPath}`,
    mint: (user, options) => mintToken(privateKey, kid, url, user, options),
    close: () => closeServer(server),
  };
}

function mintToken(key: CryptoKey, kid: string, issuer: string, user: DemoUser, options: MintOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ email: user.email, roles: [...user.roles], permissions: [...user.permissions], client_id: 'authgate-demo-cli' })
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid })
    .setIssuer(issuer)
    .setSubject(user.subject)
    .setAudience(options.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + options.lifetimeSeconds)
    .setJti(randomUUID())
    .sign(key);
}
