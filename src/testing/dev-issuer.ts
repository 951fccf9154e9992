/**
 * A development token issuer for tests of services behind authgate: a real key pair made at start, an OpenID
 * discovery document and a JWKS on loopback HTTP, and `mint` for access tokens signed with that key. Point an
 * authgate issuer at `issuer` (discovery) or `jwksUri`, mint tokens in the test, and assert what gets through.
 */
import { randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { closeServer, listen } from '../lib/listen.js';
import { parseDuration } from '../config/duration.js';

export type DevAlgorithm = 'ES256' | 'RS256' | 'EdDSA' | 'HS256';

export interface DevIssuerOptions {
  /** Default ES256. HS256 makes a random 32-byte secret (exposed as `secret`; the JWKS then stays empty). */
  readonly algorithm?: DevAlgorithm;
  /** Binds the HTTP server and resolves to the issuer URL. Default: 127.0.0.1 on a free port, the origin as issuer. */
  readonly bind?: (server: Server) => Promise<string>;
  /** `kid` of the key; default its RFC 7638 thumbprint (HS256: no kid unless given). */
  readonly kid?: string;
  /** Defaults for every `mint`. */
  readonly audience?: string | readonly string[];
  readonly ttl?: number | string;
}

export interface MintOptions {
  readonly audience?: string | readonly string[];
  /** Seconds, or a duration such as `30s`, `10m`, `1h`. Default 1h; negative mints an expired token. */
  readonly ttl?: number | string;
  /** Replaces the key's `kid` for this token (e.g. to test an unknown key id). */
  readonly kid?: string;
  /** Merged over the protected header `{ alg, typ: 'at+jwt', kid }` (e.g. `{ typ: 'JWT' }`). */
  readonly header?: Readonly<Record<string, unknown>>;
}

export interface DevIssuer {
  /** The `iss` of every token; discovery is at `{issuer}/.well-known/openid-configuration`. */
  readonly issuer: string;
  readonly jwksUri: string;
  readonly discoveryUri: string;
  readonly algorithm: DevAlgorithm;
  /** HS256 only: the shared secret, for an authgate issuer's `secret:`. */
  readonly secret?: string;
  /** Claims win over the defaults (`iss`, `iat`, `exp`, `jti`, `aud`), so a test can mint any shape it needs. */
  mint(claims?: JWTPayload, options?: MintOptions): Promise<string>;
  close(): Promise<void>;
}

const DEFAULT_TTL_SECONDS = 3600;

interface SigningMaterial {
  readonly key: CryptoKey | Uint8Array;
  readonly kid: string | undefined;
  readonly publicJwk?: JWK;
  readonly secret?: string;
}

async function signingMaterial(algorithm: DevAlgorithm, kid: string | undefined): Promise<SigningMaterial> {
  if (algorithm === 'HS256') {
    const secret = randomBytes(32).toString('base64url');
    return { key: new TextEncoder().encode(secret), kid, secret };
  }
  const { privateKey, publicKey } = await generateKeyPair(algorithm, { modulusLength: 2048 });
  const jwk = await exportJWK(publicKey);
  const keyId = kid ?? (await calculateJwkThumbprint(jwk));
  return { key: privateKey, kid: keyId, publicJwk: { ...jwk, kid: keyId, alg: algorithm, use: 'sig' } };
}

/**
 * Seconds from a number of seconds or a duration text (`-1h` for a token that expired an hour ago); throws on
 * anything else so a typo never mints a token that lives forever.
 */
export function ttlSeconds(ttl: number | string): number {
  if (typeof ttl === 'number') return ttl;
  const sign = ttl.startsWith('-') ? -1 : 1;
  const ms = parseDuration(sign < 0 ? ttl.slice(1) : ttl);
  if (ms === undefined) throw new Error(`ttl "${ttl}" is not a duration such as 30s, 10m, 1h or -1h`);
  return sign * Math.floor(ms / 1000);
}

function bindLoopback(server: Server): Promise<string> {
  return listen(server, { host: '127.0.0.1', port: 0 });
}

export async function startDevIssuer(options: DevIssuerOptions = {}): Promise<DevIssuer> {
  const algorithm = options.algorithm ?? 'ES256';
  const material = await signingMaterial(algorithm, options.kid);
  const documents = new Map<string, string>();
  const server = documentServer(documents);
  const issuer = await (options.bind ?? bindLoopback)(server);
  const base = issuer.replace(/\/+$/, '');
  const discoveryUri = `${base}/.well-known/openid-configuration`;
  const jwksUri = `${base}/jwks.json`;
  documents.set(new URL(jwksUri).pathname, JSON.stringify({ keys: material.publicJwk ? [material.publicJwk] : [] }));
  documents.set(new URL(discoveryUri).pathname, JSON.stringify(discovery(issuer, jwksUri, algorithm)));

  const defaults = { audience: options.audience, ttl: options.ttl };
  return {
    issuer,
    jwksUri,
    discoveryUri,
    algorithm,
    ...(material.secret === undefined ? {} : { secret: material.secret }),
    mint: (claims = {}, mintOptions = {}) =>
      signToken({ key: material.key, algorithm, kid: material.kid, issuer }, claims, { ...defaults, ...defined(mintOptions) }),
    close: () => closeServer(server),
  };
}

/** Serves JSON documents by path; filled once the bound URL (which they name) is known. */
function documentServer(documents: ReadonlyMap<string, string>): Server {
  return createServer((req, res) => {
    const body = req.method === 'GET' || req.method === 'HEAD' ? documents.get((req.url ?? '/').split('?', 1)[0] ?? '') : undefined;
    if (body === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' }).end(body);
  });
}

function discovery(issuer: string, jwksUri: string, algorithm: DevAlgorithm): Record<string, unknown> {
  return {
    issuer,
    jwks_uri: jwksUri,
    id_token_signing_alg_values_supported: [algorithm],
    response_types_supported: ['token'],
    subject_types_supported: ['public'],
  };
}

function defined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export interface TokenSigner {
  readonly key: CryptoKey | Uint8Array | KeyObject;
  readonly algorithm: string;
  readonly kid: string | undefined;
  readonly issuer: string;
}

/** One access token (RFC 9068 shape by default): iss, iat, exp, jti, aud from the options, then the claims given. */
export async function signToken(signer: TokenSigner, claims: JWTPayload, options: MintOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const audience = options.audience === undefined ? {} : { aud: typeof options.audience === 'string' ? options.audience : [...options.audience] };
  const payload: JWTPayload = {
    iss: signer.issuer,
    iat: now,
    exp: now + ttlSeconds(options.ttl ?? DEFAULT_TTL_SECONDS),
    jti: randomUUID(),
    ...audience,
    ...claims,
  };
  const kid = options.kid ?? signer.kid;
  const header = { alg: signer.algorithm, typ: 'at+jwt', ...(kid === undefined ? {} : { kid }), ...options.header };
  return new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(signer.key);
}
