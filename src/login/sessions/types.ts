/**
 * Server-side state of browser sign-in: pre-login records (one per sign-in flow) and sessions. The browser holds
 * only random IDs naming them (see cookies.ts).
 */

/** What the callback needs to finish one flow; kept 10 minutes and taken at most once. */
export interface PreLogin {
  readonly provider: string;
  readonly state: string;
  readonly nonce: string;
  readonly codeVerifier: string;
  /** Already checked (return-to.ts). */
  readonly returnTo: string;
}

export interface SessionTokens {
  readonly idToken: string;
  readonly accessToken: string;
  /** Epoch ms. */
  readonly accessTokenExpiresAt: number;
  readonly refreshToken: string | undefined;
}

export interface Session {
  readonly id: string;
  readonly provider: string;
  readonly subject: string;
  /** The provider's session ID (`sid`), which back-channel logout may name. */
  readonly idpSid: string | undefined;
  /** The verified claims the identity is built from (`identity_from`). */
  readonly claims: Readonly<Record<string, unknown>>;
  readonly tokens: SessionTokens;
  /** Epoch ms: sign-in, for the absolute timeout. */
  readonly createdAt: number;
  /** Epoch ms: last request, for the idle timeout (written to the store at most every `touchIntervalMs`). */
  readonly lastSeenAt: number;
}

export interface SessionTimeouts {
  readonly idleMs: number;
  readonly absoluteMs: number;
}

/** A held refresh lock: the session as stored once locked, and the one way to write its new tokens. */
export interface RefreshLock {
  /** Re-read after locking: another instance may have refreshed already; undefined when the session ended. */
  readonly current: Session | undefined;
  /** Stores the rotated tokens in one atomic write, only while the lock is still held; false when it was lost. */
  commit(tokens: SessionTokens, claims: Readonly<Record<string, unknown>>): Promise<boolean>;
  release(): Promise<void>;
}

export type SessionEndListener = (id: string) => void;

export interface SessionStore {
  /** Kept for `ttlMs` (PRE_LOGIN_TTL_MS, or less while sign-ins flood in). */
  savePreLogin(flowId: string, record: PreLogin, ttlMs: number): Promise<void>;
  /** The record, removed in the same step (GETDEL): a second callback with the same flow finds nothing. */
  takePreLogin(flowId: string): Promise<PreLogin | undefined>;
  create(session: Session): Promise<void>;
  /** The live session from this instance's copy, without I/O; undefined when not held here (or no longer live). */
  cached(id: string): Session | undefined;
  /** The live session: the local copy, else one store read that fills the copy. */
  get(id: string): Promise<Session | undefined>;
  /** Notes a request on the session (idle timeout); reaches the store at most once per touch interval. */
  touch(session: Session): void;
  end(id: string): Promise<void>;
  /** Ends every session of this provider's subject; resolves with how many ended. */
  endBySubject(provider: string, subject: string): Promise<number>;
  /** Ends every session of this provider's session ID; resolves with how many ended. */
  endByIdpSession(provider: string, idpSid: string): Promise<number>;
  /** One refresher per session across instances; undefined while another holds the lock. */
  lockRefresh(id: string, ttlMs: number): Promise<RefreshLock | undefined>;
  /** True the first time a logout token's jti is presented (remembered for `ttlMs`), false on every replay. */
  firstUseOfJti(issuer: string, jti: string, ttlMs: number): Promise<boolean>;
  /** How many sessions are live in the store right now: every instance's, when the store is shared. */
  countLive(): Promise<number>;
  /** Hears of every session that ends, on any instance (closing WebSockets, dropping local copies). */
  onEnd(listener: SessionEndListener): () => void;
  close(): Promise<void>;
}

export const PRE_LOGIN_TTL_MS = 10 * 60_000;
/**
 * Sign-ins under way one memory store holds at most (some 30 a second for the whole TTL): anyone may start one, so
 * past this the oldest is dropped (its browser meets a stale flow and signs in again) rather than memory growing.
 */
export const MAX_PRE_LOGINS = 20_000;

/** `lastSeenAt` moves at most this often (and at least 10 times per idle timeout). */
const MAX_TOUCH_INTERVAL_MS = 60_000;

/**
 * How often a session's use is written down. Between two writes the session stays the same object, so every request
 * reuses what was built from it (its identity, its headers); the idle timeout may end up to one interval early.
 */
export function touchIntervalMs(timeouts: SessionTimeouts): number {
  return Math.min(MAX_TOUCH_INTERVAL_MS, timeouts.idleMs / 10);
}

export function isLive(session: Session, timeouts: SessionTimeouts, nowMs: number): boolean {
  return nowMs < session.createdAt + timeouts.absoluteMs && nowMs < session.lastSeenAt + timeouts.idleMs;
}

/** How long the store should keep a session from `nowMs`: until whichever timeout comes first. */
export function remainingMs(session: Session, timeouts: SessionTimeouts, nowMs: number): number {
  return Math.min(session.createdAt + timeouts.absoluteMs, session.lastSeenAt + timeouts.idleMs) - nowMs;
}
