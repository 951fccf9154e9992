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
  deps: Pick<StoreDeps, 'logger' | 'metrics'>,
): RateLimitStore {
  if (redis !== undefined) defineLeaseCommand(redis);
  const onStoreError = (): void => deps.metrics.storeErrors.inc();

  function build(config: RateLimitConfig): LimiterEntry {
    const shape = limiterShape(config);
    const options = { points: shape.points, duration: shape.durationS, keyPrefix: `${prefix}rl:${config.name}` };
    const memory = new BoundedRateLimiterMemory(options, config.maxKeys);
    if (redis === undefined) return { consume: viaLimiter(memory, shape.points), shape, config };
    if (config.mode === 'leased') {
      const leased = new LeasedLimiter({
        client: redis,
        keyPrefix: options.keyPrefix,
        points: shape.points,
        windowMs: shape.durationS * 1000,
        maxKeys: config.maxKeys,
        insurance: viaLimiter(memory, shape.points),
        onStoreError,
      });
      return { consume: (key) => leased.consume(key), shape, config };
    }
    const limiter = new RateLimiterRedis({
      ...options,
      storeClient: redis,
      rejectIfRedisNotReady: true,
      inMemoryBlockOnConsumed: shape.points + 1,
      insuranceLimiter: memory,
    });
    boundInMemoryBlocks(limiter, config.maxKeys);
    return { consume: viaLimiter(limiter, shape.points), shape, config };
  }

  let limiters = new Map<string, LimiterEntry>();
  function update(next: ReadonlyMap<string, RateLimitConfig>): void {
    // Entries the new config dropped stay: requests in flight on the previous config may still consume them.
    const updated = new Map(limiters);
    for (const [name, config] of next) {
      const current = updated.get(name);
      // An unchanged limit keeps its limiter, so a reload resets no in-memory counters.
      if (current === undefined || !sameLimiter(current, config)) updated.set(name, build(config));
    }
    limiters = updated;
  }
  update(rateLimits);

  return {
    update,
    consume(limitName: string, key: string): RateLimitDecision | Promise<RateLimitDecision> {
      const entry = limiters.get(limitName);
      if (entry === undefined) return Promise.reject(new Error(`unknown rate limit "${limitName}"`));
      try {
        const decision = entry.consume(storageKey(key));
        return decision instanceof Promise ? decision.catch((error: unknown) => unlimited(entry, error)) : decision;
      } catch (error) {
        return unlimited(entry, error);
      }
    },
  };

  /** Only reachable if the in-memory limiter itself failed; refusing traffic over it would be worse. */
  function unlimited(entry: LimiterEntry, error: unknown): RateLimitDecision {
    deps.metrics.storeErrors.inc();
    deps.logger.warn({ err: error, limit: entry.config.name }, 'store: the in-memory rate limiter failed; request allowed unlimited');
    const points = entry.shape.points;
    return { allowed: true, limit: points, remaining: points, resetMs: 0 };
  }
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
