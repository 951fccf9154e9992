import { describe, expect, it } from 'vitest';
import { MemoryReplayStore } from '../../src/store/replay.js';

describe('memory replay store', () => {
  it('cannot take new ids when full of live ones (it rejects, as a store that cannot tell), and forgets expired ones', async () => {
    let clock = 0;
    const store = new MemoryReplayStore(2, () => clock);
    expect(await store.claim('a', 1000)).toBe(true);
    expect(await store.claim('b', 1000)).toBe(true);
    await expect(store.claim('c', 1000)).rejects.toThrow('full: 2 live ids');
    expect(await store.claim('a', 1000)).toBe(false);
    clock = 1000;
    expect(await store.claim('c', 1000)).toBe(true);
    expect(await store.claim('a', 1000)).toBe(true);
  });
});
