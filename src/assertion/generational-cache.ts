/**
 * A bounded cache that keeps what is used: two generations of at most `capacity / 2` entries each. Hits in the
 * older generation move to the young one; when the young one fills, it becomes the old one and the previous old
 * one is dropped whole. Unlike a Map-ordered LRU it never deletes and re-inserts a key on a hit: V8 leaves each
 * deleted entry in its hash chain until the next rehash, so one hot key in a large Map makes every hit walk a chain
 * that grows with the traffic (measured: 28–43 µs per hit at 10 000–22 000 entries, against 0.7 µs).
 */
export class GenerationalCache<V> {
  private young = new Map<string, V>();
  private old = new Map<string, V>();
  private readonly generationSize: number;

  constructor(capacity: number) {
    this.generationSize = Math.max(1, Math.floor(capacity / 2));
  }

  get size(): number {
    return this.young.size + this.old.size;
  }

  get(key: string): V | undefined {
    const young = this.young.get(key);
    if (young !== undefined) return young;
    const old = this.old.get(key);
    if (old !== undefined) this.set(key, old);
    return old;
  }

  set(key: string, value: V): void {
    if (!this.young.has(key) && this.young.size >= this.generationSize) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(key, value);
  }

  /** Forget `key` only while it still maps to `value` (a failed entry, not its replacement). */
  deleteIf(key: string, value: V): void {
    if (this.young.get(key) === value) this.young.delete(key);
    if (this.old.get(key) === value) this.old.delete(key);
  }
}
