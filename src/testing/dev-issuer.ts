/**
 * A development token issuer for tests of services behind authgate: a real key pair made at start, an OpenID
 * discovery document and a JWKS on loopback HTTP, and `mint` for access tokens signed with that key. Point an
 * authgate issuer at `issuer` (discovery) or `jwksUri`, mint tokens in the test, and assert what gets through.
 * Given `users`, it also signs people in with a browser (dev-sign-in.ts) for the clients registered with it.
 */
import { randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { closeServer, listen } from '../lib/listen.js';
import { parseDuration } from '../config/duration.js';
import { DevSignIn, type DevClient } from './dev-sign-in.js';

export type { DevClient } from './dev-sign-in.js';

export type DevAlgorithm = 'ES256' | 'RS256' | 'EdDSA' | 'HS256';

export interface DevIssuerOptions {
  /** Default ES256. HS256 makes a random 32-byte secret (exposed as `secret`; the JWKS then stays empty). */
  readonly algorithm?: DevAlgorithm;
  /** Binds the HTTP server and resolves to the issuer URL. Default: 127.0.0.1 on a free port, the origin as issuer. */
  readonly bind?: (server: Server) => Promise<string>;
  /** `kid` of the key; default its RFC 7638 thumbprint (HS256: no kid unless given). */
  readonly kid?: string;
  /** Defaults for every `mint` (and the tokens a sign-in issues). */
  readonly audience?: string | readonly string[];
  readonly ttl?: number | string;
  /**
   * People who can sign in with a browser: name → claims (`sub` defaults to the name). The authorization page lets
   * anyone pick any of them, without a password. Needs an asymmetric algorithm (clients verify the ID tokens).
   */
  readonly users?: Readonly<Record<string, JWTPayload>>;
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
  /** Lets a relying party sign the `users` in (a public client: PKCE S256, no secret). Needs `users`. */
  registerClient(client: DevClient): void;
  /**
   * Answers an authorization request (the URL a relying party sent the browser to) as `user`, through the same
   * form post the sign-in page makes: resolves with the redirect back to the client (its `code` and `state`, or an
   * `error`). For tests that sign in without a browser.
   */
  signInAs(authorizationUrl: string | URL, user: string): Promise<URL>;
  close(): Promise<void>;
}

const DEFAULT_TTL_SECONDS = 3600;

interface SigningMaterial {
  readonly key: CryptoKey | Uint8Array;
  readonly kid: string | undefined;
  readonly publicKey?: CryptoKey;
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
  return { key: privateKey, kid: keyId, publicKey, publicJwk: { ...jwk, kid: keyId, alg: algorithm, use: 'sig' } };
}

/**
 * Seconds from a number of seconds or a duration text (`-1h` for a token that expired an hour ago); throws on
 * anything else so a typo never mints a token that lives forever.
 */
function ttlSeconds(ttl: number | string): number {
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
  if (options.users !== undefined && algorithm === 'HS256') throw new Error('sign-in needs an asymmetric algorithm: clients verify ID tokens with the published key');
  const material = await signingMaterial(algorithm, options.kid);
  const routes = new Map<string, Handler>();
  const server = createServer((req, res) => serve(routes, req, res));
  const issuer = await (options.bind ?? bindLoopback)(server);
  const base = issuer.replace(/\/+$/, '');
  const discoveryUri = `${base}/.well-known/openid-configuration`;
  const jwksUri = `${base}/jwks.json`;
  const defaults = { audience: options.audience, ttl: options.ttl };
  const sign = (claims: JWTPayload, mintOptions: MintOptions): Promise<string> =>
    signToken({ key: material.key, algorithm, kid: material.kid, issuer }, claims, { ...defaults, ...defined(mintOptions) });
  const signIn = options.users === undefined ? undefined : new DevSignIn({
    issuer, users: options.users, publicKey: material.publicKey as CryptoKey, ttlSeconds: ttlSeconds(options.ttl ?? DEFAULT_TTL_SECONDS),
    sign: (claims, { audience, typ }) => sign(claims, { ...(audience === undefined ? {} : { audience }), header: { typ } }),
  });
  const document = { ...discovery(issuer, jwksUri, algorithm), ...(signIn === undefined ? {} : signInDiscovery(base)) };
  routes.set(new URL(jwksUri).pathname, json({ keys: material.publicJwk ? [material.publicJwk] : [] }));
  routes.set(new URL(discoveryUri).pathname, json(document));
  if (signIn !== undefined) {
    routes.set(new URL(`${base}${AUTHORIZE}`).pathname, (req, res) => signIn.authorize(req, res));
    routes.set(new URL(`${base}${TOKEN}`).pathname, (req, res) => signIn.token(req, res));
    routes.set(new URL(`${base}${END_SESSION}`).pathname, (req, res) => signIn.endSession(req, res));
  }
  return {
    issuer,
    jwksUri,
    discoveryUri,
    algorithm,
    ...(material.secret === undefined ? {} : { secret: material.secret }),
    mint: (claims = {}, mintOptions = {}) => sign(claims, mintOptions),
    registerClient(client) {
      if (signIn === undefined) throw new Error('start the dev issuer with users to sign them in');
      signIn.registerClient(client);
    },
    signInAs: (authorizationUrl, user) => postSignIn(new URL(authorizationUrl), user),
    close: () => closeServer(server),
  };
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

async function postSignIn(authorizationUrl: URL, user: string): Promise<URL> {
  const form = new URLSearchParams(authorizationUrl.searchParams);
  form.set('user', user);
  const endpoint = new URL(authorizationUrl.pathname, authorizationUrl);
  const answer = await fetch(endpoint, { method: 'POST', body: form, redirect: 'manual' });
  const location = answer.headers.get('location');
  if (answer.status !== 302 || location === null) throw new Error(`the dev issuer refused the sign-in (${answer.status})`);
  return new URL(location);
}

const AUTHORIZE = '/authorize';
const TOKEN = '/token';
const END_SESSION = '/end_session';

/** Routes by path; the table is filled once the bound URL (which the documents name) is known. */
function serve(routes: ReadonlyMap<string, Handler>, req: IncomingMessage, res: ServerResponse): void {
  const handler = routes.get((req.url ?? '/').split('?', 1)[0] ?? '');
  if (handler === undefined) {
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}\n');
    return;
  }
  Promise.resolve(handler(req, res)).catch(() => {
    // A body too large or cut short: nothing to answer but a plain refusal.
    if (!res.headersSent) res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}\n');
  });
}

/** A JSON document for GET and HEAD. */
function json(document: Record<string, unknown>): Handler {
  const body = JSON.stringify(document);
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') res.writeHead(405, { allow: 'GET, HEAD' }).end();
    else res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' }).end(body);
  };
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

/** What a relying party reads to sign people in here: authorization code with PKCE S256, public clients. */
function signInDiscovery(base: string): Record<string, unknown> {
  return {
    authorization_endpoint: `${base}${AUTHORIZE}`,
    token_endpoint: `${base}${TOKEN}`,
    end_session_endpoint: `${base}${END_SESSION}`,
    response_types_supported: ['code'],
    grant_types_supported: ['authorization_code'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['none'],
    scopes_supported: ['openid', 'email', 'profile'],
    authorization_response_iss_parameter_supported: true,
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
