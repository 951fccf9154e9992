import type { RateLimitConfig } from '../config/types.js';
import { createRateLimitStore } from './rate-limits.js';
import { MEMORY_REPLAY_ENTRIES, MemoryReplayStore } from './replay.js';
import { jtiEntry, RevocationMirror, subjectEntry } from './revocation-mirror.js';
import type { Store, StoreDeps } from './types.js';

/** How often expired revocations are dropped from a mirror. */
export const PRUNE_INTERVAL_MS = 60_000;

/** Single-instance store: the mirror is the only copy, and limits count in this process. */
export function createMemoryStore(
  prefix: string,
  rateLimits: ReadonlyMap<string, RateLimitConfig>,
  deps: StoreDeps,
): Store {
  const nowS = (): number => Math.floor(deps.nowMs() / 1000);
  const mirror = new RevocationMirror(nowS);
  const pruner = setInterval(() => mirror.prune(), PRUNE_INTERVAL_MS).unref();
  return {
    revocations: {
      synced: () => true,
      isRevoked: (token) => mirror.isRevoked(token),
      isJtiRevoked: (jti, issuer) => mirror.isJtiRevoked(jti, issuer),
      onRevocation: (listener) => mirror.onApply(listener),
      revokeJti: async (jti, exp, issuer) => mirror.apply(jtiEntry(jti, exp, issuer)),
      revokeSubject: async (subject, before, issuer) => mirror.apply(subjectEntry(subject, before, issuer, nowS())),
    },
    rateLimits: createRateLimitStore(rateLimits, prefix, undefined, deps),
    replay: new MemoryReplayStore(MEMORY_REPLAY_ENTRIES, deps.nowMs),
    health: () => ({ status: 'memory' }),
    ready: async () => {},
    close: async () => clearInterval(pruner),
  };
}
