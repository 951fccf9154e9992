import { createHash } from 'node:crypto';
import { RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Redis } from 'ioredis';
import type { RateLimitConfig } from '../config/types.js';
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
  readonly limiter: RateLimiterAbstract;
  readonly shape: LimiterShape;
  readonly maxKeys: number;
}

/**
 * One limiter per `rate_limits` entry. With Redis, an in-memory insurance limiter answers while
 * Redis is unreachable, and keys already over their limit are refused from memory until their
 * window ends, without a Redis round trip. `consume` never rejects for a store failure; it rejects only
 * for a limit name that was never configured, which config validation rules out.
 */
export function createRateLimitStore(
  rateLimits: ReadonlyMap<string, RateLimitConfig>,
  prefix: string,
  redis: Redis | undefined,
  deps: Pick<StoreDeps, 'logger' | 'metrics'>,
): RateLimitStore {
  function build(name: string, shape: LimiterShape, maxKeys: number): LimiterEntry {
    const options = { points: shape.points, duration: shape.durationS, keyPrefix: `${prefix}rl:${name}` };
    const memory = new BoundedRateLimiterMemory(options, maxKeys);
    if (redis === undefined) return { limiter: memory, shape, maxKeys };
    const limiter = new RateLimiterRedis({
      ...options,
      storeClient: redis,
      rejectIfRedisNotReady: true,
      inMemoryBlockOnConsumed: shape.points + 1,
      insuranceLimiter: memory,
    });
    boundInMemoryBlocks(limiter, maxKeys);
    return { limiter, shape, maxKeys };
  }

  let limiters = new Map<string, LimiterEntry>();
  function update(next: ReadonlyMap<string, RateLimitConfig>): void {
    // Entries the new config dropped stay: requests in flight on the previous config may still consume them.
    const updated = new Map(limiters);
    for (const [name, config] of next) {
      const shape = limiterShape(config);
      const current = updated.get(name);
      // An unchanged limit keeps its limiter, so a reload resets no in-memory counters.
      if (
        current === undefined ||
        current.shape.points !== shape.points ||
        current.shape.durationS !== shape.durationS ||
        current.maxKeys !== config.maxKeys
      ) {
        updated.set(name, build(name, shape, config.maxKeys));
      }
    }
    limiters = updated;
  }
  update(rateLimits);

  return {
    update,
    async consume(limitName: string, key: string): Promise<RateLimitDecision> {
      const entry = limiters.get(limitName);
      if (entry === undefined) throw new Error(`unknown rate limit "${limitName}"`);
      const points = entry.shape.points;
      try {
        return decision(true, points, await entry.limiter.consume(storageKey(key)));
      } catch (refusal) {
        if (refusal instanceof RateLimiterRes) return decision(false, points, refusal);
        // Only reachable if the in-memory limiter itself failed; refusing traffic over it would be worse.
        deps.metrics.storeErrors.inc();
        deps.logger.warn({ err: refusal, limit: limitName }, 'store: the in-memory rate limiter failed; request allowed unlimited');
        return { allowed: true, limit: points, remaining: points, resetMs: 0 };
      }
    },
  };
}

function decision(allowed: boolean, limit: number, res: RateLimiterRes): RateLimitDecision {
  return { allowed, limit, remaining: res.remainingPoints, resetMs: Math.max(0, res.msBeforeNext) };
}
