import { PRUNE_INTERVAL_MS } from '../../store/memory.js';
import { SessionEnds } from './local-copies.js';
import {
  MAX_PRE_LOGINS, isLive, touchIntervalMs, type PreLogin, type RefreshLock, type Session, type SessionEndListener,
  type SessionStore, type SessionTimeouts, type SessionTokens,
} from './types.js';

interface Expiring<T> {
  readonly value: T;
  readonly expiresAt: number;
}

/** One instance, no Redis: the sessions live in this process (and end with it). */
export class MemorySessionStore implements SessionStore {
  private readonly preLogins = new Map<string, Expiring<PreLogin>>();
  private readonly sessions = new Map<string, Session>();
  private readonly locks = new Map<string, number>();
  private readonly jtis = new Map<string, number>();
  private readonly ends = new SessionEnds();
  private lastPruneAt = 0;
  private readonly touchIntervalMs: number;

  constructor(
    private readonly timeouts: SessionTimeouts,
    private readonly now: () => number = Date.now,
    private readonly maxPreLogins: number = MAX_PRE_LOGINS,
  ) {
    this.touchIntervalMs = touchIntervalMs(timeouts);
  }

  async savePreLogin(flowId: string, record: PreLogin, ttlMs: number): Promise<void> {
    this.prune();
    // A Map iterates in insertion order: its first key is the oldest flow.
    if (this.preLogins.size >= this.maxPreLogins) this.preLogins.delete(this.preLogins.keys().next().value as string);
    this.preLogins.set(flowId, { value: record, expiresAt: this.now() + ttlMs });
  }

  async takePreLogin(flowId: string): Promise<PreLogin | undefined> {
    const entry = this.preLogins.get(flowId);
    this.preLogins.delete(flowId);
    return entry !== undefined && this.now() < entry.expiresAt ? entry.value : undefined;
  }

  async create(session: Session): Promise<void> {
    this.sessions.set(session.id, session);
  }

  cached(id: string): Session | undefined {
    const session = this.sessions.get(id);
    if (session === undefined || isLive(session, this.timeouts, this.now())) return session;
    this.sessions.delete(id);
    return undefined;
  }

  async get(id: string): Promise<Session | undefined> {
    return this.cached(id);
  }

  touch(session: Session): void {
    const now = this.now();
    if (now - session.lastSeenAt < this.touchIntervalMs || !this.sessions.has(session.id)) return;
    this.sessions.set(session.id, { ...session, lastSeenAt: now });
  }

  async end(id: string): Promise<void> {
    if (this.sessions.delete(id)) this.ends.notify(id);
  }

  async endBySubject(provider: string, subject: string): Promise<number> {
    return this.endWhere((s) => s.provider === provider && s.subject === subject);
  }

  async endByIdpSession(provider: string, idpSid: string): Promise<number> {
    return this.endWhere((s) => s.provider === provider && s.idpSid === idpSid);
  }

  async lockRefresh(id: string, ttlMs: number): Promise<RefreshLock | undefined> {
    const heldUntil = this.locks.get(id);
    if (heldUntil !== undefined && this.now() < heldUntil) return undefined;
    const until = this.now() + ttlMs;
    this.locks.set(id, until);
    const stillHeld = (): boolean => this.locks.get(id) === until && this.now() < until;
    return {
      current: this.cached(id),
      commit: async (tokens: SessionTokens, claims: Readonly<Record<string, unknown>>) => {
        const session = this.sessions.get(id);
        if (!stillHeld() || session === undefined) return false;
        this.sessions.set(id, { ...session, tokens, claims });
        return true;
      },
      release: async () => {
        if (this.locks.get(id) === until) this.locks.delete(id);
      },
    };
  }

  async firstUseOfJti(issuer: string, jti: string, ttlMs: number): Promise<boolean> {
    this.prune();
    const key = `${issuer}\n${jti}`;
    const until = this.jtis.get(key);
    if (until !== undefined && this.now() < until) return false;
    this.jtis.set(key, this.now() + ttlMs);
    return true;
  }

  async countLive(): Promise<number> {
    let live = 0;
    for (const id of this.sessions.keys()) if (this.cached(id) !== undefined) live++;
    return live;
  }

  onEnd(listener: SessionEndListener): () => void {
    return this.ends.onEnd(listener);
  }

  async close(): Promise<void> {}

  /** Abandoned flows, old jtis and timed-out sessions would otherwise stay for good; swept at most once a minute. */
  private prune(): void {
    const now = this.now();
    if (now - this.lastPruneAt < PRUNE_INTERVAL_MS) return;
    this.lastPruneAt = now;
    for (const [id, entry] of this.preLogins) if (now >= entry.expiresAt) this.preLogins.delete(id);
    for (const [key, until] of this.jtis) if (now >= until) this.jtis.delete(key);
    for (const id of this.sessions.keys()) this.cached(id);
  }

  private endWhere(matches: (session: Session) => boolean): number {
    let ended = 0;
    for (const session of [...this.sessions.values()]) {
      if (!matches(session)) continue;
      this.sessions.delete(session.id);
      this.ends.notify(session.id);
      ended++;
    }
    return ended;
  }
}
