/**
 * Verified-token cache (SPEC §4): token text → the result of a full verification, until the token stops being
 * acceptable (exp or max_token_age) or the keys that vouched for it change. A hit costs one Map lookup and a few
 * comparisons: no decoding, no JSON, no crypto. Revocation is deliberately not here; the caller checks it on
 * every request, hit or miss.
 *
 * Bounded LRU on Map insertion order (a hit moves the entry to the back). Memory is bounded by
 * `maxEntries` × 8 KiB tokens at worst.
 */

/** The part of a key set the cache needs to notice that its keys changed or went unusable. */
export interface KeyVersion {
  readonly generation: number;
  readonly usableUntilMs: number;
}

interface Entry<V> {
  readonly value: V;
  readonly validUntilMs: number;
  readonly keys: KeyVersion;
  readonly generation: number;
}

const DEFAULT_TOKEN_CACHE_ENTRIES = 10_000;

export class TokenCache<V> {
  private readonly entries = new Map<string, Entry<V>>();

  constructor(private readonly maxEntries: number = DEFAULT_TOKEN_CACHE_ENTRIES) {}

  get size(): number {
    return this.entries.size;
  }

  get(token: string, nowMs: number): V | undefined {
    const entry = this.entries.get(token);
    if (entry === undefined) return undefined;
    if (nowMs >= entry.validUntilMs || entry.generation !== entry.keys.generation || nowMs >= entry.keys.usableUntilMs) {
      this.entries.delete(token);
      return undefined;
    }
    this.entries.delete(token);
    this.entries.set(token, entry);
    return entry.value;
  }

  set(token: string, value: V, validUntilMs: number, keys: KeyVersion): void {
    if (this.maxEntries <= 0) return;
    this.entries.delete(token);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(token, { value, validUntilMs, keys, generation: keys.generation });
  }
}
