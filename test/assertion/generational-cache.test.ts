import { describe, expect, it } from 'vitest';
import { GenerationalCache } from '../../src/assertion/generational-cache.js';

describe('GenerationalCache', () => {
  it('never holds more than its capacity, whatever the traffic', () => {
    const cache = new GenerationalCache<number>(100);
    for (let i = 0; i < 10_000; i++) {
      cache.set(`k${i}`, i);
      expect(cache.size).toBeLessThanOrEqual(100);
    }
    expect(cache.get('k9999')).toBe(9999);
    expect(cache.get('k0')).toBeUndefined();
  });

  it('keeps a key that is used while others stream through', () => {
    const cache = new GenerationalCache<string>(10);
    cache.set('hot', 'v');
    for (let i = 0; i < 1_000; i++) {
      cache.set(`cold${i}`, 'c');
      expect(cache.get('hot')).toBe('v');
    }
  });

  it('deleteIf removes only the value it was given', () => {
    const cache = new GenerationalCache<string>(10);
    cache.set('k', 'first');
    cache.deleteIf('k', 'other');
    expect(cache.get('k')).toBe('first');
    cache.deleteIf('k', 'first');
    expect(cache.get('k')).toBeUndefined();
  });
});
