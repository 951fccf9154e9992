import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IssuerConfig } from '../../src/config/types.js';
import { signRaw, type Part } from './tokens.js';

/**
 * A real OpenID provider on loopback for tests: discovery and JWKS over HTTP with freshly generated keys,
 * misbehaviour switches for the JWKS endpoint, and `sign` to mint tokens with its keys.
 */

export type IdpKeyType = 'rsa' | 'rsa-pss' | 'ec' | 'ed' | 'rsa-1024';

export interface IdpKey {
  readonly kid: string;
  readonly alg: string;
  readonly type: IdpKeyType;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** The JWK as published (public part, kid, alg, use). */
  readonly jwk: Record<string, unknown>;
}

/** How the JWKS endpoint answers. */
export type JwksBehaviour = 'ok' | 'error-500' | 'redirect' | 'html' | 'hang' | 'oversized';

export interface IdpOptions {
  /** Path under the server root used as the issuer (default `/`, so `iss` is `http://127.0.0.1:PORT/`). */
  readonly issuerPath?: string;
  /** Audience put in `aud` by default. */
  readonly audience?: string;
  /** Key types to generate and publish, in order; the first is the default signing key. Default: rsa, rsa-pss, ec, ed. */
  readonly keys?: readonly IdpKeyType[];
  /** Sent as `Cache-Control` with the JWKS. */
  readonly cacheControl?: string;
  /** Overrides `jwks_uri` in the discovery document. */
  readonly discoveryJwksUri?: string;
}

export interface SignOptions {
  /** Which published key (by type, or an IdpKey from this IdP) signs; default the first key. */
  readonly key?: IdpKeyType | IdpKey;
  /** Header `alg`; defaults to the key's. */
  readonly alg?: string;
  /** Header `kid`; defaults to the key's, `null` leaves it out. */
  readonly kid?: string | null;
  /** Extra header parameters (e.g. `typ`, `crit`, `jwk`); `undefined` values remove a default. */
  readonly header?: Record<string, unknown>;
}

export interface Idp {
  readonly url: string;
  readonly issuer: string;
  readonly audience: string;
  readonly jwksUri: string;
  /** JWKS requests received (whatever was answered). */
  readonly jwksFetches: number;
  readonly discoveryFetches: number;
  /** Published keys, default signing key first. */
  readonly keys: readonly IdpKey[];
  key(type: IdpKeyType): IdpKey;
  /** Mints a token: defaults iss, aud, sub, jti, iat = now, exp = now + 5 min; a claim set to `undefined` is left out. */
  sign(claims?: Record<string, unknown>, options?: SignOptions): string;
  /** Signs exact payload bytes or JSON text (for duplicate claims, invalid UTF-8, non-object payloads). */
  signPayload(payload: Part, options?: SignOptions): string;
  /** The claims `sign` would use, merged with `claims`. */
  claims(claims?: Record<string, unknown>): Record<string, unknown>;
  /** Replaces the key of `type` with a new one (new kid); `keepOld` keeps publishing the old one too. */
  rotate(type: IdpKeyType, options?: { keepOld?: boolean }): IdpKey;
  /** Generates a key of `type` without publishing it (an attacker's key, or one to publish later). */
  generateKey(type: IdpKeyType): IdpKey;
  /** Publishes another key (e.g. one from `generateKey`, or one from another IdP). */
  publish(key: IdpKey): void;
  setJwksBehaviour(behaviour: JwksBehaviour): void;
  /** Resolves on the next JWKS request (after it was counted). */
  nextJwksFetch(): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_KEYS: readonly IdpKeyType[] = ['rsa', 'rsa-pss', 'ec', 'ed'];
const ALG_OF: Readonly<Record<IdpKeyType, string>> = { rsa: 'RS256', 'rsa-pss': 'PS256', ec: 'ES256', ed: 'EdDSA', 'rsa-1024': 'RS256' };

function generatePair(type: IdpKeyType): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (type) {
    case 'rsa':
    case 'rsa-pss':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
    case 'rsa-1024':
      return generateKeyPairSync('rsa', { modulusLength: 1024 });
    case 'ec':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'ed':
      return generateKeyPairSync('ed25519');
  }
}

export function generateIdpKey(type: IdpKeyType): IdpKey {
  const { privateKey, publicKey } = generatePair(type);
  const kid = `${type}-${randomUUID().slice(0, 8)}`;
  const alg = ALG_OF[type];
  return { kid, alg, type, privateKey, publicKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } };
}

export async function startIdp(options: IdpOptions = {}): Promise<Idp> {
  let published: IdpKey[] = (options.keys ?? DEFAULT_KEYS).map(generateIdpKey);
  let behaviour: JwksBehaviour = 'ok';
  let jwksFetches = 0;
  let discoveryFetches = 0;
  const fetchWaiters: (() => void)[] = [];
  const hanging = new Set<ServerResponse>();

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '').split('?')[0];
    if (path === discoveryPath) {
      discoveryFetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ issuer, jwks_uri: options.discoveryJwksUri ?? jwksUri, id_token_signing_alg_values_supported: ['RS256'] }));
      return;
    }
    if (path !== '/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    jwksFetches++;
    for (const wake of fetchWaiters.splice(0)) wake();
    switch (behaviour) {
      case 'ok': {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (options.cacheControl) headers['cache-control'] = options.cacheControl;
        res.writeHead(200, headers);
        res.end(JSON.stringify({ keys: published.map((key) => key.jwk) }));
        return;
      }
      case 'error-500':
        res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"oops"}');
        return;
      case 'redirect':
        res.writeHead(302, { location: `${base}/elsewhere/jwks.json` }).end();
        return;
      case 'html':
        res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>Sign in</body></html>');
        return;
      case 'oversized':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ keys: published.map((key) => key.jwk), padding: 'x'.repeat(2 * 1024 * 1024) }));
        return;
      case 'hang':
        hanging.add(res);
        return;
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}`;
  const issuerPath = options.issuerPath ?? '/';
  const issuer = `${base}${issuerPath}`;
  const discoveryPath = `${issuerPath.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const jwksUri = `${base}/jwks.json`;
  const audience = options.audience ?? 'https://api.test';

  const resolveKey = (choice: SignOptions['key']): IdpKey => {
    if (choice !== undefined && typeof choice !== 'string') return choice;
    const key = choice === undefined ? published[0] : published.find((candidate) => candidate.type === choice);
    if (key === undefined) throw new Error(`no published ${choice ?? 'default'} key`);
    return key;
  };

  const claims = (overrides: Record<string, unknown> = {}): Record<string, unknown> => {
    const now = Math.floor(Date.now() / 1000);
    const merged: Record<string, unknown> = { iss: issuer, aud: audience, sub: 'user-1', jti: randomUUID(), iat: now, exp: now + 300, ...overrides };
    for (const [name, value] of Object.entries(merged)) if (value === undefined) delete merged[name];
    return merged;
  };

  const signPayload = (payload: Part, signOptions: SignOptions = {}): string => {
    const key = resolveKey(signOptions.key);
    const alg = signOptions.alg ?? key.alg;
    const header: Record<string, unknown> = { alg, typ: 'JWT', kid: signOptions.kid === null ? undefined : (signOptions.kid ?? key.kid), ...signOptions.header };
    for (const [name, value] of Object.entries(header)) if (value === undefined) delete header[name];
    return signRaw(alg, key.privateKey, header, payload);
  };

  return {
    url: base,
    issuer,
    audience,
    jwksUri,
    get jwksFetches() {
      return jwksFetches;
    },
    get discoveryFetches() {
      return discoveryFetches;
    },
    get keys() {
      return published;
    },
    key: (type) => resolveKey(type),
    claims,
    sign: (overrides, signOptions) => signPayload(claims(overrides), signOptions),
    signPayload,
    rotate(type, rotateOptions = {}) {
      const fresh = generateIdpKey(type);
      published = rotateOptions.keepOld ? [...published, fresh] : published.map((key) => (key.type === type ? fresh : key));
      if (!published.includes(fresh)) published.push(fresh);
      return fresh;
    },
    generateKey: generateIdpKey,
    publish(key) {
      published = [...published, key];
    },
    setJwksBehaviour(next) {
      behaviour = next;
    },
    nextJwksFetch: () => new Promise<void>((resolve) => fetchWaiters.push(resolve)),
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

/**
 * The `issuers:` entry (named `idp`) a gateway YAML needs to trust `idp` through its JWKS URL, RS256 only;
 * `extraLines` are further keys of the entry (e.g. `jwks_cache: { … }`).
 */
export function issuerYaml(idp: Pick<Idp, 'issuer' | 'audience' | 'jwksUri'>, extraLines: readonly string[] = []): string {
  return [
    '  idp:',
    `    issuer: ${idp.issuer}`,
    `    jwks_uri: ${idp.jwksUri}`,
    `    audiences: [${idp.audience}]`,
    '    algorithms: [RS256]',
    ...extraLines.map((line) => `    ${line}`),
  ].join('\n');
}

/**
 * An IssuerConfig trusting `idp` through its JWKS URL, with settings a test would expect: all four asymmetric
 * algorithms of the default keys, 30 s skew, and a JWKS cache that does not refetch within 30 s.
 */
export function issuerConfigFor(idp: Pick<Idp, 'issuer' | 'audience' | 'jwksUri'>, overrides: Partial<IssuerConfig> = {}): IssuerConfig {
  return {
    name: 'idp',
    issuer: idp.issuer,
    keys: { kind: 'jwks_uri', url: idp.jwksUri },
    introspection: undefined,
    certificateBound: false,
    dpop: undefined,
    audiences: [idp.audience],
    algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    clockSkewMs: 30_000,
    maxTokenAgeMs: undefined,
    tokenTypes: undefined,
    requireClaims: undefined,
    claims: { subject: 'sub', email: 'email', roles: 'roles', permissions: 'permissions', scopes: 'scope', clientId: 'client_id' },
    jwksCache: { maxAgeMs: 600_000, minRefetchIntervalMs: 30_000, staleIfErrorMs: 86_400_000 },
    ...overrides,
  };
}
