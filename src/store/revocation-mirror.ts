import type { RevocationEntry, RevocationListener, RevocationSubject } from './types.js';

/**
 * A jti entry is kept this long (seconds) past the token's `exp`: verifiers accept a token until
 * `exp + clock_skew`, skews are set per issuer, and this is well above any sane one.
 */
export const JTI_RETENTION_GRACE_S = 300;

/**
 * A subject cut-off is kept this long past `max(before, now)`. The store cannot know the longest
 * lifetime of the tokens it cuts off, so it assumes none outlives 30 days.
 */
export const SUBJECT_RETENTION_S = 30 * 24 * 3600;

export function jtiEntry(jti: string, exp: number, issuer: string | undefined): RevocationEntry {
  return { kind: 'jti', issuer: issuer ?? null, jti, expiresAt: exp + JTI_RETENTION_GRACE_S };
}

export function subjectEntry(subject: string, before: number, issuer: string | undefined, nowS: number): RevocationEntry {
  return {
    kind: 'subject',
    issuer: issuer ?? null,
    subject,
    before,
    expiresAt: Math.max(before, nowS) + SUBJECT_RETENTION_S,
  };
}

/** Parses an entry received from Redis or pub/sub; undefined when it is not a well-formed entry. */
export function parseRevocationEntry(text: string): RevocationEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const entry = value as Record<string, unknown>;
  const issuer = entry['issuer'];
  const expiresAt = entry['expiresAt'];
  if (!(issuer === null || (typeof issuer === 'string' && issuer !== ''))) return undefined;
  if (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt)) return undefined;
  if (entry['kind'] === 'jti' && typeof entry['jti'] === 'string' && entry['jti'] !== '') {
    return { kind: 'jti', issuer, jti: entry['jti'], expiresAt };
  }
  const before = entry['before'];
  if (
    entry['kind'] === 'subject' &&
    typeof entry['subject'] === 'string' &&
    entry['subject'] !== '' &&
    typeof before === 'number' &&
    Number.isFinite(before)
  ) {
    return { kind: 'subject', issuer, subject: entry['subject'], before, expiresAt };
  }
  return undefined;
}

interface SubjectCutoff {
  before: number;
  expiresAt: number;
}

/**
 * The local copy of every revocation, answering the hot path synchronously. Lookups go through
 * nested maps (issuer → id) so a check allocates nothing. Entries only ever get added or expire,
 * which makes applying the same entry twice, or in any order, harmless.
 */
export class RevocationMirror {
  private readonly jtiAnyIssuer = new Map<string, number>();
  private readonly jtiByIssuer = new Map<string, Map<string, number>>();
  private readonly subjectAnyIssuer = new Map<string, SubjectCutoff>();
  private readonly subjectByIssuer = new Map<string, Map<string, SubjectCutoff>>();

  /** `nowS` returns epoch seconds. */
  constructor(private readonly nowS: () => number) {}

  private readonly listeners = new Set<RevocationListener>();

  apply(entry: RevocationEntry): void {
    if (entry.kind === 'jti') {
      const map = entry.issuer === null ? this.jtiAnyIssuer : innerMap(this.jtiByIssuer, entry.issuer);
      map.set(entry.jti, Math.max(map.get(entry.jti) ?? 0, entry.expiresAt));
    } else {
      const map = entry.issuer === null ? this.subjectAnyIssuer : innerMap(this.subjectByIssuer, entry.issuer);
      const known = map.get(entry.subject);
      map.set(entry.subject, {
        before: Math.max(known?.before ?? -Infinity, entry.before),
        expiresAt: Math.max(known?.expiresAt ?? 0, entry.expiresAt),
      });
    }
    for (const listener of this.listeners) listener(entry);
  }

  /**
   * Calls `listener` after every entry applied, from this instance or another (a resync re-applies known ones);
   * returns the function that stops it.
   */
  onApply(listener: RevocationListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  isRevoked(token: RevocationSubject): boolean {
    const now = this.nowS();
    if (token.jti !== undefined && this.jtiHeld(token.jti, token.issuer, now)) return true;
    if (token.subject === undefined) return false;
    const cutoff = Math.max(
      liveBefore(this.subjectAnyIssuer.get(token.subject), now),
      liveBefore(this.subjectByIssuer.get(token.issuer)?.get(token.subject), now),
    );
    if (cutoff === -Infinity) return false;
    // Without `iat` there is no telling whether the token predates the cut-off: fail closed.
    return token.iat === undefined || token.iat <= cutoff;
  }

  /** `issuer` undefined: revoked for any issuer at all (an admin question, not the hot path). */
  isJtiRevoked(jti: string, issuer: string | undefined): boolean {
    const now = this.nowS();
    if (issuer !== undefined) return this.jtiHeld(jti, issuer, now);
    if (isLive(this.jtiAnyIssuer.get(jti), now)) return true;
    for (const byJti of this.jtiByIssuer.values()) if (isLive(byJti.get(jti), now)) return true;
    return false;
  }

  /** Drops expired entries so memory stays proportional to what is still in force. */
  prune(): void {
    const now = this.nowS();
    pruneMap(this.jtiAnyIssuer, (expiresAt) => expiresAt <= now);
    pruneMap(this.subjectAnyIssuer, (cutoff) => cutoff.expiresAt <= now);
    for (const [issuer, map] of this.jtiByIssuer) {
      pruneMap(map, (expiresAt) => expiresAt <= now);
      if (map.size === 0) this.jtiByIssuer.delete(issuer);
    }
    for (const [issuer, map] of this.subjectByIssuer) {
      pruneMap(map, (cutoff) => cutoff.expiresAt <= now);
      if (map.size === 0) this.subjectByIssuer.delete(issuer);
    }
  }

  /**
   * Every entry still in force, as it would be written to Redis. A jti or subject revoked more than once
   * comes back as one merged entry, which holds at least as long and as far back as each of them.
   */
  liveEntries(): RevocationEntry[] {
    const now = this.nowS();
    const entries: RevocationEntry[] = [];
    const addJtis = (issuer: string | null, map: Map<string, number>): void => {
      for (const [jti, expiresAt] of map) if (expiresAt > now) entries.push({ kind: 'jti', issuer, jti, expiresAt });
    };
    const addSubjects = (issuer: string | null, map: Map<string, SubjectCutoff>): void => {
      for (const [subject, { before, expiresAt }] of map) {
        if (expiresAt > now) entries.push({ kind: 'subject', issuer, subject, before, expiresAt });
      }
    };
    addJtis(null, this.jtiAnyIssuer);
    for (const [issuer, map] of this.jtiByIssuer) addJtis(issuer, map);
    addSubjects(null, this.subjectAnyIssuer);
    for (const [issuer, map] of this.subjectByIssuer) addSubjects(issuer, map);
    return entries;
  }

  private jtiHeld(jti: string, issuer: string, now: number): boolean {
    return isLive(this.jtiAnyIssuer.get(jti), now) || isLive(this.jtiByIssuer.get(issuer)?.get(jti), now);
  }
}

function innerMap<V>(outer: Map<string, Map<string, V>>, key: string): Map<string, V> {
  let inner = outer.get(key);
  if (inner === undefined) {
    inner = new Map();
    outer.set(key, inner);
  }
  return inner;
}

function isLive(expiresAt: number | undefined, now: number): boolean {
  return expiresAt !== undefined && expiresAt > now;
}

function liveBefore(cutoff: SubjectCutoff | undefined, now: number): number {
  return cutoff !== undefined && cutoff.expiresAt > now ? cutoff.before : -Infinity;
}

function pruneMap<V>(map: Map<string, V>, expired: (value: V) => boolean): void {
  for (const [key, value] of map) if (expired(value)) map.delete(key);
}
