import { hash } from 'node:crypto';

/**
 * Verified-token cache: token digest → the identity a full verification produced, until the token stops being
 * acceptable (exp or max_token_age) or the keys that vouched for it change. A hit costs one Map lookup and a few
 * comparisons: no decoding, no JSON, no signature check. Revocation is deliberately not here; the caller checks
 * it on every request, hit or miss.
 *
 * Keyed by the SHA-256 of the token, not the token: a large token is kilobytes the cache would hold a second
 * time, and a cryptographic digest is the cheapest key that an attacker cannot make collide with someone else's
 * cached token (a fast non-cryptographic hash could be, and a collision would hand over that identity).
 *
 * Bounded in bytes, not entries: tokens vary from a few hundred bytes to 8 KiB, so an entry count says little
 * about memory. Each entry's size is estimated from the token's length (see `estimateEntryBytes`).
 *
 * Eviction is CLOCK (second chance), an LRU approximation: a hit only sets a flag, and eviction gives flagged
 * entries at the old end one more round. Moving an entry to the back on every hit, as a strict LRU on a Map must,
 * makes V8 chain deleted copies of the hot key until the next rehash: tens of µs per hit at 10,000 entries.
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
  readonly bytes: number;
  /** Set by a hit, cleared when eviction passes over the entry. */
  referenced: boolean;
}

/** Default budget: 64 MiB of estimated entry size per process (per worker with `workers` > 1). */
const DEFAULT_TOKEN_CACHE_BYTES = 64 * 1024 * 1024;

/**
 * Fixed cost of one entry besides its payload: the Map slot, the 44-character key, the entry record, the frozen
 * identity and its role/permission/scope arrays (measured with bench/token-cache-memory.ts).
 */
const ENTRY_OVERHEAD_BYTES = 2560;
/**
 * A decoded payload held as JS values takes about twice its JSON text (string headers, array slots, object shapes),
 * and the JSON text is 3/4 of the base64url segment. With the overhead above this overestimates what RSS shows by
 * 1–25 % for 1 KB and 7.5 KB tokens, so the budget is an upper bound.
 */
const HEAP_BYTES_PER_PAYLOAD_CHARACTER = 1.5;

/**
 * The cache key of a token: its SHA-256, base64 (44 characters whatever the token's size). The one-shot
 * `crypto.hash` costs half of a `createHash` object for a token of a few hundred bytes.
 */
export function tokenDigest(token: string): string {
  return hash('sha256', token, 'base64');
}

/**
 * The heap an entry for a token of `tokenLength` characters takes: its payload segment decoded, read from the
 * whole length (the header and signature, a few hundred characters, make it an overestimate).
 */
export function estimateEntryBytes(tokenLength: number): number {
  return ENTRY_OVERHEAD_BYTES + Math.ceil(tokenLength * HEAP_BYTES_PER_PAYLOAD_CHARACTER);
}

export class TokenCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private totalBytes = 0;
  /**
   * The clock hand: one live iterator from the old end. Map iterators see later insertions, so an entry given a
   * second chance comes round again; a fresh iterator per eviction would walk over every deleted slot V8 keeps at
   * the old end until its next rehash.
   */
  private hand: Iterator<[string, Entry<V>]> = this.entries.entries();

  /** `maxBytes` 0 disables the cache. */
  constructor(private readonly maxBytes: number = DEFAULT_TOKEN_CACHE_BYTES) {}

  get size(): number {
    return this.entries.size;
  }

  /** Estimated bytes held, never above the budget. */
  get bytes(): number {
    return this.totalBytes;
  }

  get(digest: string, nowMs: number): V | undefined {
    const entry = this.entries.get(digest);
    if (entry === undefined) return undefined;
    if (nowMs >= entry.validUntilMs || entry.generation !== entry.keys.generation || nowMs >= entry.keys.usableUntilMs) {
      this.remove(digest, entry);
      return undefined;
    }
    entry.referenced = true;
    return entry.value;
  }

  set(digest: string, value: V, validUntilMs: number, keys: KeyVersion, bytes: number): void {
    if (bytes > this.maxBytes) return;
    const previous = this.entries.get(digest);
    if (previous !== undefined) this.remove(digest, previous);
    this.makeRoom(bytes);
    this.entries.set(digest, { value, validUntilMs, keys, generation: keys.generation, bytes, referenced: false });
    this.totalBytes += bytes;
  }

  /** Drops every entry whose value `keep` refuses (a reload dropping the tokens of changed issuers). */
  retainOnly(keep: (value: V) => boolean): void {
    for (const [digest, entry] of this.entries) if (!keep(entry.value)) this.remove(digest, entry);
  }

  /** Evicts from the old end until `bytes` more fit; a referenced entry is moved to the new end once instead. */
  private makeRoom(bytes: number): void {
    while (this.totalBytes + bytes > this.maxBytes && this.entries.size > 0) {
      let oldest = this.hand.next();
      if (oldest.done) {
        this.hand = this.entries.entries();
        oldest = this.hand.next();
        if (oldest.done) return;
      }
      const [digest, entry] = oldest.value;
      this.entries.delete(digest);
      if (entry.referenced) {
        entry.referenced = false;
        this.entries.set(digest, entry);
      } else {
        this.totalBytes -= entry.bytes;
      }
    }
  }

  private remove(digest: string, entry: Entry<V>): void {
    this.entries.delete(digest);
    this.totalBytes -= entry.bytes;
  }
}
