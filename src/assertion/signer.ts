/**
 * Signed identity for upstreams: a short-lived JWS telling one upstream (its origin is the `aud`) who the caller
 * is. Signing costs far more than proxying, so one assertion serves every request of the same identity, route and
 * audience until half its lifetime has passed; the cache is bounded (recently used entries stay) so many callers
 * cannot grow it.
 */
import { SignJWT, type JWTPayload } from 'jose';
import { GenerationalCache } from './generational-cache.js';
import type { SigningKey } from './keys.js';

/** What the signer needs to know about a verified caller; the gateway adapts its identity to this. */
export interface AssertionIdentity {
  readonly subject: string;
  /** The credential's `iss`. */
  readonly issuer: string;
  readonly claims: Readonly<Record<string, unknown>>;
  /** The credential's own expiry (epoch seconds); the assertion never outlives it. */
  readonly exp: number | undefined;
  /** An identity field by name (`email`, `roles`, `claims.<path>`…); undefined when the caller has none. */
  field(name: string): unknown;
}

export interface AssertionSignerOptions {
  /** The first signs; the rest are only published (rotation). */
  readonly keys: readonly SigningKey[];
  readonly issuer: string;
  readonly ttlSeconds: number;
  /** Identity fields copied into the assertion under their own names (`subject` is the `sub`). */
  readonly fields: readonly string[];
  /** Entries kept at most; the least recently used go first. */
  readonly cacheSize?: number;
  /** Epoch milliseconds; a parameter so tests can move time. */
  readonly clock?: () => number;
}

interface CachedAssertion {
  readonly jws: Promise<string>;
  /** The JWS once signed: a hit then returns it without a promise. */
  signed: string | undefined;
  /** Epoch seconds after which a new assertion is signed. */
  readonly renewAt: number;
}

const DEFAULT_CACHE_SIZE = 10_000;

export class AssertionSigner {
  private readonly cache: GenerationalCache<CachedAssertion>;
  private readonly clock: () => number;
  private signatures = 0;

  constructor(private readonly options: AssertionSignerOptions) {
    if (options.keys.length === 0) throw new Error('an assertion signer needs at least one key');
    this.cache = new GenerationalCache(options.cacheSize ?? DEFAULT_CACHE_SIZE);
    this.clock = options.clock ?? Date.now;
  }

  /** How many assertions were signed so far (cache misses), for metrics and tests. */
  get signatureCount(): number {
    return this.signatures;
  }

  /**
   * The compact JWS for this caller on `route` towards `audience` (the upstream's origin): the string itself when
   * a fresh one is cached, so the proxy path waits for nothing, else the signature in progress.
   */
  assertion(identity: AssertionIdentity, route: string, audience: string): string | Promise<string> {
    const now = Math.floor(this.clock() / 1000);
    const fields = this.fieldValues(identity);
    // The field values are part of the key: a new token for the same subject with other roles gets its own assertion.
    const key = JSON.stringify([identity.issuer, identity.subject, identity.exp, route, audience, fields]);
    const cached = this.cache.get(key);
    if (cached !== undefined && now < cached.renewAt) return cached.signed ?? cached.jws;
    const entry = this.sign(identity, route, audience, fields, now);
    this.cache.set(key, entry);
    entry.jws.then(
      (jws) => (entry.signed = jws),
      () => this.cache.deleteIf(key, entry),
    );
    return entry.jws;
  }

  private fieldValues(identity: AssertionIdentity): Record<string, unknown> {
    const values: Record<string, unknown> = {};
    for (const name of this.options.fields) {
      if (name === 'subject') continue;
      const value = identity.field(name);
      // No roles is the same as none given: left out, as the identity headers leave out an empty list.
      if (value !== undefined && !(Array.isArray(value) && value.length === 0)) values[name] = value;
    }
    return values;
  }

  private sign(identity: AssertionIdentity, route: string, audience: string, fields: JWTPayload, now: number): CachedAssertion {
    const { ttlSeconds, issuer } = this.options;
    const [key] = this.options.keys as [SigningKey];
    const exp = Math.min(now + ttlSeconds, identity.exp ?? Infinity);
    this.signatures += 1;
    const jws = new SignJWT({ ...fields, route })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject(identity.subject)
      .setIssuedAt(now)
      .setExpirationTime(exp)
      .sign(key.privateKey);
    return { jws, signed: undefined, renewAt: Math.min(now + ttlSeconds / 2, exp) };
  }
}
