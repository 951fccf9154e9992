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
  /**
   * Copies dropped by `forgetAll`, kept aside: the store is read again for each, but when that read fails (the
   * store is failing over, which is when subscriptions are remade) the copy still stands for its session.
   */
  private readonly unconfirmed = new Map<string, Session>();
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
    this.unconfirmed.delete(session.id);
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
    this.unconfirmed.delete(id);
  }

  /**
   * Announcements may have gone unheard (no subscription was up): every session is read again at its next request,
   * its copy kept aside for a read that fails (`unconfirmedCopy`).
   */
  forgetAll(): void {
    this.invalidations++;
    for (const [id, session] of this.entries) {
      this.unconfirmed.delete(id);
      this.unconfirmed.set(id, session);
    }
    this.entries.clear();
    for (const id of this.unconfirmed.keys()) {
      if (this.unconfirmed.size <= this.capacity) break;
      this.unconfirmed.delete(id);
    }
  }

  /** The store said the session is gone: its copy set aside must not stand for it later. */
  gone(id: string): void {
    this.unconfirmed.delete(id);
  }

  /** The copy `forgetAll` set aside for this session, while it is live and nothing since said it changed or ended. */
  unconfirmedCopy(id: string): Session | undefined {
    const session = this.unconfirmed.get(id);
    return session !== undefined && isLive(session, this.timeouts, this.now()) ? session : undefined;
  }

  /** The session ended, here or elsewhere. */
  ended(id: string): void {
    this.invalidate(id);
    this.ends.notify(id);
  }
}
