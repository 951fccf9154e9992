import { describe, expect, it } from 'vitest';
import { estimateEntryBytes, TokenCache, tokenDigest, type KeyVersion } from '../../../../src/mechanisms/authenticators/jwt/token-cache.js';

const keys = (): { generation: number; usableUntilMs: number } => ({ generation: 1, usableUntilMs: 10_000 });

describe('TokenCache', () => {
  it.each<[name: string, validUntilMs: number, change: (k: { generation: number; usableUntilMs: number }) => void, nowMs: number, hit: boolean]>([
    ['before validUntil', 1000, () => undefined, 999, true],
    ['at validUntil', 1000, () => undefined, 1000, false],
    ['after the key generation changed', 1000, (k) => (k.generation = 2), 500, false],
    ['after the keys became unusable', 1000, (k) => (k.usableUntilMs = 400), 500, false],
  ])('lookup %s', (_name, validUntilMs, change, nowMs, hit) => {
    const cache = new TokenCache<string>(10_000);
    const version = keys();
    cache.set('t', 'identity', validUntilMs, version, 100);
    change(version);
    expect(cache.get('t', nowMs)).toBe(hit ? 'identity' : undefined);
    if (!hit) expect({ size: cache.size, bytes: cache.bytes }).toEqual({ size: 0, bytes: 0 });
  });

  it('evicts the least recently used entries when the byte budget is reached; a hit buys an entry another round', () => {
    const cache = new TokenCache<string>(300);
    const version: KeyVersion = keys();
    for (const token of ['a', 'b', 'c']) cache.set(token, token, 1000, version, 100);
    expect(cache.get('a', 0)).toBe('a'); // a was used: b is now the least recently used
    cache.set('d', 'd', 1000, version, 100);
    expect({ size: cache.size, bytes: cache.bytes }).toEqual({ size: 3, bytes: 300 });
    expect(['a', 'b', 'c', 'd'].map((token) => cache.get(token, 0))).toEqual(['a', undefined, 'c', 'd']);
  });

  it('makes room for a large entry by evicting as many small ones as it takes, and never exceeds the budget', () => {
    const cache = new TokenCache<string>(1000);
    const version = keys();
    for (let i = 0; i < 10; i++) cache.set(`small-${i}`, 'v', 1000, version, 100);
    cache.set('large', 'v', 1000, version, 450);
    expect({ size: cache.size, bytes: cache.bytes }).toEqual({ size: 6, bytes: 950 });
    expect(cache.get('small-4', 0)).toBeUndefined();
    expect(cache.get('small-5', 0)).toBe('v');
  });

  it('replacing an entry counts its bytes once', () => {
    const cache = new TokenCache<string>(1000);
    cache.set('a', 'old', 1000, keys(), 300);
    cache.set('a', 'new', 1000, keys(), 200);
    expect({ value: cache.get('a', 0), bytes: cache.bytes }).toEqual({ value: 'new', bytes: 200 });
  });

  it('keeps only what retainOnly accepts, and frees their bytes', () => {
    const cache = new TokenCache<string>(1000);
    for (const token of ['keep-1', 'drop-1', 'keep-2']) cache.set(token, token, 1000, keys(), 100);
    cache.retainOnly((value) => value.startsWith('keep'));
    expect({ size: cache.size, bytes: cache.bytes, dropped: cache.get('drop-1', 0) }).toEqual({ size: 2, bytes: 200, dropped: undefined });
  });

  it('stores nothing when the budget is 0 or smaller than the entry', () => {
    for (const [budget, bytes] of [[0, 1], [100, 101]] as const) {
      const cache = new TokenCache<string>(budget);
      cache.set('a', 'a', 1000, keys(), bytes);
      expect(cache.get('a', 0)).toBeUndefined();
    }
  });

  it('keys by a SHA-256 digest of fixed size, and estimates larger tokens as larger entries', () => {
    const token = 'x'.repeat(8000);
    expect(tokenDigest(token)).toHaveLength(44);
    expect(tokenDigest(token)).not.toBe(tokenDigest(`${token}y`));
    expect(estimateEntryBytes(8000)).toBeGreaterThan(estimateEntryBytes(800));
  });
});
