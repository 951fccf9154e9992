import type { RedisClient } from './connect.js';

/**
 * Where single-use identifiers (DPoP proof `jti`s) are remembered for as long as what carries them could be
 * accepted, so each is used once. `claim` answers true for the first claim of an id within `ttlMs`, false for any
 * later one; it rejects when it cannot tell (the shared store is unreachable). Ids name their use (`dpop:…`).
 */
export interface ReplayStore {
  claim(id: string, ttlMs: number): Promise<boolean>;
}

/** Ids one instance remembers at most: about 100 MiB of heap, a minute of proofs at 15,000 requests a second. */
export const MEMORY_REPLAY_ENTRIES = 1_000_000;

const CLAIMED = Promise.resolve(true);
const REFUSED = Promise.resolve(false);

/**
 * One instance's memory, bounded in entries. Full of live ids, it cannot take new ones and rejects, as a store that
 * cannot tell does (the caller answers 503, never blaming the client with a replay): forgetting a live id would let
 * its carrier be replayed, so a flood costs availability, not safety. Ids are kept in the order they were claimed
 * and pruning looks at the old end only: an entry with a shorter lifetime behind a longer one waits for it, which
 * delays freeing its slot but never frees a live one.
 */
export class MemoryReplayStore implements ReplayStore {
  private readonly expiries = new Map<string, number>();

  constructor(
    private readonly maxEntries: number,
    private readonly nowMs: () => number = Date.now,
  ) {}

  claim(id: string, ttlMs: number): Promise<boolean> {
    const now = this.nowMs();
    this.prune(now);
    const expiry = this.expiries.get(id);
    if (expiry !== undefined && expiry > now) return REFUSED;
    if (this.expiries.size >= this.maxEntries) return Promise.reject(new Error(`full: ${this.maxEntries} live ids`));
    this.expiries.delete(id);
    this.expiries.set(id, now + ttlMs);
    return CLAIMED;
  }

  private prune(now: number): void {
    for (const [id, expiry] of this.expiries) {
      if (expiry > now) return;
      this.expiries.delete(id);
    }
  }
}

/**
 * Shared by every instance on one Redis: `SET key 1 PX ttl NX` creates the key only if no instance claimed it yet,
 * and Redis forgets it once its carrier could no longer be accepted anyway. One key per claim, so it works alike on
 * Sentinel and Cluster. A Redis error rejects: the caller refuses what it cannot show to be fresh rather than risk
 * a replay.
 */
export class RedisReplayStore implements ReplayStore {
  constructor(
    private readonly redis: Pick<RedisClient, 'set'>,
    /** The store's key prefix (`store.prefix`). */
    private readonly prefix: string,
    private readonly onError: (error: Error) => void = () => undefined,
  ) {}

  async claim(id: string, ttlMs: number): Promise<boolean> {
    try {
      return (await this.redis.set(`${this.prefix}${id}`, '1', 'PX', ttlMs, 'NX')) === 'OK';
    } catch (error) {
      this.onError(error as Error);
      throw error;
    }
  }
}
