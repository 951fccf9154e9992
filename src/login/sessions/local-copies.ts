import { isLive, type Session, type SessionEndListener, type SessionTimeouts } from './types.js';

/** Who hears that a session ended (closing its WebSockets, say); the same for every store kind. */
export class SessionEnds {
  private readonly listeners = new Set<SessionEndListener>();

  notify(id: string): void {
    for (const listener of this.listeners) listener(id);
  }

  onEnd(listener: SessionEndListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/**
 * This instance's bounded copy of sessions in use, so a request never waits on the store for its session. Least
 * recently used entries go first. `epoch` changes on every invalidation, so a store read that started before an
 * invalidation arrived does not put back the copy that was just dropped.
 */
export class LocalCopies {
  private readonly entries = new Map<string, Session>();
  readonly ends = new SessionEnds();
  private invalidations = 0;

  constructor(
    private readonly capacity: number,
    private readonly timeouts: SessionTimeouts,
    private readonly now: () => number,
  ) {}

  get epoch(): number {
    return this.invalidations;
  }

  get(id: string): Session | undefined {
    const session = this.entries.get(id);
    if (session === undefined) return undefined;
    if (!isLive(session, this.timeouts, this.now())) {
      this.entries.delete(id);
      return undefined;
    }
    // Re-inserted: Map order is the LRU order.
    this.entries.delete(id);
    this.entries.set(id, session);
    return session;
  }

  /** Keeps `session` unless an invalidation happened since `epoch` (when the read that produced it began). */
  put(session: Session, epoch = this.invalidations): void {
    if (epoch !== this.invalidations) return;
    this.entries.delete(session.id);
    this.entries.set(session.id, session);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as string);
  }

  /**
   * Puts `next` (a new last use) in place of `previous`, only while `previous` is still the copy held: one dropped
   * (the session ended) stays out, and one replaced meanwhile (refreshed tokens read again) is not set back.
   */
  replace(previous: Session, next: Session): void {
    if (this.entries.get(previous.id) === previous) this.entries.set(previous.id, next);
  }

  /** Another instance changed the session (new tokens): the next request reads it again. */
  invalidate(id: string): void {
    this.invalidations++;
    this.entries.delete(id);
  }

  /** Announcements may have gone unheard (no subscription was up): every session is read again at its next request. */
  forgetAll(): void {
    this.invalidations++;
    this.entries.clear();
  }

  /** The session ended, here or elsewhere. */
  ended(id: string): void {
    this.invalidate(id);
    this.ends.notify(id);
  }
}
