import { constants, createHmac, createSecretKey, KeyObject, timingSafeEqual, verify, type webcrypto } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { importJWK, type JWK } from 'jose';
import type { IssuerConfig, IssuerKeySource } from '../../../config/types.js';
import { parseKeyServerUrl } from '../../../config/values.js';
import { isPlainObject } from '../../../lib/json.js';
import type { Logger } from '../../../observability/log.js';
import type { Metrics } from '../../../observability/metrics.js';
import { fetchJson } from '../../../http/fetch-json.js';
import { FetchError, type FetchLimits } from '../../../http/json-request.js';
import type { IssuerStatus } from '../../../chain/kinds.js';

/**
 * The verification keys of one issuer and their lifecycle (SPEC §4): loaded at start-up, refreshed in the
 * background before they go stale, refetched once (single-flight, rate-limited) when a token names an unknown
 * `kid`, and kept through IdP outages for `stale_if_error`. Keys come only from configuration: never from a token.
 */
export interface KeySetDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Epoch ms. */
  readonly now: () => number;
  readonly fetchLimits: FetchLimits;
}

type CryptoKey = webcrypto.CryptoKey;

/**
 * How each JWS algorithm is checked with node:crypto (RFC 7518 §3). `signatureLength` is the only length a
 * signature may have: ECDSA signatures are raw r||s of the curve's size (never DER), HMACs the hash's size.
 */
interface SignatureScheme {
  /** Digest name for node:crypto; null for EdDSA, which hashes internally. */
  readonly hash: string | null;
  readonly kind: 'rsa' | 'rsa-pss' | 'ecdsa' | 'eddsa' | 'hmac';
  readonly signatureLength?: number;
}

const SCHEMES: Readonly<Record<string, SignatureScheme>> = {
  RS256: { hash: 'sha256', kind: 'rsa' },
  RS384: { hash: 'sha384', kind: 'rsa' },
  RS512: { hash: 'sha512', kind: 'rsa' },
  PS256: { hash: 'sha256', kind: 'rsa-pss' },
  PS384: { hash: 'sha384', kind: 'rsa-pss' },
  PS512: { hash: 'sha512', kind: 'rsa-pss' },
  ES256: { hash: 'sha256', kind: 'ecdsa', signatureLength: 64 },
  ES384: { hash: 'sha384', kind: 'ecdsa', signatureLength: 96 },
  ES512: { hash: 'sha512', kind: 'ecdsa', signatureLength: 132 },
  EdDSA: { hash: null, kind: 'eddsa' },
  HS256: { hash: 'sha256', kind: 'hmac', signatureLength: 32 },
  HS384: { hash: 'sha384', kind: 'hmac', signatureLength: 48 },
  HS512: { hash: 'sha512', kind: 'hmac', signatureLength: 64 },
};

const HASH_BYTES: Readonly<Record<string, number>> = { sha256: 32, sha384: 48, sha512: 64 };

/**
 * A public key or HMAC secret bound to the one algorithm it was imported for, checked with a synchronous
 * `crypto.verify` (or an HMAC and a constant-time comparison): no WebCrypto promise, no thread-pool hop, no
 * re-parsing of the token. Built once per key, so a verification allocates only the signature bytes.
 */
export class VerificationKey {
  private readonly hash: string | null;
  private readonly signatureLength: number | undefined;
  /** What `crypto.verify` takes: the key with the padding or signature encoding the algorithm prescribes. */
  private readonly verifyInput: KeyObject | { key: KeyObject; padding?: number; saltLength?: number; dsaEncoding?: 'ieee-p1363' };
  private readonly hmacKey: KeyObject | undefined;

  constructor(
    readonly alg: string,
    key: KeyObject,
  ) {
    const scheme = SCHEMES[alg];
    if (scheme === undefined) throw new Error(`no signature scheme for ${alg}`);
    this.hash = scheme.hash;
    this.signatureLength = scheme.signatureLength;
    this.hmacKey = scheme.kind === 'hmac' ? key : undefined;
    if (scheme.kind === 'rsa-pss') {
      // RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash.
      this.verifyInput = { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: HASH_BYTES[scheme.hash as string] as number };
    } else if (scheme.kind === 'ecdsa') {
      this.verifyInput = { key, dsaEncoding: 'ieee-p1363' };
    } else {
      this.verifyInput = key;
    }
  }

  /** Whether `signature` is this key's signature of `signingInput` (the token's `header.payload` bytes). */
  verifies(signingInput: Buffer, signature: Buffer): boolean {
    if (this.signatureLength !== undefined && signature.length !== this.signatureLength) return false;
    if (this.hmacKey !== undefined) {
      return timingSafeEqual(createHmac(this.hash as string, this.hmacKey).update(signingInput).digest(), signature);
    }
    return verify(this.hash, signingInput, this.verifyInput, signature);
  }
}

/** Candidate keys, or why there are none. Each success is built with the key set, so a lookup allocates nothing. */
export type KeyLookup =
  | { readonly ok: true; readonly keys: readonly VerificationKey[] }
  | { readonly ok: false; readonly reason: 'unknown_kid' | 'unavailable' };

interface Candidates {
  readonly ok: true;
  readonly keys: VerificationKey[];
}

export const UNKNOWN_KID: KeyLookup = Object.freeze({ ok: false, reason: 'unknown_kid' });
const UNAVAILABLE: KeyLookup = Object.freeze({ ok: false, reason: 'unavailable' });

interface AlgorithmKeys {
  readonly byKid: Map<string, Candidates>;
  readonly all: Candidates;
}

type KeyIndex = ReadonlyMap<string, AlgorithmKeys>;

export const MIN_RSA_BITS = 2048;
/** Floor for any scheduled fetch, so `max-age=0` or a tiny interval cannot turn into a fetch loop. */
const MIN_REFRESH_DELAY_MS = 250;
const MAX_RETRY_DELAY_MS = 5 * 60_000;
/** setTimeout fires at once for anything longer than this (2^31 - 1 ms). */
const MAX_TIMER_DELAY_MS = 2_147_483_647;
/** Refresh when this share of the freshness lifetime has passed, so a slow IdP never leaves us on expired keys. */
const REFRESH_AT = 0.8;

/** Which JWK shapes can verify which JWS algorithm (RFC 7518 §3, RFC 8037). */
export function jwkFitsAlgorithm(jwk: JWK, alg: string): boolean {
  switch (alg) {
    case 'RS256': case 'RS384': case 'RS512': case 'PS256': case 'PS384': case 'PS512':
      return jwk.kty === 'RSA';
    case 'ES256':
      return jwk.kty === 'EC' && jwk.crv === 'P-256';
    case 'ES384':
      return jwk.kty === 'EC' && jwk.crv === 'P-384';
    case 'ES512':
      return jwk.kty === 'EC' && jwk.crv === 'P-521';
    case 'EdDSA':
      return jwk.kty === 'OKP' && jwk.crv === 'Ed25519';
    default:
      return false;
  }
}

function addKey(index: Map<string, AlgorithmKeys>, alg: string, kid: string | undefined, key: VerificationKey): void {
  let entry = index.get(alg);
  if (entry === undefined) {
    entry = { byKid: new Map(), all: { ok: true, keys: [] } };
    index.set(alg, entry);
  }
  entry.all.keys.push(key);
  if (kid !== undefined) {
    const sameKid = entry.byKid.get(kid);
    if (sameKid) sameKid.keys.push(key);
    else entry.byKid.set(kid, { ok: true, keys: [key] });
  }
}

/**
 * Imports every usable signing key of a JWKS for the issuer's allowed algorithms. Skipped: `use` other than `sig`,
 * `key_ops` without `verify`, symmetric and unknown key types, RSA under 2048 bits, and a key whose own `alg`
 * is not allowed. Returns the index and a fingerprint of what was accepted (to notice real key changes).
 */
async function importJwks(
  jwks: unknown,
  algorithms: readonly string[],
  onSkip: (kid: string | undefined, why: string) => void,
): Promise<{ index: KeyIndex; fingerprint: string; count: number }> {
  if (!isPlainObject(jwks) || !Array.isArray(jwks.keys)) throw new FetchError('not a JWK Set (no "keys" array)');
  const index = new Map<string, AlgorithmKeys>();
  const accepted: string[] = [];
  for (const candidate of jwks.keys as unknown[]) {
    if (!isPlainObject(candidate)) continue;
    const jwk = candidate as JWK;
    const kid = typeof jwk.kid === 'string' ? jwk.kid : undefined;
    if (jwk.use !== undefined && jwk.use !== 'sig') { onSkip(kid, `use "${String(jwk.use)}"`); continue; }
    if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) {
      onSkip(kid, 'key_ops without verify');
      continue;
    }
    // Only public parts are imported, whatever else the document carries.
    const publicJwk: JWK = { kty: jwk.kty, crv: jwk.crv, n: jwk.n, e: jwk.e, x: jwk.x, y: jwk.y };
    const fits = algorithms.filter((alg) => (jwk.alg === undefined || jwk.alg === alg) && jwkFitsAlgorithm(jwk, alg));
    if (fits.length === 0) { onSkip(kid, `no allowed algorithm for kty "${String(jwk.kty)}"`); continue; }
    let imported = 0;
    for (const alg of fits) {
      let key: CryptoKey;
      try {
        key = (await importJWK(publicJwk, alg)) as CryptoKey;
      } catch (error) {
        onSkip(kid, `import failed: ${(error as Error).message}`);
        break;
      }
      const { modulusLength } = key.algorithm as Partial<webcrypto.RsaHashedKeyAlgorithm>;
      if (jwk.kty === 'RSA' && !(typeof modulusLength === 'number' && modulusLength >= MIN_RSA_BITS)) {
        onSkip(kid, `RSA key of ${String(modulusLength)} bits`);
        break;
      }
      // jose validated the JWK for this algorithm; the checks run on node:crypto's own handle to the same key.
      addKey(index, alg, kid, new VerificationKey(alg, KeyObject.from(key)));
      imported++;
    }
    if (imported > 0) accepted.push(JSON.stringify([kid, jwk.alg, publicJwk]));
  }
  return { index, fingerprint: accepted.sort().join('\n'), count: accepted.length };
}

function importSecret(secret: string, algorithms: readonly string[]): KeyIndex {
  const key = createSecretKey(Buffer.from(secret, 'utf8'));
  const index = new Map<string, AlgorithmKeys>();
  for (const alg of algorithms) if (SCHEMES[alg]?.kind === 'hmac') addKey(index, alg, undefined, new VerificationKey(alg, key));
  return index;
}

/** What must stay equal across a config reload for a loaded key set to be reused as is. */
/** An issuer with keys of its own (not one whose every token is introspected). */
export type KeyedIssuer = IssuerConfig & { readonly keys: IssuerKeySource };

export function isKeyed(issuer: IssuerConfig): issuer is KeyedIssuer {
  return issuer.keys !== undefined;
}

/** Where an issuer's keys come from: two key sets with the same source read the same key documents. */
function sourceOf(issuer: KeyedIssuer): string {
  return JSON.stringify([issuer.issuer, issuer.keys]);
}

function algorithmsOf(issuer: KeyedIssuer): string {
  return [...issuer.algorithms].sort().join(',');
}

/** The keys of one source and their version, shared across reloads by that source's sets with the same algorithms. */
interface SharedKeys {
  index: KeyIndex;
  fingerprint: string;
  generation: number;
  usableUntilMs: number;
}

export function keySetIdentity(issuer: KeyedIssuer): string {
  return JSON.stringify([issuer.issuer, issuer.keys, [...issuer.algorithms].sort(), issuer.jwksCache]);
}

export class IssuerKeySet {
  readonly identity: string;
  /**
   * Shared by the key sets of one source and the same algorithms across reloads: once the newest loads changed
   * keys, the runtimes still finishing their requests use them too, and tokens cached under any of them lapse.
   */
  private keys: SharedKeys = { index: new Map(), fingerprint: '', generation: 0, usableUntilMs: 0 };

  private readonly ignoresKid: boolean;
  private lastAttemptMs = Number.NEGATIVE_INFINITY;
  private lastSuccessMs: number | undefined;
  private freshUntilMs = 0;
  private lastError: string | undefined;
  private settled = false;
  private consecutiveFailures = 0;
  private inflight: Promise<void> | undefined;
  private jwksUri: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private owners = 1;

  /**
   * `predecessor`: the key set this one replaces at a reload (other cache settings or algorithms, or a key file to
   * read again). When it read the same source, its keys are this set's until the first load here succeeds, so a
   * reload while the identity provider is down keeps the keys that work.
   */
  constructor(
    private readonly issuer: KeyedIssuer,
    private readonly deps: KeySetDeps,
    predecessor?: IssuerKeySet,
  ) {
    this.identity = keySetIdentity(issuer);
    this.ignoresKid = issuer.keys.kind === 'secret';
    if (issuer.keys.kind === 'jwks_uri') this.jwksUri = issuer.keys.url;
    if (predecessor !== undefined && sourceOf(predecessor.issuer) === sourceOf(issuer)) this.inherit(predecessor);
  }

  /**
   * With the same algorithms the two sets read the same keys, so they share them: the runtime still finishing its
   * requests sees what this one loads (a key removed from a file, at once). With other algorithms the keys each
   * accepts differ, so this one starts from a copy and neither writes the other's.
   */
  private inherit(predecessor: IssuerKeySet): void {
    this.keys = algorithmsOf(predecessor.issuer) === algorithmsOf(this.issuer) ? predecessor.keys : { ...predecessor.keys };
    this.lastSuccessMs = predecessor.lastSuccessMs;
  }

  /** Bumped whenever the usable keys change, so verified-token cache entries made with older keys lapse. */
  get generation(): number {
    return this.keys.generation;
  }

  /** Epoch ms until which the current keys may be used (fresh or stale); 0 = no usable keys. */
  get usableUntilMs(): number {
    return this.keys.usableUntilMs;
  }

  /** First load. Resolves when it settled, whether it worked or not (never rejects). */
  start(): Promise<void> {
    if (this.settled) return Promise.resolve();
    return this.refresh();
  }

  /** Another Authenticator (after a reload) shares this key set; it stays alive until every owner released it. */
  retain(): this {
    this.owners++;
    return this;
  }

  release(): void {
    if (--this.owners > 0) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The kids of the keys held for `alg` (for explaining an unknown kid). */
  kids(alg: string): string[] {
    return [...(this.keys.index.get(alg)?.byKid.keys() ?? [])];
  }

  /** The allowed algorithms some loaded key can verify. */
  algorithmsWithKeys(): string[] {
    return this.issuer.algorithms.filter((alg) => (this.keys.index.get(alg)?.all.keys.length ?? 0) > 0);
  }

  /** Candidate keys for `alg` and `kid`, best first. A secret issuer ignores `kid`. */
  lookup(alg: string, kid: string | undefined, nowMs: number): KeyLookup {
    if (nowMs >= this.usableUntilMs) return UNAVAILABLE;
    const entry = this.keys.index.get(alg);
    if (entry === undefined) return UNKNOWN_KID;
    if (kid === undefined || this.ignoresKid) return entry.all.keys.length > 0 ? entry.all : UNKNOWN_KID;
    return entry.byKid.get(kid) ?? UNKNOWN_KID;
  }

  /**
   * A token named a kid we do not have: refetch once, unless a fetch ran within `min_refetch_interval`.
   * Concurrent callers share one fetch. Resolves true when a fetch happened (so the lookup is worth retrying).
   */
  async refetchForUnknownKid(): Promise<boolean> {
    if (this.inflight) {
      await this.inflight;
      return true;
    }
    if (this.ignoresKid) return false;
    if (this.deps.now() - this.lastAttemptMs < this.issuer.jwksCache.minRefetchIntervalMs) return false;
    await this.refresh();
    return true;
  }

  status(): IssuerStatus {
    const now = this.deps.now();
    let state: IssuerStatus['state'];
    if (!this.settled) state = 'loading';
    else if (now >= this.usableUntilMs) state = 'unavailable';
    else if (this.lastError !== undefined || now >= this.freshUntilMs) state = 'stale';
    else state = 'ok';
    return { state, lastRefresh: this.lastSuccessMs, error: this.lastError };
  }

  private refresh(): Promise<void> {
    this.inflight ??= this.load().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async load(): Promise<void> {
    const { metrics, logger, now } = this.deps;
    const { name, jwksCache } = this.issuer;
    this.lastAttemptMs = now();
    clearTimeout(this.timer);
    try {
      const fetched = await this.fetchKeys();
      const { index, maxAgeMs } = fetched;
      // The algorithms too: the same keys read for another list index differently (an added RS512 for an RSA key).
      const fingerprint = `${algorithmsOf(this.issuer)}\n${fetched.fingerprint}`;
      const loadedAt = now();
      const freshMs =
        this.issuer.keys.kind === 'secret'
          ? Number.POSITIVE_INFINITY
          : Math.min(jwksCache.maxAgeMs, maxAgeMs ?? Number.POSITIVE_INFINITY);
      const keys = this.keys;
      if (fingerprint !== keys.fingerprint) {
        if (keys.fingerprint !== '') logger.info({ issuer: name }, 'issuer keys changed');
        keys.index = index;
        keys.fingerprint = fingerprint;
        keys.generation++;
      }
      this.lastSuccessMs = loadedAt;
      this.freshUntilMs = loadedAt + freshMs;
      keys.usableUntilMs = loadedAt + Math.max(freshMs, jwksCache.staleIfErrorMs);
      this.lastError = undefined;
      this.consecutiveFailures = 0;
      metrics.jwksRefresh.inc({ issuer: name, result: 'ok' });
      this.schedule(freshMs * REFRESH_AT);
    } catch (error) {
      this.lastError = (error as Error).message;
      this.consecutiveFailures++;
      metrics.jwksRefresh.inc({ issuer: name, result: 'error' });
      const staleUntil = this.usableUntilMs || undefined;
      // An IdP that is down or misconfigured is an expected condition: one line saying why. Anything else is a bug.
      if (error instanceof FetchError) logger.warn({ issuer: name, reason: error.message, staleUntil }, 'issuer key refresh failed');
      else logger.warn({ issuer: name, err: error, staleUntil }, 'issuer key refresh failed');
      // A failed refresh resets the discovered jwks_uri: the IdP may have moved it.
      if (this.issuer.keys.kind === 'discovery') this.jwksUri = undefined;
      const backoff = jwksCache.minRefetchIntervalMs * 2 ** (this.consecutiveFailures - 1);
      this.schedule(Math.min(backoff, MAX_RETRY_DELAY_MS));
    } finally {
      this.settled = true;
    }
  }

  private schedule(delayMs: number): void {
    if (this.owners <= 0 || this.issuer.keys.kind === 'secret') return;
    const delay = Math.min(Math.max(delayMs, MIN_REFRESH_DELAY_MS), MAX_TIMER_DELAY_MS);
    this.timer = setTimeout(() => void this.refresh(), delay);
    this.timer.unref();
  }

  private async fetchKeys(): Promise<{ index: KeyIndex; fingerprint: string; maxAgeMs: number | undefined }> {
    const source = this.issuer.keys;
    const { algorithms, name } = this.issuer;
    if (source.kind === 'secret') {
      return { index: importSecret(source.secret, algorithms), fingerprint: 'secret', maxAgeMs: undefined };
    }
    let document: unknown;
    let maxAgeMs: number | undefined;
    if (source.kind === 'jwks_file') {
      document = await readJwksFile(source.path, this.deps.fetchLimits.maxBytes);
    } else {
      const url = await this.resolveJwksUri();
      const fetched = await inContext(`JWKS ${url}`, fetchJson(url, this.deps.fetchLimits));
      document = fetched.body;
      maxAgeMs = fetched.maxAgeMs;
    }
    const skipped: string[] = [];
    const onSkip = (kid: string | undefined, why: string): void => {
      skipped.push(`kid ${kid ?? '(none)'}: ${why}`);
      this.deps.logger.warn({ issuer: name, kid, why }, 'issuer key skipped');
    };
    const { index, fingerprint, count } = await importJwks(document, algorithms, onSkip);
    if (count === 0) {
      const why = skipped.length === 0 ? 'the set is empty' : skipped.join('; ');
      throw new FetchError(`no key in the JWK Set is usable for [${algorithms.join(', ')}] (${why})`);
    }
    return { index, fingerprint, maxAgeMs };
  }

  /**
   * OIDC discovery (`{issuer}/.well-known/openid-configuration`); the document must name this very issuer, and its
   * jwks_uri must pass the same rule as a configured one (a configured jwks_uri was checked by the config loader).
   */
  private async resolveJwksUri(): Promise<string> {
    if (this.jwksUri !== undefined) return this.jwksUri;
    const issuer = this.issuer.issuer;
    const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const { body } = await inContext(`discovery ${url}`, fetchJson(url, this.deps.fetchLimits));
    if (!isPlainObject(body)) throw new FetchError(`discovery ${url}: the document is not an object`);
    if (body.issuer !== issuer) {
      throw new FetchError(`discovery document names another issuer: expected ${JSON.stringify(issuer)}, got ${JSON.stringify(body.issuer) ?? 'none'}`);
    }
    if (typeof body.jwks_uri !== 'string') throw new FetchError(`discovery ${url}: jwks_uri missing`);
    const jwksUri = parseKeyServerUrl(body.jwks_uri);
    if (typeof jwksUri === 'string') throw new FetchError(`discovery ${url}: jwks_uri ${jwksUri}`);
    this.jwksUri = jwksUri.href;
    return this.jwksUri;
  }
}

/** Prefixes a fetch failure with what was being fetched, so the one-line reason names the URL. */
async function inContext<T>(what: string, pending: Promise<T>): Promise<T> {
  try {
    return await pending;
  } catch (error) {
    throw error instanceof FetchError ? new FetchError(`${what}: ${error.message}`) : error;
  }
}

async function readJwksFile(path: string, maxBytes: number): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new FetchError(`jwks_file ${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (text.length > maxBytes) throw new FetchError(`jwks_file ${path}: larger than ${maxBytes} bytes`);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new FetchError(`jwks_file ${path}: not valid JSON`);
  }
}
