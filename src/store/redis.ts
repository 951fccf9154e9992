import type { RateLimitConfig, RedisConfig } from '../config/types.js';
import { createRateLimitStore } from './rate-limits.js';
import { RedisRevocations } from './redis-revocations.js';
import { RedisReplayStore } from './replay.js';
import type { Store, StoreDeps } from './types.js';

/** Every replica's store: revocations mirrored from Redis, rate limits and single-use ids counted in it. */
export function createRedisStore(
  config: RedisConfig,
  prefix: string,
  rateLimits: ReadonlyMap<string, RateLimitConfig>,
  deps: StoreDeps,
): Store {
  const revocations = new RedisRevocations(config, prefix, deps);
  const { link } = revocations;
  // A command that fails (a Redis that hangs fails no connection) counts, and has the link probed.
  const onStoreError = (): void => link.commandFailed();
  return {
    revocations,
    rateLimits: createRateLimitStore(rateLimits, prefix, link.commands, { ...deps, onStoreError }),
    replay: new RedisReplayStore(link.commands, prefix, onStoreError),
    health: () => link.health(),
    ready: () => link.ready,
    close: () => revocations.close(),
  };
}
