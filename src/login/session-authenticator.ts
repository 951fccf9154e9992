import type { IncomingHttpHeaders } from 'node:http';
import { passesCsrfCheck } from './browser.js';
import { cookieReader, type CookieJar, type CookieReader } from './cookies.js';
import type { SessionRefresher } from './refresh.js';
import type { Session, SessionStore } from './sessions/types.js';

/**
 * Finds and checks a browser session: the signed cookie, the session (this instance's copy first, so a request
 * waits on the store only the first time an instance sees a session), a refresh when one is due, and for unsafe
 * methods the CSRF origin check. A request without the cookie is not this authenticator's (a bearer token may
 * still authenticate it).
 */
export type SessionAuthentication =
  | { readonly ok: true; readonly session: Session }
  /** No session cookie: not a session request. */
  | { readonly ok: false; readonly reason: 'no_cookie' }
  /** A cookie that is not ours, or whose session ended: sign in again (a navigation) or 401. */
  | { readonly ok: false; readonly reason: 'invalid_cookie' | 'no_session' | 'ended' }
  /** The access token expired and the provider cannot refresh it now: 503 (an error page for a navigation). */
  | { readonly ok: false; readonly reason: 'unavailable' }
  /** An unsafe method from another origin riding on the cookie: 403 csrf. */
  | { readonly ok: false; readonly reason: 'csrf' };

export interface SessionRequest {
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
  readonly headersDistinct: NodeJS.Dict<string[]>;
}

/** Verified cookie values remembered at most (about 150 bytes each). */
const VERIFIED_COOKIES = 10_000;

export class SessionAuthenticator {
  private readonly readCookie: CookieReader;
  /**
   * Cookie values whose signature held, with the session ID each carries: a browser sends the same value on every
   * request, so its HMAC is computed once rather than per request. Only verified values get in (anything else goes to
   * the HMAC), and the map belongs to this config's keys: a reload, a key rotation with it, starts afresh.
   */
  private readonly verified = new Map<string, string>();

  constructor(
    private readonly jar: CookieJar,
    private readonly store: SessionStore,
    private readonly refresher: SessionRefresher,
    /** The gateway's origin and the CORS origins (browser.ts `trustedOrigins`), built once per config. */
    private readonly trustedOrigins: ReadonlySet<string>,
  ) {
    this.readCookie = cookieReader(jar.sessionName);
  }

  /**
   * Synchronous for a session this instance holds and that is not due for refresh (nearly every request): only a
   * session it has not seen yet, or a refresh, waits.
   */
  authenticate(request: SessionRequest): SessionAuthentication | Promise<SessionAuthentication> {
    const found = this.readCookie(request.headersDistinct);
    if (found.ok && found.value === undefined) return NO_COOKIE;
    const id = found.ok ? this.sessionId(found.value as string) : undefined;
    if (id === undefined) return INVALID_COOKIE;
    const held = this.store.cached(id);
    if (held === undefined || this.refresher.isDue(held)) {
      // The store is down and this instance holds no copy (or a refresh needed its lock): like any store outage, 503.
      return this.check(id, request).catch(() => UNAVAILABLE);
    }
    return passesCsrfCheck(request.method, request.headers, this.trustedOrigins) ? this.admit(held) : CSRF;
  }

  private sessionId(cookie: string): string | undefined {
    const known = this.verified.get(cookie);
    if (known !== undefined) return known;
    const id = this.jar.verify(this.jar.sessionName, cookie);
    if (id === undefined) return undefined;
    if (this.verified.size >= VERIFIED_COOKIES) this.verified.delete(this.verified.keys().next().value as string);
    this.verified.set(cookie, id);
    return id;
  }

  private async check(id: string, request: SessionRequest): Promise<SessionAuthentication> {
    const session = this.store.cached(id) ?? (await this.store.get(id));
    if (session === undefined) return NO_SESSION;
    if (!passesCsrfCheck(request.method, request.headers, this.trustedOrigins)) return CSRF;
    const fresh = await this.refresher.fresh(session);
    if (!fresh.ok) return fresh.reason === 'ended' ? ENDED : UNAVAILABLE;
    return this.admit(fresh.session);
  }

  private admit(session: Session): SessionAuthentication {
    this.store.touch(session);
    return { ok: true, session };
  }
}

const NO_COOKIE: SessionAuthentication = Object.freeze({ ok: false, reason: 'no_cookie' });
const INVALID_COOKIE: SessionAuthentication = Object.freeze({ ok: false, reason: 'invalid_cookie' });
const NO_SESSION: SessionAuthentication = Object.freeze({ ok: false, reason: 'no_session' });
const ENDED: SessionAuthentication = Object.freeze({ ok: false, reason: 'ended' });
const UNAVAILABLE: SessionAuthentication = Object.freeze({ ok: false, reason: 'unavailable' });
const CSRF: SessionAuthentication = Object.freeze({ ok: false, reason: 'csrf' });
