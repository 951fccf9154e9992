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
 * Counts ARGV[4] points already admitted on credit, then takes up to ARGV[2] more of the window's budget
 * (ARGV[1] points per ARGV[3] ms). The counter is the one the exact mode increments (the same key, value and
 * TTL), so switching modes carries it on. One key: one slot on a Cluster. Returns {granted, used, ms left}.
 */
const LEASE_SCRIPT = `redis.call('set', KEYS[1], 0, 'PX', ARGV[3], 'NX')
local used = redis.call('incrby', KEYS[1], ARGV[4])
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
    authgateLease(key: string, points: number, want: number, windowMs: number, credit: number): Result<[number, number, number], Context>;
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
  /** This window's one request admitted before Redis answered has been spent. */
  creditUsed: boolean;
  /** Requests admitted on credit that Redis has not counted yet (0 or 1). */
  debt: number;
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
 * Counts a shared limit down in memory from leases taken out of Redis, so a request costs no round trip:
 * - Redis never grants more than the window's budget, and a lease is spent only within the window it came from.
 * - The first request of a key in a window is admitted on credit while its lease is fetched, and counted in
 *   Redis with it. That is the only way past the limit: at most one request per instance, key and window, and
 *   none in a window after one in which this instance saw the key exhausted.
 * - Points leased by one instance are not available to others until it spends them: a key may be refused while
 *   up to (N − 1) × (lease + ⌊lease/2⌋) points are held by the other instances.
 * - A lease is refilled in the background once down to half; a request waits for Redis only when a burst
 *   outruns the refill.
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
    if (lease.balance === 0 && !lease.exhausted && this.options.client.status !== 'ready') return this.options.insurance(key);
    if (lease.balance === 0 && !lease.exhausted && !lease.creditUsed && lease.refilling === undefined) return this.onCredit(key, lease);
    while (lease.balance === 0 && !lease.exhausted) {
      try {
        await this.refill(key, lease);
      } catch (error) {
        this.options.onStoreError(error as Error);
        return this.options.insurance(key);
      }
    }
    return this.take(key, lease);
  }

  /** Admits at once; the lease request that follows counts this request in Redis. */
  private onCredit(key: string, lease: Lease): RateLimitDecision {
    lease.creditUsed = true;
    lease.debt = 1;
    this.refill(key, lease).catch(this.options.onStoreError);
    const { points } = this.options;
    return { allowed: true, limit: points, remaining: Math.max(0, lease.remaining - 1), resetMs: Math.max(0, lease.expiresAt - Date.now()) };
  }

  private take(key: string, lease: Lease): RateLimitDecision {
    const { points } = this.options;
    const resetMs = Math.max(0, lease.expiresAt - Date.now());
    if (lease.balance === 0) return { allowed: false, limit: points, remaining: 0, resetMs };
    lease.balance -= 1;
    if (lease.balance <= this.lowWater && !lease.exhausted && lease.refilling === undefined && this.options.client.status === 'ready') {
      this.refill(key, lease).catch(this.options.onStoreError);
    }
    return { allowed: true, limit: points, remaining: lease.balance + lease.remaining, resetMs };
  }

  private leaseFor(key: string, now: number): Lease {
    const lease = this.leases.get(key);
    if (lease === undefined) {
      // Until Redis says when the window ends, it ends no later than a window from now.
      const fresh: Lease = {
        balance: 0, remaining: this.options.points, expiresAt: now + this.options.windowMs,
        exhausted: false, creditUsed: false, debt: 0, refilling: undefined,
      };
      makeRoom(this.leases, this.options.maxKeys, now);
      this.leases.set(key, fresh);
      return fresh;
    }
    if (lease.expiresAt <= now) {
      // The window ended: what was left of the lease belonged to it. Redis may still be in that window for a round
      // trip, so a key this instance saw exhausted gets no credit: it could land in the exhausted window.
      lease.creditUsed = lease.exhausted;
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
    const credit = lease.debt;
    lease.debt = 0;
    const sentAt = Date.now();
    const [granted, used, ttlMs] = await client.authgateLease(`${keyPrefix}:${key}`, points, this.lease, windowMs, credit);
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
