import type { OutgoingHttpHeaders } from 'node:http';
import { rateLimitAddress } from '../http/client-ip.js';
import { BoundedCounters } from '../store/memory-limiter.js';
import { cookieReader, randomId, type CookieJar, type CookieReader } from './cookies.js';
import type { RelyingParty, SignInFailure } from './oidc.js';
import { chooserPage, continuePage, errorPage, type HtmlPage } from './pages.js';
import { safeReturnTo, type RedirectPolicy } from './return-to.js';
import { PRE_LOGIN_TTL_MS, type SessionStore, type SessionTimeouts } from './sessions/types.js';

/**
 * The gateway's own sign-in endpoints under the reserved prefix (`sign_in`, `callback`, `sign_out`,
 * `backchannel_logout`) and the redirect a login route sends a navigation without a session. Each takes the
 * request facts it needs and returns the whole answer, so the listener only writes it.
 */
export interface LoginAnswer {
  readonly status: number;
  readonly headers: OutgoingHttpHeaders;
  readonly body: string;
}

export interface BrowserSignInSettings {
  readonly providers: ReadonlyMap<string, RelyingParty>;
  readonly store: SessionStore;
  readonly jar: CookieJar;
  readonly redirects: RedirectPolicy;
  /** e.g. `/.authgate`. */
  readonly reservedPrefix: string;
  readonly timeouts: SessionTimeouts;
  readonly now: () => number;
  /** Told of every callback's outcome (`success`, or the failure reason), for the logins metric. */
  readonly onCallback?: (provider: string, result: string) => void;
}

const NO_STORE = 'no-store';

/**
 * Sign-ins one client address may start a minute. Each keeps a record in the store for ten minutes and anyone may
 * start one: generous for an office behind one address, a bound on what one address can make the store hold.
 */
const FLOW_STARTS_PER_MINUTE = 600;
/** Addresses counted at once; past this the oldest count is dropped (store/memory-limiter.ts). */
const FLOW_START_ADDRESSES = 10_000;
/**
 * Sign-ins one process starts a minute, whatever the addresses, with records kept the full ten minutes. Past this
 * (a flood from many addresses) new records are kept one minute: what a flood adds to a shared store is then
 * what a minute of it brings, and nobody is refused (a person who takes longer at the provider starts again).
 */
const FLOW_STARTS_PER_PROCESS_MINUTE = 2_000;
const FLOODED_PRE_LOGIN_TTL_MS = 60_000;

const TOO_MANY_SIGN_INS: LoginAnswer = page(
  errorPage({ status: 429, title: 'Too many sign-ins', message: 'Too many sign-ins were started from your network. Please try again in a minute.' }),
  [],
  { 'retry-after': '60' },
);

export class BrowserSignIn {
  private readonly readSession: CookieReader;
  private readonly flowStarts = new BoundedCounters(FLOW_START_ADDRESSES);
  /** Apart from the addresses' counters, so that many addresses cannot evict it. */
  private readonly processFlowStarts = new BoundedCounters(1);

  constructor(private readonly s: BrowserSignInSettings) {
    this.readSession = cookieReader(s.jar.sessionName);
  }

  /** A navigation on a login route without a session: straight to the one provider, or to the chooser. */
  async redirectToSignIn(providers: readonly string[], target: string, clientIp: string): Promise<LoginAnswer> {
    // The page asked for, checked like any `rd`: at most 2 KiB (a record anyone can make the store hold), this origin.
    const returnTo = safeReturnTo(target, this.s.redirects);
    const [only] = providers;
    if (providers.length === 1 && only !== undefined) return this.startFlow(only, returnTo, clientIp);
    return redirect(chooserLocation(this.s.reservedPrefix, providers, returnTo), []);
  }

  /** `GET {prefix}/sign_in?provider=…&rd=…` starts that provider's flow; without a known provider, the chooser. */
  async signIn(query: string, clientIp: string): Promise<LoginAnswer> {
    const params = new URLSearchParams(query);
    const returnTo = safeReturnTo(params.get('rd') ?? undefined, this.s.redirects);
    const provider = params.get('provider');
    if (provider !== null && this.s.providers.has(provider)) return this.startFlow(provider, returnTo, clientIp);
    const listed = params.get('providers')?.split(',').filter((name) => this.s.providers.has(name)) ?? [];
    const names = listed.length > 0 ? listed : [...this.s.providers.keys()];
    return page(chooserPage(names.map((name) => ({
      name, href: `${this.s.reservedPrefix}/sign_in?${new URLSearchParams({ provider: name, rd: returnTo })}`,
    }))));
  }

  /** `GET {prefix}/callback`: the flow its cookie names, completed into a new session (never a pre-existing ID). */
  async callback(query: string, headersDistinct: NodeJS.Dict<string[]>): Promise<LoginAnswer> {
    const flowCookie = this.s.jar.flowCookieName(new URLSearchParams(query).get('state') ?? '');
    const clearFlow = this.s.jar.clear(flowCookie);
    const flow = this.verified(cookieReader(flowCookie), flowCookie, headersDistinct);
    const preLogin = flow === undefined ? undefined : await this.s.store.takePreLogin(flow);
    const rp = preLogin === undefined ? undefined : this.s.providers.get(preLogin.provider);
    if (preLogin === undefined || rp === undefined) {
      this.s.onCallback?.(preLogin?.provider ?? '-', 'no_flow');
      return signInFailed('no_flow', clearFlow);
    }
    const result = await rp.complete(query, preLogin);
    this.s.onCallback?.(rp.name, result.ok ? 'success' : result.reason);
    if (!result.ok) return signInFailed(result.reason, clearFlow);
    const now = this.s.now();
    const id = randomId();
    await this.s.store.create({
      id, provider: rp.name, subject: result.subject, idpSid: result.idpSid, claims: result.claims, tokens: result.tokens,
      createdAt: now, lastSeenAt: now,
    });
    // Signing in again replaces the session the browser had (if any) rather than leaving it alive.
    const previous = this.sessionId(headersDistinct);
    if (previous !== undefined) await this.s.store.end(previous);
    const cookies = [this.s.jar.issue(this.s.jar.sessionName, id, this.s.timeouts.absoluteMs / 1000), clearFlow];
    return this.s.jar.strict ? page(continuePage(preLogin.returnTo), cookies) : redirect(preLogin.returnTo, cookies);
  }

  /**
   * `GET|POST {prefix}/sign_out[?rd=URL]`: ends the session, clears the cookie, and sends the browser to the
   * provider's end-session endpoint when it has one (coming back to `rd`), else to `rd`.
   */
  async signOut(query: string, headersDistinct: NodeJS.Dict<string[]>): Promise<LoginAnswer> {
    const returnTo = safeReturnTo(new URLSearchParams(query).get('rd') ?? undefined, this.s.redirects);
    const id = this.sessionId(headersDistinct);
    const session = id === undefined ? undefined : await this.s.store.get(id);
    if (id !== undefined) await this.s.store.end(id);
    const clear = this.s.jar.clear(this.s.jar.sessionName);
    const rp = session === undefined ? undefined : this.s.providers.get(session.provider);
    const absolute = new URL(returnTo, this.s.redirects.origin).href;
    const atProvider = session === undefined ? undefined : rp?.endSessionUrl(session.tokens.idToken, absolute);
    return redirect(atProvider ?? returnTo, [clear]);
  }

  /** `POST {prefix}/backchannel_logout` (form body `logout_token=…`): 200 once the sessions it names ended, else 400. */
  async backchannelLogout(body: string): Promise<LoginAnswer> {
    const token = new URLSearchParams(body).getAll('logout_token');
    if (token.length !== 1) return BAD_LOGOUT;
    for (const [name, rp] of this.s.providers) {
      const check = await rp.verifyLogoutToken(token[0] as string, (jti, ms) => this.s.store.firstUseOfJti(name, jti, ms));
      if (!check.ok) continue;
      if (check.idpSid !== undefined) await this.s.store.endByIdpSession(name, check.idpSid);
      else await this.s.store.endBySubject(name, check.subject as string);
      return { status: 200, headers: { 'cache-control': NO_STORE }, body: '' };
    }
    return BAD_LOGOUT;
  }

  /** The session ID a request's cookie carries, when its signature holds. */
  sessionId(headersDistinct: NodeJS.Dict<string[]>): string | undefined {
    return this.verified(this.readSession, this.s.jar.sessionName, headersDistinct);
  }

  private async startFlow(provider: string, returnTo: string, clientIp: string): Promise<LoginAnswer> {
    if (this.flowStarts.incrby(rateLimitAddress(clientIp), 1, 60).consumedPoints > FLOW_STARTS_PER_MINUTE) return TOO_MANY_SIGN_INS;
    const flooded = this.processFlowStarts.incrby('all', 1, 60).consumedPoints > FLOW_STARTS_PER_PROCESS_MINUTE;
    const ttlMs = flooded ? FLOODED_PRE_LOGIN_TTL_MS : PRE_LOGIN_TTL_MS;
    const rp = this.s.providers.get(provider) as RelyingParty;
    const { url, preLogin } = await rp.begin(returnTo);
    const flow = randomId();
    await this.s.store.savePreLogin(flow, preLogin, ttlMs);
    return redirect(url.href, [this.s.jar.issue(this.s.jar.flowCookieName(preLogin.state), flow, ttlMs / 1000)]);
  }

  private verified(read: CookieReader, name: string, headersDistinct: NodeJS.Dict<string[]>): string | undefined {
    const found = read(headersDistinct);
    return found.ok && found.value !== undefined ? this.s.jar.verify(name, found.value) : undefined;
  }
}

/** Where a navigation goes when its route names several providers: the chooser, which comes back to `returnTo`. */
export function chooserLocation(reservedPrefix: string, providers: readonly string[], returnTo: string): string {
  return `${reservedPrefix}/sign_in?${new URLSearchParams({ rd: returnTo, providers: providers.join(',') })}`;
}

function redirect(location: string, cookies: readonly string[]): LoginAnswer {
  const headers: OutgoingHttpHeaders = { location, 'cache-control': NO_STORE };
  if (cookies.length > 0) headers['set-cookie'] = [...cookies];
  return { status: 302, headers, body: '' };
}

function page(html: HtmlPage, cookies: readonly string[] = [], extra: OutgoingHttpHeaders = {}): LoginAnswer {
  const headers = cookies.length > 0 ? { ...html.headers, ...extra, 'set-cookie': [...cookies] } : { ...html.headers, ...extra };
  return { status: html.status, headers, body: html.body };
}

/** The provider unreachable is worth a retry (503); anything else means starting over (400). */
function signInFailed(reason: SignInFailure, clearFlow: string): LoginAnswer {
  const unavailable = reason === 'unavailable';
  return page(errorPage({
    status: unavailable ? 503 : 400,
    title: 'Sign-in failed',
    message: unavailable ? 'The sign-in service is not reachable right now. Please try again shortly.' : 'The sign-in could not be completed. Please start again.',
  }), [clearFlow]);
}

const BAD_LOGOUT: LoginAnswer = Object.freeze({
  status: 400,
  headers: { 'content-type': 'application/json', 'cache-control': NO_STORE, 'x-content-type-options': 'nosniff' },
  body: JSON.stringify({ error: 'invalid_request', error_description: 'The logout token is invalid' }),
});
