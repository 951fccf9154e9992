import { describe, expect, it } from 'vitest';
import { TokenCache, type KeyVersion } from '../../../../src/mechanisms/authenticators/jwt/token-cache.js';

const keys = (): { generation: number; usableUntilMs: number } => ({ generation: 1, usableUntilMs: 10_000 });

describe('TokenCache', () => {
  it.each<[name: string, validUntilMs: number, change: (k: { generation: number; usableUntilMs: number }) => void, nowMs: number, hit: boolean]>([
    ['before validUntil', 1000, () => undefined, 999, true],
    ['at validUntil', 1000, () => undefined, 1000, false],
    ['after the key generation changed', 1000, (k) => (k.generation = 2), 500, false],
    ['after the keys became unusable', 1000, (k) => (k.usableUntilMs = 400), 500, false],
  ])('lookup %s', (_name, validUntilMs, change, nowMs, hit) => {
    const cache = new TokenCache<string>(10);
    const version = keys();
    cache.set('t', 'identity', validUntilMs, version);
    change(version);
    expect(cache.get('t', nowMs)).toBe(hit ? 'identity' : undefined);
    if (!hit) expect(cache.size).toBe(0);
  });

  it('evicts the least recently used entry when full', () => {
    const cache = new TokenCache<string>(3);
    const version: KeyVersion = keys();
    for (const token of ['a', 'b', 'c']) cache.set(token, token, 1000, version);
    expect(cache.get('a', 0)).toBe('a'); // a is now the most recent: b is the oldest
    cache.set('d', 'd', 1000, version);
    expect(cache.size).toBe(3);
    expect(['a', 'b', 'c', 'd'].map((token) => cache.get(token, 0))).toEqual(['a', undefined, 'c', 'd']);
  });

  it('stores nothing when sized 0', () => {
    const cache = new TokenCache<string>(0);
    cache.set('a', 'a', 1000, keys());
    expect(cache.get('a', 0)).toBeUndefined();
  });
});
