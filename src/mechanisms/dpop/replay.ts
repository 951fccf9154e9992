import type { Redis } from 'ioredis';

/**
 * Where DPoP proof identifiers are remembered for as long as their proof could be accepted, so each proof is used
 * once. `claim` answers true for the first claim of an id within `ttlMs`, false for any later one.
 */
export interface ReplayStore {
  claim(id: string, ttlMs: number): Promise<boolean>;
}

/**
 * One instance's memory, bounded in entries. Full of live ids, it refuses new ones: forgetting a live id would let
 * its proof be replayed, so a flood costs availability, not safety. Proofs share one lifetime, so ids expire in the
 * order they were claimed and pruning looks at the old end only.
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
    if (expiry !== undefined && expiry > now) return Promise.resolve(false);
    if (this.expiries.size >= this.maxEntries) return Promise.resolve(false);
    this.expiries.delete(id);
    this.expiries.set(id, now + ttlMs);
    return Promise.resolve(true);
  }

  private prune(now: number): void {
    for (const [id, expiry] of this.expiries) {
      if (expiry > now) return;
      this.expiries.delete(id);
    }
  }
}

/**
 * Shared by every instance on one Redis: `SET key NX PX ttl` creates the key only if no instance claimed it yet, and
 * Redis forgets it when the proof could no longer be accepted anyway. A Redis error rejects (the caller refuses the
 * proof as unverifiable rather than risk a replay).
 */
export class RedisReplayStore implements ReplayStore {
  constructor(
    private readonly redis: Pick<Redis, 'set'>,
    /** The store's key prefix (`store.prefix`). */
    private readonly prefix: string,
  ) {}

  async claim(id: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(`${this.prefix}dpop:${id}`, '1', 'PX', ttlMs, 'NX')) === 'OK';
  }
}
