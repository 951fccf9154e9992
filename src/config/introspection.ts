import { readClientKey } from './client-key.js';
import { MINUTE, SECOND } from './duration.js';
import { keySlot, type Reader, type Section, type Slot } from './reader.js';
import { Secret } from './secret.js';
import { parseKeyServerUrl } from './values.js';

/** An issuer's `introspection:` entry: where opaque tokens are checked, how the gateway authenticates there. */
export interface IntrospectionConfig {
  /** Undefined: `introspection_endpoint` of the issuer's discovery document. */
  readonly endpoint: string | undefined;
  readonly clientId: string;
  readonly auth: IntrospectionClientAuth;
  readonly cache: IntrospectionCacheConfig;
  /** Whether this issuer's JWTs are introspected too (revocation at the identity provider). */
  readonly jwt: boolean;
  /** Requests to the endpoint at once; as many more wait, and uncached tokens past that are answered 503. */
  readonly maxConcurrent: number;
}

export type IntrospectionClientAuth =
  | { readonly method: 'client_secret_basic' | 'client_secret_post'; readonly secret: Secret }
  /** RFC 7523 client assertion signed with this key; `algorithm` follows from the key type unless given. */
  | { readonly method: 'private_key_jwt'; readonly keyFile: string; readonly algorithm: string };

export interface IntrospectionCacheConfig {
  readonly maxTtlMs: number;
  readonly negativeTtlMs: number;
  /** 0: nothing cached, every request is introspected. */
  readonly maxEntries: number;
}

const CLIENT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] as const;
const INTROSPECTION_KEYS = ['endpoint', 'client_id', 'client_secret', 'auth', 'private_key_file', 'algorithm', 'cache', 'jwt', 'max_concurrent'];
/** Enough for an identity provider's usual latency at thousands of new tokens a second. */
const DEFAULT_MAX_CONCURRENT = 64;

/**
 * Reads `issuers.<name>.introspection`. `discovery`: whether the issuer has `discovery: true`, which lets the
 * endpoint come from its discovery document. Undefined when the slot is empty or has problems (recorded).
 */
export function readIntrospection(r: Reader, slot: Slot, options: { baseDir: string; discovery: boolean }): IntrospectionConfig | undefined {
  if (slot.node === undefined) return undefined;
  const s = r.section(slot, INTROSPECTION_KEYS);
  const endpoint = readEndpoint(r, s, slot, options.discovery);
  const clientIdSlot = s.slot('client_id');
  const clientId = r.required(clientIdSlot) ? r.string(clientIdSlot) : undefined;
  const auth = readClientAuth(r, s, options.baseDir);
  const cache = readCache(r, s.slot('cache'));
  const jwt = r.boolean(s.slot('jwt')) ?? false;
  const maxConcurrent = r.integer(s.slot('max_concurrent'), 1) ?? DEFAULT_MAX_CONCURRENT;
  if (endpoint === null || clientId === undefined || auth === undefined) return undefined;
  return { endpoint, clientId, auth, cache, jwt, maxConcurrent };
}

/** Undefined: discovery; null: a problem was recorded. */
function readEndpoint(r: Reader, s: Section, slot: Slot, discovery: boolean): string | undefined | null {
  const endpointSlot = s.slot('endpoint');
  if (!s.has('endpoint')) {
    if (discovery) return undefined;
    r.problem(keySlot(slot), 'needs an endpoint (or discovery: true on the issuer, to take it from the discovery document)');
    return null;
  }
  const text = r.string(endpointSlot);
  if (text === undefined) return null;
  const url = parseKeyServerUrl(text);
  if (typeof url !== 'string') return url.href;
  r.problem(endpointSlot, url);
  return null;
}

function readClientAuth(r: Reader, s: Section, baseDir: string): IntrospectionClientAuth | undefined {
  const method = s.has('auth') ? r.oneOf(s.slot('auth'), CLIENT_AUTH_METHODS) : 'client_secret_basic';
  if (method === undefined) return undefined;
  const [needed, refused] = method === 'private_key_jwt' ? ['private_key_file', 'client_secret'] : ['client_secret', 'private_key_file'];
  if (s.has(refused)) return r.problem(keySlot(s.slot(refused)), `is not used with auth: ${method}`);
  if (method !== 'private_key_jwt' && s.has('algorithm')) return r.problem(keySlot(s.slot('algorithm')), `is not used with auth: ${method}`);
  if (!r.required(s.slot(needed))) return undefined;
  if (method !== 'private_key_jwt') {
    const secret = r.string(s.slot('client_secret'));
    return secret === undefined ? undefined : { method, secret: new Secret(secret) };
  }
  const key = readClientKey(r, s.slot('private_key_file'), baseDir, s.slot('algorithm'));
  return key === undefined ? undefined : { method, ...key };
}

function readCache(r: Reader, slot: Slot): IntrospectionCacheConfig {
  const s = r.section(slot, ['max_ttl', 'negative_ttl', 'max_entries']);
  return {
    maxTtlMs: r.duration(s.slot('max_ttl'), { positive: true }) ?? 5 * MINUTE,
    negativeTtlMs: r.duration(s.slot('negative_ttl')) ?? 10 * SECOND,
    maxEntries: r.integer(s.slot('max_entries'), 0) ?? 100_000,
  };
}
