import type { RelyingParty } from './oidc.js';
import type { Session, SessionStore } from './sessions/types.js';

/**
 * Keeps a session's access token fresh: once it is within `refresh_before` of expiry, the next request refreshes
 * it, once per session across instances (the store's lock). Requests that meanwhile find the lock taken go on with
 * the still-valid token. A refused refresh (`invalid_grant`) ends the session; an unreachable provider leaves it
 * running until the access token expires. Any other failed refresh (an answer that does not verify) ends it too.
 */
export type FreshSession =
  | { readonly ok: true; readonly session: Session }
  /** The provider ended the grant, or the session ended meanwhile: sign in again. */
  | { readonly ok: false; readonly reason: 'ended' }
  /** The token expired and no fresh one can be had now (the provider is down, or another refresh is under way). */
  | { readonly ok: false; readonly reason: 'unavailable' };

export interface RefreshSettings {
  readonly refreshBeforeMs: number;
  /** How long one refresh may hold the lock (the provider's timeout, with margin). */
  readonly lockMs: number;
  readonly now: () => number;
  /** Told of every refresh attempted (`success`, `ended`, `unavailable`), for the refresh metric. */
  readonly onRefresh?: (provider: string, result: 'success' | 'ended' | 'unavailable') => void;
}

export class SessionRefresher {
  constructor(
    private readonly store: SessionStore,
    private readonly providers: ReadonlyMap<string, RelyingParty>,
    private readonly settings: RefreshSettings,
  ) {}

  isDue(session: Session): boolean {
    return session.tokens.accessTokenExpiresAt - this.settings.now() <= this.settings.refreshBeforeMs;
  }

  /** The session with tokens good for this request; no I/O unless a refresh is due. */
  async fresh(session: Session): Promise<FreshSession> {
    if (!this.isDue(session)) return { ok: true, session };
    const lock = await this.store.lockRefresh(session.id, this.settings.lockMs);
    if (lock === undefined) return this.stillValid(session);
    try {
      const current = lock.current;
      if (current === undefined) return ENDED;
      if (!this.isDue(current)) return { ok: true, session: current };
      const rp = this.providers.get(current.provider);
      const refreshed = rp === undefined ? undefined : await rp.refresh(current);
      if (refreshed === undefined || (!refreshed.ok && refreshed.reason !== 'unavailable')) {
        this.settings.onRefresh?.(current.provider, 'ended');
        await this.store.end(current.id);
        return ENDED;
      }
      this.settings.onRefresh?.(current.provider, refreshed.ok ? 'success' : 'unavailable');
      if (!refreshed.ok) return this.stillValid(current);
      if (!(await lock.commit(refreshed.tokens, refreshed.claims))) return this.stillValid(current);
      return { ok: true, session: { ...current, tokens: refreshed.tokens, claims: refreshed.claims } };
    } finally {
      await lock.release();
    }
  }

  private stillValid(session: Session): FreshSession {
    return session.tokens.accessTokenExpiresAt > this.settings.now() ? { ok: true, session } : UNAVAILABLE;
  }
}

const ENDED: FreshSession = Object.freeze({ ok: false, reason: 'ended' });
const UNAVAILABLE: FreshSession = Object.freeze({ ok: false, reason: 'unavailable' });
