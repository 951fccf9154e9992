import type { Cluster, Redis, Result } from 'ioredis';
import type { RateLimiterRes } from 'rate-limiter-flexible';
import { makeRoom } from './memory-limiter.js';
import type { RateLimitDecision } from './types.js';

/**
 * A lease is this fraction of the limit (at least one point): with a limit of 1000 a window, an instance asks
 * Redis once per 50 requests of a key, and holds at most 75 points (see {@link LeasedLimiter}).
 */
const LEASE_DIVISOR = 20;

export function leaseSize(points: number): number {
  return Math.max(1, Math.floor(points / LEASE_DIVISOR));
}

/**
 * At the start of a window an instance admits up to this fraction of the limit (at least one request) of a key
 * before Redis has granted points for them, so no request waits for the round trip that starts the window: 10
 * requests with a limit of 1000.
 */
const TRUST_DIVISOR = 100;

export function trustSize(points: number): number {
  return Math.max(1, Math.floor(points / TRUST_DIVISOR));
}

/**
 * The lease requests of a window's first requests (admitted on trust meanwhile) wait this long for others to share
 * one call to Redis: one script call for many keys costs a fraction of one call per key. A refill, or a request
 * that has to wait, sends the batch as soon as the current turn of the event loop is done.
 */
const BATCH_DELAY_MS = 5;
/** Keys per script call: bounds how long one call holds Redis. */
const MAX_KEYS_PER_CALL = 100;

/**
 * For each key KEYS[i]: counts ARGV[3 + i] points already admitted on trust, then takes up to ARGV[2] more of the
 * window's budget (ARGV[1] points per ARGV[3] ms). The counter is the one the exact mode increments (the same key,
 * value and TTL), so switching modes carries it on. Returns {granted, used, ms left} for each key in turn. Keys of
 * one call share a hash slot on a Cluster (there, one key per call).
 */
const LEASES_SCRIPT = `local answers = {}
for i, key in ipairs(KEYS) do
  redis.call('set', key, 0, 'PX', ARGV[3], 'NX')
  local used = redis.call('incrby', key, ARGV[3 + i])
  local granted = math.max(0, math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - used))
  if granted > 0 then used = redis.call('incrby', key, granted) end
  local ttl = redis.call('pttl', key)
  if ttl < 0 then
    redis.call('pexpire', key, ARGV[3])
    ttl = tonumber(ARGV[3])
  end
  answers[#answers + 1] = granted
  answers[#answers + 1] = used
  answers[#answers + 1] = ttl
end
return answers`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** `authgateLeases(keyCount, ...keys, points, want, windowMs, ...credits)`. */
    authgateLeases(...args: (string | number)[]): Result<number[], Context>;
  }
}

export function defineLeaseCommand(client: Redis | Cluster): void {
  client.defineCommand('authgateLeases', { lua: LEASES_SCRIPT });
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
  /** Redis's last answer, whichever window it came from, was that the budget was spent. */
  spent: boolean;
  /**
   * Requests this instance may still admit in this window before Redis grants points for them. Set when a window
   * starts, to {@link trustSize} less what is still unconfirmed, and to none after Redis answered that the budget
   * was spent: so at most that many requests are ever admitted unconfirmed.
   */
  trust: number;
  /** Admitted on trust, not yet sent to Redis. */
  owed: number;
  /** Admitted on trust and sent to Redis in the call now in flight. */
  sending: number;
  /** The call that brings this lease's next points, queued or in flight; one at a time per key. */
  call: LeaseCall | undefined;
}

/** One batch of lease requests: one script call, or one per key on a Cluster. */
interface LeaseCall {
  readonly keys: string[];
  readonly leases: Lease[];
  sent: boolean;
  /** Resolves when every lease in it has its answer, or once the call failed. */
  readonly answered: Promise<void>;
  resolve(): void;
  failed: boolean;
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
 * - The first requests of a key in a window (or ever) are admitted on trust while its lease is fetched, and Redis
 *   counts them with it. That is the only way past the limit: at most {@link trustSize} requests per instance,
 *   key and window, and none in a window after Redis last answered this instance that the budget was spent.
 * - Points leased by one instance are not available to others until it spends them: a key may be refused while
 *   up to (N − 1) × (lease + ⌊lease/2⌋) points are held by the other instances.
 * - A lease is refilled in the background once down to half; a request waits for Redis only when a burst on one
 *   key outruns the refill. Lease requests go to Redis in batches: one script call for many keys.
 */
export class LeasedLimiter {
  private readonly leases = new Map<string, Lease>();
  private readonly lease: number;
  private readonly lowWater: number;
  private readonly trust: number;
  private readonly keysPerCall: number;
  private queued: LeaseCall | undefined;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;

  constructor(private readonly options: LeasedLimiterOptions) {
    this.lease = leaseSize(options.points);
    this.lowWater = Math.floor(this.lease / 2);
    this.trust = trustSize(options.points);
    // A script may touch keys of one hash slot only; a Cluster spreads the counters over all of them.
    this.keysPerCall = options.client.isCluster ? 1 : MAX_KEYS_PER_CALL;
  }

  /** Answers at once unless the key has neither points nor trust left; then after Redis (or the insurance). */
  consume(key: string): RateLimitDecision | Promise<RateLimitDecision> {
    const now = Date.now();
    const lease = this.leaseFor(key, now);
    if (lease.balance > 0) return this.spend(key, lease, now);
    if (lease.exhausted) return this.decision(false, lease, now);
    if (this.options.client.status !== 'ready') return this.options.insurance(key);
    if (lease.trust > 0) {
      lease.trust -= 1;
      lease.owed += 1;
      this.request(key, lease, false);
      return this.decision(true, lease, now);
    }
    return this.afterLease(key, lease);
  }

  private spend(key: string, lease: Lease, now: number): RateLimitDecision {
    lease.balance -= 1;
    if (lease.balance <= this.lowWater && !lease.exhausted && lease.call === undefined && this.options.client.status === 'ready') {
      // Half a lease is left to cover the round trip, not a batch's wait as well.
      this.request(key, lease, true);
    }
    return this.decision(true, lease, now);
  }

  /**
   * `remaining`: what this instance knows is left — its points plus what Redis had left, less what it admitted
   * that Redis has not counted yet; never below what it will still admit from its points.
   */
  private decision(allowed: boolean, lease: Lease, now: number): RateLimitDecision {
    const remaining = allowed ? Math.max(0, lease.balance + lease.remaining - lease.owed - lease.sending) : 0;
    return { allowed, limit: this.options.points, remaining, resetMs: Math.max(0, lease.expiresAt - now) };
  }

  private async afterLease(key: string, lease: Lease): Promise<RateLimitDecision> {
    const call = this.request(key, lease, true);
    await call.answered;
    if (call.failed) return this.options.insurance(key);
    return this.consume(key);
  }

  private leaseFor(key: string, now: number): Lease {
    const lease = this.leases.get(key);
    if (lease === undefined) {
      // Leases stay a window past their end, so a key seen spent keeps no trust when it comes back. A table at its
      // bound forgets live keys, maybe this one before: a key new to a full table gets no trust, else each eviction
      // would hand a spent key its trust again.
      const full = makeRoom(this.leases, this.options.maxKeys, now - this.options.windowMs);
      // Until Redis says when the window ends, it ends no later than a window from now.
      const fresh: Lease = {
        balance: 0, remaining: this.options.points, expiresAt: now + this.options.windowMs,
        exhausted: false, spent: false, trust: full ? 0 : this.trust, owed: 0, sending: 0, call: undefined,
      };
      this.leases.set(key, fresh);
      return fresh;
    }
    if (lease.expiresAt <= now) {
      // The window ended: what was left of the lease belonged to it. A key this instance last saw spent gets no
      // trust: Redis may still be in that window for a round trip.
      lease.balance = 0;
      lease.exhausted = false;
      lease.trust = lease.spent ? 0 : this.trust - lease.owed - lease.sending;
      lease.remaining = this.options.points;
      lease.expiresAt = now + this.options.windowMs;
      this.leases.delete(key);
      this.leases.set(key, lease);
    }
    return lease;
  }

  /** Adds the key to the next call (one call at a time per key); `promptly`: without waiting for others to join. */
  private request(key: string, lease: Lease, promptly: boolean): LeaseCall {
    let call = lease.call;
    if (call === undefined) {
      call = this.queued ??= newCall();
      call.keys.push(key);
      call.leases.push(lease);
      lease.call = call;
    }
    if (call.sent) return call;
    if (promptly) this.immediate ??= setImmediate(() => this.flush());
    else this.timer ??= setTimeout(() => this.flush(), BATCH_DELAY_MS);
    return call;
  }

  private flush(): void {
    clearTimeout(this.timer);
    clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    const call = this.queued;
    this.queued = undefined;
    if (call === undefined) return;
    call.sent = true;
    const sending: Promise<void>[] = [];
    for (let from = 0; from < call.keys.length; from += this.keysPerCall) sending.push(this.send(call, from, from + this.keysPerCall));
    void Promise.all(sending).then(call.resolve);
  }

  private async send(call: LeaseCall, from: number, to: number): Promise<void> {
    const { client, keyPrefix, points, windowMs } = this.options;
    const keys = call.keys.slice(from, to);
    const leases = call.leases.slice(from, to);
    const credits = leases.map((lease) => {
      lease.sending = lease.owed;
      lease.owed = 0;
      return lease.sending;
    });
    const sentAt = Date.now();
    try {
      const answers = await client.authgateLeases(keys.length, ...keys.map((key) => `${keyPrefix}:${key}`), points, this.lease, windowMs, ...credits);
      leases.forEach((lease, index) => this.settle(keys[index] as string, lease, answers, index * 3, sentAt));
    } catch (error) {
      // Whether Redis counted what was sent is unknown: it is not sent again.
      call.failed = true;
      for (const lease of leases) {
        lease.sending = 0;
        lease.call = undefined;
      }
      this.options.onStoreError(error as Error);
    }
  }

  private settle(key: string, lease: Lease, answers: readonly number[], at: number, sentAt: number): void {
    const [granted, used, ttlMs] = [answers[at] as number, answers[at + 1] as number, answers[at + 2] as number];
    const { points, windowMs } = this.options;
    lease.sending = 0;
    lease.call = undefined;
    const windowEnd = sentAt + ttlMs;
    // Granted from a window that has ended by now: spending it would count against the next one.
    if (windowEnd > Date.now()) {
      if (windowEnd >= lease.expiresAt + windowMs / 2) {
        // Redis started a new window: points left from the previous one are no longer ours to spend.
        lease.balance = granted;
        lease.expiresAt = windowEnd;
        // To the back of the map, which is kept in window-start order (unless the lease was forgotten meanwhile).
        if (this.leases.get(key) === lease) {
          this.leases.delete(key);
          this.leases.set(key, lease);
        }
      } else {
        lease.balance += granted;
        lease.expiresAt = Math.min(lease.expiresAt, windowEnd);
      }
      lease.remaining = Math.max(0, points - used);
      lease.exhausted = lease.remaining === 0;
    }
    // Requests admitted on trust while this call was in flight are paid from its points where they suffice.
    const paid = Math.min(lease.owed, lease.balance);
    lease.balance -= paid;
    lease.owed -= paid;
    lease.spent = used >= points;
    if (lease.spent) lease.trust = 0;
    if (lease.owed > 0) this.request(key, lease, false);
  }
}

function newCall(): LeaseCall {
  let resolve!: () => void;
  const answered = new Promise<void>((settle) => (resolve = settle));
  return { keys: [], leases: [], sent: false, answered, resolve, failed: false };
}

export function limiterDecision(allowed: boolean, limit: number, res: RateLimiterRes): RateLimitDecision {
  return { allowed, limit, remaining: res.remainingPoints, resetMs: Math.max(0, res.msBeforeNext) };
}
