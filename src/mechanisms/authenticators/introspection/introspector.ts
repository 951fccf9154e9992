import { DEFAULT_FETCH_LIMITS, FetchError, requestJson, type FetchLimits } from '../../../http/json-request.js';
import { Bulkhead } from '../../../lib/bulkhead.js';
import { TokenCache, tokenDigest, type KeyVersion } from '../jwt/token-cache.js';
import type { Identity } from '../../../identity/identity.js';
import type { IssuerConfig } from '../../../config/types.js';

import type { Logger } from '../../../observability/log.js';
import type { Metrics } from '../../../observability/metrics.js';
import { compileIntrospectionRequest, type IntrospectionRequestBuilder } from './client-auth.js';
import type { IntrospectionConfig } from '../../../config/introspection.js';
import { discoverIntrospectionEndpoint } from './discovery.js';
import { compileResponseChecker, type IntrospectionFailure, type ResponseChecker } from './response.js';

/**
 * What the identity provider says about an opaque token (RFC 7662), cached. A cached result is a fact about the
 * token (who it speaks for, or that it is not active), never a verdict about a request: revocation, rules and
 * limits still run on every request. `unavailable`: the endpoint could not answer and nothing was cached.
 */
export type Introspection =
  | { readonly ok: true; readonly identity: Identity }
  | { readonly ok: false; readonly reason: IntrospectionFailure };

export interface IntrospectorDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly nowMs: () => number;
  /** As for JWKS fetches. */
  readonly fetchLimits?: FetchLimits;
}

const UNAVAILABLE: Introspection = Object.freeze({ ok: false, reason: 'unavailable' });
/** Introspection results do not depend on local keys: one version that never changes or runs out. */
const NO_KEYS: KeyVersion = Object.freeze({ generation: 0, usableUntilMs: Infinity });
const SHED_WARNING_INTERVAL_MS = 60_000;
/** The cache is bounded in entries: each entry counts 1 against a budget of `max_entries`. */
const ENTRY_COST = 1;

export class Introspector {
  private readonly cache: TokenCache<Introspection>;
  /** One request to the endpoint per token at a time; later callers wait for its answer. */
  private readonly pending = new Map<string, Promise<Introspection>>();
  /** Distinct tokens are distinct requests: a flood of made-up ones must not become a flood at the provider. */
  private readonly bulkhead: Bulkhead;
  private shedSinceWarning = 0;
  private lastShedWarningMs = Number.NEGATIVE_INFINITY;
  private endpoint: Promise<string> | undefined;
  private reachable = true;
  private readonly counted;

  private constructor(
    private readonly issuer: IssuerConfig,
    private readonly config: IntrospectionConfig,
    private readonly buildRequest: IntrospectionRequestBuilder,
    private readonly check: ResponseChecker,
    private readonly deps: IntrospectorDeps,
  ) {
    this.cache = new TokenCache(config.cache.maxEntries);
    this.bulkhead = new Bulkhead(config.maxConcurrent);
    const lookups = (result: string) => deps.metrics.introspectionCache.labels({ issuer: issuer.name, result });
    this.counted = { hit: lookups('hit'), miss: lookups('miss'), shared: lookups('shared'), shed: lookups('shed') };
  }

  /** Reads the client's signing key, if it has one; the endpoint itself is asked on first use. */
  static async create(issuer: IssuerConfig, config: IntrospectionConfig, deps: IntrospectorDeps): Promise<Introspector> {
    const buildRequest = await compileIntrospectionRequest(config);
    return new Introspector(issuer, config, buildRequest, compileResponseChecker(issuer, config.cache.maxTtlMs), deps);
  }

  /** Synchronous on a cache hit (no promise, no allocation). */
  introspect(token: string): Introspection | Promise<Introspection> {
    const digest = tokenDigest(token);
    const cached = this.cache.get(digest, this.deps.nowMs());
    if (cached !== undefined) {
      this.counted.hit.inc();
      return cached;
    }
    const underWay = this.pending.get(digest);
    if (underWay !== undefined) {
      this.counted.shared.inc();
      return underWay;
    }
    const admitted = this.bulkhead.run(() => this.ask(token, digest));
    if (admitted === undefined) return this.shed();
    this.counted.miss.inc();
    const asked = admitted.finally(() => this.pending.delete(digest));
    this.pending.set(digest, asked);
    return asked;
  }

  /**
   * Too many introspections under way and waiting: this token is not asked about, and is unavailable for now. A
   * warning a minute at most, with how many were refused since the last: a flood must not flood the log too.
   */
  private shed(): Introspection {
    this.counted.shed.inc();
    this.shedSinceWarning += 1;
    const now = this.deps.nowMs();
    if (now - this.lastShedWarningMs >= SHED_WARNING_INTERVAL_MS) {
      const { name } = this.issuer;
      const refusedSinceLastWarning = this.shedSinceWarning;
      this.deps.logger.warn({ issuer: name, maxConcurrent: this.config.maxConcurrent, refusedSinceLastWarning }, 'introspection endpoint busy; uncached tokens refused until requests drain');
      this.lastShedWarningMs = now;
      this.shedSinceWarning = 0;
    }
    return UNAVAILABLE;
  }

  private async ask(token: string, digest: string): Promise<Introspection> {
    let body: unknown;
    try {
      const endpoint = await this.resolveEndpoint();
      ({ body } = await requestJson(endpoint, await this.buildRequest(token, endpoint), this.deps.fetchLimits ?? DEFAULT_FETCH_LIMITS));
    } catch (error) {
      return this.unavailable(error);
    }
    const nowMs = this.deps.nowMs();
    const checked = this.check(body, nowMs);
    this.deps.metrics.introspection.inc({ issuer: this.issuer.name, result: checked.ok ? 'active' : checked.reason });
    if (!checked.ok && checked.reason === 'unavailable') return this.unavailable(new FetchError('the answer is not an introspection response'));
    this.markReachable();
    const result: Introspection = checked.ok ? Object.freeze({ ok: true, identity: checked.identity }) : Object.freeze({ ok: false, reason: checked.reason });
    const validUntilMs = checked.ok ? checked.validUntilMs : nowMs + this.config.cache.negativeTtlMs;
    this.cache.set(digest, result, validUntilMs, NO_KEYS, ENTRY_COST);
    return result;
  }

  private resolveEndpoint(): Promise<string> {
    if (this.config.endpoint !== undefined) return Promise.resolve(this.config.endpoint);
    if (this.endpoint === undefined) {
      const discovered = discoverIntrospectionEndpoint(this.issuer.issuer, this.deps.fetchLimits ?? DEFAULT_FETCH_LIMITS);
      // A failed discovery is asked again next time: the IdP may be back.
      discovered.catch(() => {
        if (this.endpoint === discovered) this.endpoint = undefined;
      });
      this.endpoint = discovered;
    }
    return this.endpoint;
  }

  /** Logged when the endpoint stops answering, not once per token while it stays down. */
  private unavailable(error: unknown): Introspection {
    if (!(error instanceof FetchError)) throw error;
    this.deps.metrics.introspection.inc({ issuer: this.issuer.name, result: 'unavailable' });
    if (this.reachable) this.deps.logger.warn({ issuer: this.issuer.name, why: error.message }, 'introspection endpoint unavailable; cached tokens keep working');
    this.reachable = false;
    return UNAVAILABLE;
  }

  private markReachable(): void {
    if (!this.reachable) this.deps.logger.info({ issuer: this.issuer.name }, 'introspection endpoint answers again');
    this.reachable = true;
  }
}
