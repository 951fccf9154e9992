import { RateLimiterMemory, RateLimiterRes, type RateLimiterRedis } from 'rate-limiter-flexible';

interface Counter {
  value: number;
  /** Epoch ms; Infinity for a counter without a window. */
  readonly expiresAt: number;
}

/**
 * rate-limiter-flexible's in-memory storage has no cap on keys, and limits run before authentication with
 * keys a client chooses (a header value, an IP behind a trusted proxy), so anyone could fill it. This one
 * holds at most `maxKeys` counters. The Map keeps them in the order their windows started, which for one
 * limiter (one window length) is also the order they expire: expired counters are dropped from the front as
 * new ones arrive, and at the cap the oldest live counter is evicted. Evicting can only let that client start
 * a fresh window early; refusing new keys instead would lock out every new client for as long as the attack
 * lasts. It also sets no timer per key, which is most of what a key costs in the original.
 */
export class BoundedCounters {
  private readonly counters = new Map<string, Counter>();

  constructor(private readonly maxKeys: number) {}

  get size(): number {
    return this.counters.size;
  }

  incrby(key: string, value: number, durationS: number): RateLimiterRes {
    const now = Date.now();
    const counter = this.counters.get(key);
    if (counter === undefined || counter.expiresAt <= now) return this.set(key, value, durationS);
    counter.value += value;
    return new RateLimiterRes(0, remainingMs(counter, now), counter.value, false);
  }

  set(key: string, value: number, durationS: number): RateLimiterRes {
    const now = Date.now();
    // Re-inserted at the end, so the Map stays in window-start order.
    this.counters.delete(key);
    this.makeRoom(now);
    const counter = { value, expiresAt: durationS > 0 ? now + durationS * 1000 : Infinity };
    this.counters.set(key, counter);
    return new RateLimiterRes(0, remainingMs(counter, now), value, true);
  }

  get(key: string): RateLimiterRes | null {
    const now = Date.now();
    const counter = this.counters.get(key);
    if (counter === undefined || counter.expiresAt <= now) return null;
    return new RateLimiterRes(0, remainingMs(counter, now), counter.value, false);
  }

  delete(key: string): boolean {
    return this.counters.delete(key);
  }

  clear(): void {
    this.counters.clear();
  }

  private makeRoom(now: number): void {
    makeRoom(this.counters, this.maxKeys, now);
  }
}

/**
 * Before an insert into a map kept in window-start order: drops expired entries from the front, and at the cap
 * the oldest live one. Each entry is dropped once, so this costs O(1) per insert over time. Whether a live entry had
 * to go: the map is at its bound, and whatever it forgot may come back as if new.
 */
export function makeRoom(map: Map<string, { readonly expiresAt: number }>, maxKeys: number, now: number): boolean {
  let forgotLive = false;
  for (const [key, entry] of map) {
    const live = entry.expiresAt > now;
    if (live && map.size < maxKeys) return forgotLive;
    forgotLive ||= live;
    map.delete(key);
  }
  return forgotLive;
}

function remainingMs(counter: Counter, now: number): number {
  return counter.expiresAt === Infinity ? -1 : counter.expiresAt - now;
}

/** RateLimiterMemory on {@link BoundedCounters}: the same limiter, usable as Redis's insurance limiter. */
export class BoundedRateLimiterMemory extends RateLimiterMemory {
  readonly counters: BoundedCounters;

  constructor(options: ConstructorParameters<typeof RateLimiterMemory>[0], maxKeys: number) {
    super(options);
    this.counters = new BoundedCounters(maxKeys);
    // The library offers no option for its storage; this field is where every operation of the class looks.
    (this as unknown as { _memoryStorage: BoundedCounters })._memoryStorage = this.counters;
  }
}

/**
 * RateLimiterRedis refuses keys already over their limit from an in-memory set, without a Redis round trip.
 * The library's set has no cap either, and once it holds 1000 keys it scans all of them on every new block,
 * so clients flooding distinct over-limit keys would cost memory and quadratic CPU. This puts it on
 * {@link BoundedCounters}; a block forgotten at the bound only costs that key's next request a round trip,
 * and Redis still refuses it. Returns the counters, whose size is the number of blocked keys held.
 */
export function boundInMemoryBlocks(limiter: RateLimiterRedis, maxKeys: number): BoundedCounters {
  const blocks = new BoundedCounters(maxKeys);
  // The library offers no option for this set; this field is where every operation of the class looks.
  (limiter as unknown as { _inMemoryBlockedKeys: unknown })._inMemoryBlockedKeys = {
    add: (key: string, seconds: number): void => void blocks.set(key, 1, seconds),
    addMs: (key: string, ms: number): void => void blocks.set(key, 1, ms / 1000),
    msBeforeExpire: (key: string): number => blocks.get(key)?.msBeforeNext ?? 0,
    delete: (key?: string): void => (key === undefined ? blocks.clear() : void blocks.delete(key)),
  };
  return blocks;
}
