import type { Cluster, Redis, Result } from 'ioredis';
import type { RateLimiterRes } from 'rate-limiter-flexible';
import { makeRoom } from './memory-limiter.js';
import type { RateLimitDecision } from './types.js';

/**
 * A lease is this fraction of the limit (at least one point): with a limit of 1000 a window, an instance asks
 * Redis once per 50 requests of a key, and holds at most 75 points (see {@link LeasedLimiter}).
 */
export const LEASE_DIVISOR = 20;

export function leaseSize(points: number): number {
  return Math.max(1, Math.floor(points / LEASE_DIVISOR));
}

/**
 * Takes up to ARGV[2] points of the window's budget (ARGV[1] points per ARGV[3] ms) at once. The counter is
 * the one the exact mode increments (the same key, value and TTL), so switching modes carries it on. One key:
 * one slot on a Cluster. Returns {granted, used in this window, ms until the window ends}.
 */
const LEASE_SCRIPT = `redis.call('set', KEYS[1], 0, 'PX', ARGV[3], 'NX')
local used = tonumber(redis.call('get', KEYS[1]))
local granted = math.max(0, math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - used))
if granted > 0 then used = redis.call('incrby', KEYS[1], granted) end
local ttl = redis.call('pttl', KEYS[1])
if ttl < 0 then
  redis.call('pexpire', KEYS[1], ARGV[3])
  ttl = tonumber(ARGV[3])
end
return {granted, used, ttl}`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    authgateLease(key: string, points: number, want: number, windowMs: number): Result<[number, number, number], Context>;
  }
}

export function defineLeaseCommand(client: Redis | Cluster): void {
  client.defineCommand('authgateLease', { numberOfKeys: 1, lua: LEASE_SCRIPT });
}

interface Lease {
  /** Points this instance holds and may allow without asking Redis. */
  balance: number;
  /** What Redis had left after this instance's last lease. */
  remaining: number;
  /** Epoch ms; measured from before the request that read the window, so never later than Redis's end of it. */
  expiresAt: number;
  /** Redis had nothing left: refuse locally until the window ends. */
  exhausted: boolean;
  refilling: Promise<void> | undefined;
}

export interface LeasedLimiterOptions {
  readonly client: Redis | Cluster;
  /** The counter's key without the client's key (`{prefix}rl:{name}`). */
  readonly keyPrefix: string;
  readonly points: number;
  readonly windowMs: number;
  readonly maxKeys: number;
  /** Answers while Redis cannot: per instance, as in the exact mode. */
  readonly insurance: (key: string) => Promise<RateLimitDecision>;
  readonly onStoreError: (error: Error) => void;
}

/**
 * Counts a shared limit down in memory from leases taken out of Redis. Redis never grants more than the window's
 * budget and a lease is spent only within the window it was taken from, so N instances together allow at most the
 * limit per window, as the exact mode does. The cost is the other way: points leased by one instance and not yet
 * spent are not available to the others, so a key may be refused up to (N − 1) × (lease + ⌊lease/2⌋) points
 * before the budget is used up. A lease is refilled in the background once it is down to half, so requests
 * wait for Redis only on the first request of a key in a window (and when a burst outruns the refill).
 */
export class LeasedLimiter {
  private readonly leases = new Map<string, Lease>();
  private readonly lease: number;
  private readonly lowWater: number;

  constructor(private readonly options: LeasedLimiterOptions) {
    this.lease = leaseSize(options.points);
    this.lowWater = Math.floor(this.lease / 2);
  }

  async consume(key: string): Promise<RateLimitDecision> {
    const lease = this.leaseFor(key, Date.now());
    while (lease.balance === 0 && !lease.exhausted) {
      if (this.options.client.status !== 'ready') return this.options.insurance(key);
      try {
        await this.refill(key, lease);
      } catch (error) {
        this.options.onStoreError(error as Error);
        return this.options.insurance(key);
      }
    }
    return this.take(key, lease);
  }

  private take(key: string, lease: Lease): RateLimitDecision {
    const { points } = this.options;
    const resetMs = Math.max(0, lease.expiresAt - Date.now());
    if (lease.balance === 0) return { allowed: false, limit: points, remaining: 0, resetMs };
    lease.balance -= 1;
    if (lease.balance <= this.lowWater && !lease.exhausted && lease.refilling === undefined) {
      this.refill(key, lease).catch(this.options.onStoreError);
    }
    return { allowed: true, limit: points, remaining: lease.balance + lease.remaining, resetMs };
  }

  private leaseFor(key: string, now: number): Lease {
    const lease = this.leases.get(key);
    if (lease === undefined) {
      // Until Redis says when the window ends, it ends no later than a window from now.
      const fresh: Lease = { balance: 0, remaining: this.options.points, expiresAt: now + this.options.windowMs, exhausted: false, refilling: undefined };
      makeRoom(this.leases, this.options.maxKeys, now);
      this.leases.set(key, fresh);
      return fresh;
    }
    if (lease.expiresAt <= now) {
      // The window ended: what was left of the lease belonged to it.
      lease.balance = 0;
      lease.exhausted = false;
      lease.remaining = this.options.points;
    }
    return lease;
  }

  /** Single flight per key: concurrent requests wait on the same lease. */
  private refill(key: string, lease: Lease): Promise<void> {
    lease.refilling ??= this.request(key, lease).finally(() => (lease.refilling = undefined));
    return lease.refilling;
  }

  private async request(key: string, lease: Lease): Promise<void> {
    const { client, keyPrefix, points, windowMs } = this.options;
    const sentAt = Date.now();
    const [granted, used, ttlMs] = await client.authgateLease(`${keyPrefix}:${key}`, points, this.lease, windowMs);
    const windowEnd = sentAt + ttlMs;
    // Granted from a window that has ended by now: spending it would count against the next one.
    if (windowEnd <= Date.now()) return;
    if (windowEnd >= lease.expiresAt + windowMs / 2) {
      // Redis started a new window: points left from the previous one are no longer ours to spend.
      lease.balance = granted;
      lease.expiresAt = windowEnd;
      this.leases.delete(key);
      this.leases.set(key, lease);
    } else {
      lease.balance += granted;
      lease.expiresAt = Math.min(lease.expiresAt, windowEnd);
    }
    lease.remaining = Math.max(0, points - used);
    lease.exhausted = lease.remaining === 0;
  }

}

export function limiterDecision(allowed: boolean, limit: number, res: RateLimiterRes): RateLimitDecision {
  return { allowed, limit, remaining: res.remainingPoints, resetMs: Math.max(0, res.msBeforeNext) };
}
