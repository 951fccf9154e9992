import type { RateLimitConfig, StoreConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { createMemoryStore } from './memory.js';
import { createRedisStore } from './redis.js';
import type { Store } from './types.js';

export type * from './types.js';
export { JTI_RETENTION_GRACE_S, SUBJECT_RETENTION_S } from './revocation-mirror.js';

/** Redis when `store.redis` is set (shared by every replica), memory otherwise (one instance only). */
export function createStore(
  config: StoreConfig,
  rateLimits: ReadonlyMap<string, RateLimitConfig>,
  deps: { logger: Logger; metrics: Metrics; now?: () => number; revocationRereadMs?: number },
): Store {
  const storeDeps = { logger: deps.logger, metrics: deps.metrics, nowMs: deps.now ?? Date.now, revocationRereadMs: deps.revocationRereadMs };
  if (config.redis === undefined) return createMemoryStore(config.prefix, rateLimits, storeDeps);
  return createRedisStore(config.redis, config.prefix, rateLimits, storeDeps);
}
