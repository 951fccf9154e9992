import { createHash } from 'node:crypto';
import { RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Cluster, Redis } from 'ioredis';
import type { RateLimitConfig } from '../config/types.js';
import { defineLeaseCommand, LeasedLimiter, limiterDecision } from './leases.js';
import { boundInMemoryBlocks, BoundedRateLimiterMemory } from './memory-limiter.js';
import type { RateLimitDecision, RateLimitStore, StoreDeps } from './types.js';

/** What one `rate_limits` entry becomes in rate-limiter-flexible, whose windows are whole seconds. */
export interface LimiterShape {
  readonly points: number;
  readonly durationS: number;
}

/**
 * Windows of a second or more are rounded up to whole seconds (never laxer than configured).
 * A window under a second keeps its rate over one second: `10 per 100ms` becomes `100 per 1s`
 * (the same sustained rate; a burst may take the whole second's budget at once).
 */
export function limiterShape(config: Pick<RateLimitConfig, 'limit' | 'windowMs'>): LimiterShape {
  if (config.windowMs >= 1000) return { points: config.limit, durationS: Math.ceil(config.windowMs / 1000) };
  return { points: Math.max(1, Math.floor((config.limit * 1000) / config.windowMs)), durationS: 1 };
}

/** Keys are client-controlled (header values, claims); long ones are hashed to bound Redis key size. */
const MAX_PLAIN_KEY_LENGTH = 200;

function storageKey(key: string): string {
  return key.length > MAX_PLAIN_KEY_LENGTH ? `sha256:${createHash('sha256').update(key).digest('base64url')}` : key;
}

interface LimiterEntry {
  /** The decision, at once or later; throws or rejects only if the in-memory limiter itself failed. */
  readonly consume: (key: string) => RateLimitDecision | Promise<RateLimitDecision>;
  readonly shape: LimiterShape;
  readonly config: RateLimitConfig;
}

/**
 * One limiter per `rate_limits` entry. With Redis, an in-memory insurance limiter answers while Redis is
 * unreachable. `leased` entries count down leases in memory (see leases.ts); `exact` ones ask Redis on every
 * request, except for keys already over their limit, which are refused from memory until their window ends.
 * `consume` never rejects for a store failure; it rejects only for a limit name that was never configured,
 * which config validation rules out.
 */
export function createRateLimitStore(
  rateLimits: ReadonlyMap<string, RateLimitConfig>,
  prefix: string,
  redis: Redis | Cluster | undefined,
  deps: RateLimitDeps,
): RateLimitStore {
  if (redis !== undefined) defineLeaseCommand(redis);
  const limits = new RateLimits(prefix, redis, deps);
  limits.update(rateLimits);
  return limits;
}

interface RateLimitDeps extends Pick<StoreDeps, 'logger' | 'metrics'> {
  /** Told of every Redis command that failed (the in-memory limiter answered instead). */
  readonly onStoreError?: (error: Error) => void;
}

class RateLimits implements RateLimitStore {
  private limiters = new Map<string, LimiterEntry>();
  private readonly onStoreError: (error: Error) => void;

  constructor(
    private readonly prefix: string,
    private readonly redis: Redis | Cluster | undefined,
    private readonly deps: RateLimitDeps,
  ) {
    this.onStoreError = deps.onStoreError ?? (() => deps.metrics.storeErrors.inc());
  }

  update(next: ReadonlyMap<string, RateLimitConfig>): void {
    // Entries the new config dropped stay: requests in flight on the previous config may still consume them.
    const updated = new Map(this.limiters);
    for (const [name, config] of next) {
      const current = updated.get(name);
      // An unchanged limit keeps its limiter, so a reload resets no in-memory counters.
      if (current === undefined || !sameLimiter(current, config)) updated.set(name, this.build(config));
    }
    this.limiters = updated;
  }

  consume(limitName: string, key: string): RateLimitDecision | Promise<RateLimitDecision> {
    const entry = this.limiters.get(limitName);
    if (entry === undefined) return Promise.reject(new Error(`unknown rate limit "${limitName}"`));
    try {
      const decision = entry.consume(storageKey(key));
      return decision instanceof Promise ? decision.catch((error: unknown) => this.unlimited(entry, error)) : decision;
    } catch (error) {
      return this.unlimited(entry, error);
    }
  }

  private build(config: RateLimitConfig): LimiterEntry {
    const shape = limiterShape(config);
    const keyPrefix = `${this.prefix}rl:${config.name}`;
    const memory = new BoundedRateLimiterMemory({ points: shape.points, duration: shape.durationS, keyPrefix }, config.maxKeys);
    const parts = { keyPrefix, shape, maxKeys: config.maxKeys, memory };
    const consume =
      this.redis === undefined
        ? viaLimiter(memory, shape.points)
        : config.mode === 'leased'
          ? leasedConsume(this.redis, parts, this.onStoreError)
          : exactConsume(this.redis, parts, this.onStoreError);
    return { consume, shape, config };
  }

  /** Only reachable if the in-memory limiter itself failed; refusing traffic over it would be worse. */
  private unlimited(entry: LimiterEntry, error: unknown): RateLimitDecision {
    this.deps.metrics.storeErrors.inc();
    this.deps.logger.warn({ err: error, limit: entry.config.name }, 'store: the in-memory rate limiter failed; request allowed unlimited');
    const points = entry.shape.points;
    return { allowed: true, limit: points, remaining: points, resetMs: 0 };
  }
}

/** What a Redis-backed limiter is built from; `memory` answers while Redis does not. */
interface LimiterParts {
  readonly keyPrefix: string;
  readonly shape: LimiterShape;
  readonly maxKeys: number;
  readonly memory: BoundedRateLimiterMemory;
}

function leasedConsume(redis: Redis | Cluster, parts: LimiterParts, onStoreError: (error: Error) => void): LimiterEntry['consume'] {
  const { keyPrefix, shape, maxKeys, memory } = parts;
  const leased = new LeasedLimiter({
    client: redis,
    keyPrefix,
    points: shape.points,
    windowMs: shape.durationS * 1000,
    maxKeys,
    insurance: viaLimiter(memory, shape.points),
    onStoreError,
  });
  return (key) => leased.consume(key);
}

/**
 * One Redis round trip per request; when it fails, the in-memory limiter answers (rate-limiter-flexible's own
 * insurance limiter would too, but silently: a Redis that hangs must show in the metrics and the store's health).
 */
function exactConsume(redis: Redis | Cluster, parts: LimiterParts, onStoreError: (error: Error) => void): LimiterEntry['consume'] {
  const { keyPrefix, shape, maxKeys, memory } = parts;
  const limiter = new RateLimiterRedis({
    points: shape.points,
    duration: shape.durationS,
    keyPrefix,
    storeClient: redis,
    rejectIfRedisNotReady: true,
    inMemoryBlockOnConsumed: shape.points + 1,
  });
  boundInMemoryBlocks(limiter, maxKeys);
  const viaRedis = viaLimiter(limiter, shape.points);
  const viaMemory = viaLimiter(memory, shape.points);
  return (key) => viaRedis(key).catch((error: unknown) => {
    onStoreError(error as Error);
    return viaMemory(key);
  });
}

function sameLimiter(current: LimiterEntry, config: RateLimitConfig): boolean {
  const shape = limiterShape(config);
  return (
    current.shape.points === shape.points &&
    current.shape.durationS === shape.durationS &&
    current.config.maxKeys === config.maxKeys &&
    current.config.mode === config.mode
  );
}

/** A rate-limiter-flexible limiter, whose refusal is a rejection with its result. */
function viaLimiter(limiter: RateLimiterAbstract, points: number): (key: string) => Promise<RateLimitDecision> {
  return async (key) => {
    try {
      return limiterDecision(true, points, await limiter.consume(key));
    } catch (refusal) {
      if (refusal instanceof RateLimiterRes) return limiterDecision(false, points, refusal);
      throw refusal;
    }
  };
}
