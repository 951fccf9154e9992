import { RateLimiterRes } from 'rate-limiter-flexible';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BoundedCounters, BoundedRateLimiterMemory } from '../../src/store/memory-limiter.js';

const WINDOW_S = 60;
const T0 = Date.UTC(2026, 0, 1);

afterEach(() => {
  vi.useRealTimers();
});

/** Which of `keys` still have a counter. */
function held(counters: BoundedCounters, keys: readonly string[]): string[] {
  return keys.filter((key) => counters.get(key) !== null);
}

describe('bounded in-memory counters', () => {
  it.each([1, 3, 1000])('at most %i keys however many distinct keys arrive; the newest are the ones kept', (maxKeys) => {
    const counters = new BoundedCounters(maxKeys);
    const keys = Array.from({ length: maxKeys * 3 + 1 }, (_, index) => `k${index}`);
    for (const key of keys) counters.incrby(key, 1, WINDOW_S);
    expect(counters.size).toBe(maxKeys);
    expect(held(counters, keys)).toEqual(keys.slice(-maxKeys));
  });

  it('evicts the key whose window started first, even if it was counted since', () => {
    const counters = new BoundedCounters(3);
    for (const key of ['a', 'b', 'c']) counters.incrby(key, 1, WINDOW_S);
    expect(counters.incrby('a', 1, WINDOW_S).consumedPoints).toBe(2);
    counters.incrby('d', 1, WINDOW_S);
    expect(held(counters, ['a', 'b', 'c', 'd'])).toEqual(['b', 'c', 'd']);
  });

  it('drops expired counters to make room before evicting a live one', () => {
    vi.useFakeTimers({ toFake: ['Date'], now: T0 });
    const counters = new BoundedCounters(3);
    counters.incrby('old-1', 1, WINDOW_S);
    counters.incrby('old-2', 1, WINDOW_S);
    vi.setSystemTime(T0 + WINDOW_S * 1000);
    counters.incrby('live', 1, WINDOW_S);
    counters.incrby('new', 1, WINDOW_S);
    expect(counters.size).toBe(2);
    expect(held(counters, ['old-1', 'old-2', 'live', 'new'])).toEqual(['live', 'new']);
  });

  it('starts a fresh window for an expired key, at the back of the eviction order', () => {
    vi.useFakeTimers({ toFake: ['Date'], now: T0 });
    const counters = new BoundedCounters(2);
    counters.incrby('a', 5, WINDOW_S);
    vi.setSystemTime(T0 + WINDOW_S * 1000 - 1);
    counters.incrby('b', 1, WINDOW_S);
    vi.setSystemTime(T0 + WINDOW_S * 1000);
    const fresh = counters.incrby('a', 1, WINDOW_S);
    expect([fresh.consumedPoints, fresh.msBeforeNext, fresh.isFirstInDuration]).toEqual([1, WINDOW_S * 1000, true]);
    counters.incrby('c', 1, WINDOW_S);
    expect(held(counters, ['a', 'b', 'c'])).toEqual(['a', 'c']);
  });
});

describe('bounded RateLimiterMemory', () => {
  it('at the bound, a new key is admitted and the oldest one forgotten', async () => {
    const limiter = new BoundedRateLimiterMemory({ points: 1, duration: WINDOW_S, keyPrefix: 'test' }, 2);
    await limiter.consume('first');
    await expect(limiter.consume('first')).rejects.toBeInstanceOf(RateLimiterRes);
    for (const key of ['second', 'third']) expect((await limiter.consume(key)).remainingPoints).toBe(0);
    expect(limiter.counters.size).toBe(2);
    // Forgotten: `first` gets a fresh window, and `second`, now the oldest, makes way for it.
    expect((await limiter.consume('first')).remainingPoints).toBe(0);
    await expect(limiter.consume('third')).rejects.toBeInstanceOf(RateLimiterRes);
    expect((await limiter.consume('second')).remainingPoints).toBe(0);
  });
});
