import type {
  Authentication,
  Authenticator,
  CompileContext,
  Compiled,
  CredentialFinder,
  ErrorRenderer,
  Finalizer,
  MechanismType,
  RequestContext,
  Step,
} from '../chain/kinds.js';
import { isThenable, PASS, refusal, type Refusal, type Verdict } from '../chain/verdict.js';
import { setTimeout as delay } from 'node:timers/promises';
import type { LoginConfig } from '../config/login.js';
import type { IssuerConfig, RouteConfig } from '../config/types.js';
import { Errors } from '../http/responses.js';
import type { Identity } from '../identity/identity.js';
import { buildIdentity } from '../mechanisms/authenticators/jwt/claims.js';
import { JwtMechanism } from '../mechanisms/authenticators/jwt/authenticator.js';
import type { IssuerKeySet } from '../mechanisms/authenticators/jwt/key-set.js';
import { connect } from '../store/connect.js';
import { isNavigation, passesCsrfCheck, trustedOrigins } from './browser.js';
import { CookieJar, cookieReader, randomId } from './cookies.js';
import { BrowserSignIn, chooserLocation, type LoginAnswer } from './endpoints.js';
import { renderForBrowser, SIGN_IN_UNAVAILABLE, type BrowserProblem } from './error-renderer.js';
import { RelyingParty } from './oidc.js';
import { SessionRefresher } from './refresh.js';
import { SessionAuthenticator, type SessionAuthentication } from './session-authenticator.js';
import { MemorySessionStore } from './sessions/memory.js';
import { RedisSessionStore } from './sessions/redis.js';
import type { Session, SessionStore, SessionTimeouts } from './sessions/types.js';
import { IssuerSignatures } from './signatures.js';

/** A refresh holds its lock this long at most: the provider's timeout with margin. */
const REFRESH_LOCK_MS = 15_000;
/** How long start-up waits for the session announcements' subscription. */
const SUBSCRIBE_WAIT_MS = 5000;
const NOT_MINE: Authentication = Object.freeze({ ok: false, refusal: undefined });

/**
 * Browser sign-in as one mechanism of the chain: the session cookie is a credential (scheme `session`) on login
 * routes, this authenticator turns a live session into an Identity, a navigation refused for want of credentials
 * is sent to sign in (and one refused by the rules gets a small page), and the reserved endpoints run the flow.
 */
export class LoginService implements Compiled<Authenticator> {
  readonly jar: CookieJar;
  readonly store: SessionStore;
  readonly signIn: BrowserSignIn;
  private readonly providers = new Map<string, RelyingParty>();
  private readonly sessions: SessionAuthenticator;
  /** The gateway's own origin and the CORS origins: where unsafe session requests and WebSockets may come from. */
  private readonly origins: ReadonlySet<string>;
  private readonly sessionStore: OpenedSessionStore;
  /** The next config's service took over the session store: closing this one leaves it open. */
  private handedOver = false;
  /** Session records are shared by every request until they change, so each is read into an Identity once. */
  private readonly identities = new WeakMap<Session, Identity>();
  /** With `identity.forward_token`: each session request's access token, for the upstream's Authorization. */
  private readonly accessTokens = new WeakMap<RequestContext, string>();
  /** The session each session identity came from, for closing its WebSockets when it ends. */
  private readonly sessionIds = new WeakMap<Identity, string>();

  constructor(
    private readonly config: LoginConfig,
    private readonly ctx: CompileContext,
    previous: LoginService | undefined,
    /** Each issuer's keys as the bearer-token path holds them: one JWKS fetch and cache per issuer. */
    private readonly issuerKeys: (issuer: string) => IssuerKeySet | undefined,
  ) {
    const { idleTimeoutMs, absoluteTimeoutMs, refreshBeforeMs } = config.session;
    const timeouts = { idleMs: idleTimeoutMs, absoluteMs: absoluteTimeoutMs };
    // Sessions outlive a reload: the people signed in stay signed in.
    if (previous !== undefined) previous.handedOver = true;
    this.sessionStore = previous?.sessionStore ?? openSessionStore(ctx, timeouts);
    this.store = this.sessionStore.store;
    ctx.metrics.countSessionsIn(this.store);
    // Without login.keys (one instance on the memory store) a key made by this process signs: sessions die with it anyway.
    const keys = config.keys.length > 0 ? config.keys : [this.sessionStore.processKey];
    this.jar = new CookieJar({ name: config.cookie.name, sameSite: config.cookie.sameSite, secure: config.cookie.secure, keys });
    this.signIn = new BrowserSignIn({
      providers: this.providers, store: this.store, jar: this.jar, timeouts, now: Date.now,
      redirects: { origin: config.externalUrl.origin, allowed: config.allowedRedirects },
      reservedPrefix: ctx.config.server.reservedPrefix,
      onCallback: (provider, result) => {
        ctx.metrics.logins.labels(provider, result).inc();
        if (result !== 'success') ctx.logger.warn({ provider, result }, 'browser sign-in failed');
      },
    });
    const refresher = new SessionRefresher(this.store, this.providers, {
      refreshBeforeMs, lockMs: REFRESH_LOCK_MS, now: Date.now,
      onRefresh: (provider, result) => ctx.metrics.sessionRefresh.labels(provider, result).inc(),
    });
    this.origins = trustedOrigins(config.externalUrl.origin, ctx.config.cors?.origins ?? []);
    this.sessions = new SessionAuthenticator(this.jar, this.store, refresher, this.origins);
  }

  /**
   * Reads each provider's discovery document, and waits for its issuer's keys (the very key set bearer tokens of
   * that issuer are checked with); a provider that cannot be reached is logged and left out.
   */
  async start(): Promise<void> {
    // Redis down at start-up does not hold the gateway back: sessions then work from Redis reads once it is up.
    await Promise.race([this.sessionStore.started, delay(SUBSCRIBE_WAIT_MS, undefined, { ref: false })]);
    const redirectUri = new URL(`${this.ctx.config.server.reservedPrefix}/callback`, this.config.externalUrl).href;
    await Promise.all([...this.config.providers.values()].map(async (provider) => {
      const issuer = this.ctx.config.issuers.get(provider.issuer) as IssuerConfig;
      try {
        // The config accepts only a discovery issuer for a provider, and every such issuer has a key set.
        const keys = this.issuerKeys(issuer.name);
        if (keys === undefined) throw new Error(`issuer ${issuer.name} has no keys of its own`);
        await keys.start();
        const signatures = new IssuerSignatures(keys, issuer.algorithms);
        this.providers.set(provider.name, await RelyingParty.discover({ provider, issuer, redirectUri, signatures }));
      } catch (err) {
        this.ctx.logger.error({ err, provider: provider.name }, 'sign-in provider discovery failed; its sign-ins answer 503');
      }
    }));
  }

  close(): void {
    if (this.handedOver) return;
    this.ctx.metrics.countSessionsIn(undefined);
    this.sessionStore.close();
  }

  forRoute(route: RouteConfig, errors: ErrorRenderer): Authenticator | undefined {
    return route.login === undefined ? undefined : this.authenticator(errors, this.acceptedProviders(route));
  }

  /**
   * The providers whose sessions a login route takes: those it names, and of them only those whose issuer its
   * `issuers` admits, as for a bearer token. A session is one cookie whichever provider made it.
   */
  private acceptedProviders(route: RouteConfig): ReadonlySet<string> {
    const admitted = (provider: string): boolean =>
      route.issuers === undefined || route.issuers.includes(this.config.providers.get(provider)?.issuer ?? '');
    return new Set((route.login ?? []).filter(admitted));
  }

  /** On login routes a request without a bearer credential may bring the session cookie instead (bearer wins). */
  sessionFinder(find: CredentialFinder): CredentialFinder {
    const read = cookieReader(this.jar.sessionName);
    const source = { kind: 'cookie', name: this.jar.sessionName } as const;
    return (headersDistinct, query, isUpgrade) => {
      const found = find(headersDistinct, query, isUpgrade);
      if (!found.ok || found.credential !== undefined) return found;
      const cookie = read(headersDistinct);
      if (!cookie.ok) return { ok: false, reason: 'multiple_session_cookies' };
      return cookie.value === undefined ? found : { ok: true, credential: { scheme: 'session', value: cookie.value, source } };
    };
  }

  /** A step of a login route whose refusals a browser navigation sees as a sign-in redirect or a small page. */
  forBrowsers(step: Step, providers: readonly string[]): Step {
    return {
      stage: step.stage,
      run: (ctx, trace) => {
        const verdict = step.run(ctx, trace);
        if (isThenable(verdict)) return verdict.then((settled) => this.refused(settled, ctx, providers));
        return verdict.ok ? verdict : this.refused(verdict, ctx, providers);
      },
    };
  }

  /** A revoked session ends (no refresh keeps it going); its browser gets a page with a link to sign in again. */
  private refused(verdict: Verdict, ctx: RequestContext, providers: readonly string[]): Verdict | Promise<Verdict> {
    if (verdict.ok) return verdict;
    const revokedSession = verdict.reason === 'revoked' && ctx.identity !== undefined ? this.sessionIds.get(ctx.identity) : undefined;
    if (revokedSession === undefined) return this.browserVerdict(verdict, ctx, providers, browserProblem(verdict));
    this.store.end(revokedSession).catch((err: unknown) => this.ctx.logger.warn({ err }, 'a revoked session could not be ended in the store'));
    return this.browserVerdict(verdict, ctx, providers, 'revoked');
  }

  /** With `identity.forward_token`, a session request reaches the upstream with the session's current access token. */
  readonly forwardAccessToken: Finalizer = {
    finalize: (ctx) => {
      const token = this.accessTokens.get(ctx);
      if (token !== undefined && ctx.upstreamHeaders !== undefined) ctx.upstreamHeaders.authorization = `Bearer ${token}`;
      return PASS;
    },
  };

  /**
   * Calls `end` once the session `identity` came from ends, on any instance (sign-out, back-channel logout, a
   * refused refresh); undefined when the identity is not a session's. Returns the function that stops watching.
   */
  watchSession(identity: Identity, end: () => void): (() => void) | undefined {
    const id = this.sessionIds.get(identity);
    return id === undefined ? undefined : this.sessionStore.watch(id, end);
  }

  /** The sign-in endpoints under the reserved prefix, by path suffix: the methods each takes, its checks, its answer. */
  endpoints(): ReadonlyMap<string, LoginEndpoint> {
    const page = (run: LoginEndpoint['run']) => this.unlessStoreFails(run, SIGN_IN_UNAVAILABLE);
    return new Map<string, LoginEndpoint>([
      ['/sign_in', { methods: ['GET', 'HEAD'], run: page((ctx) => this.signIn.signIn(ctx.query, ctx.clientIp)) }],
      ['/callback', { methods: ['GET'], run: page((ctx) => this.signIn.callback(ctx.query, ctx.headersDistinct)) }],
      ['/sign_out', { methods: ['GET', 'POST'], checks: [this.signOutFromHere], run: page((ctx) => this.signIn.signOut(ctx.query, ctx.headersDistinct)) }],
      ['/backchannel_logout', {
        methods: ['POST'],
        run: this.unlessStoreFails(async (ctx) => this.signIn.backchannelLogout((await ctx.readBody(LOGOUT_BODY_MAX_BYTES)) ?? ''), LOGOUT_UNAVAILABLE),
      }],
    ]);
  }

  /**
   * The session store down mid-flow (Redis unreachable): an answer that says to retry, never a 500. A provider
   * retries a back-channel logout it could not deliver; a person retries the page.
   */
  private unlessStoreFails(run: LoginEndpoint['run'], unavailable: LoginAnswer): LoginEndpoint['run'] {
    return (ctx) => run(ctx).catch((err: unknown) => this.storeFailed(err, ctx.path, unavailable));
  }

  private storeFailed(err: unknown, path: string, unavailable: LoginAnswer): LoginAnswer {
    this.ctx.logger.error({ err, path }, 'sign-in failed (the session store unreachable?); answered 503');
    return unavailable;
  }

  /**
   * Another site's hidden form could post a sign-out with the user's cookie: a POST must come from the gateway's
   * own (or a CORS) origin, like every unsafe session request. GET stays open to any link, as sign-out links are
   * everywhere (and a top-level GET carries a Lax cookie anyway); ending a session is a nuisance, never a takeover.
   */
  private readonly signOutFromHere: Step = {
    stage: 'endpoint',
    run: (ctx) => (passesCsrfCheck(ctx.method, ctx.headers, this.origins) ? PASS : CROSS_SITE_SIGN_OUT),
  };

  private authenticator(errors: ErrorRenderer, providers: ReadonlySet<string>): Authenticator {
    const noSession = { ok: false, refusal: refusal('authenticate', errors.noCredentials(), 'no_session') } as const;
    // A browser signed in elsewhere is sent to sign in with this route's provider, as one without a session is.
    const otherProvider = { ok: false, refusal: refusal('authenticate', errors.noCredentials(), 'session_other_provider') } as const;
    const unavailable = { ok: false, refusal: refusal('authenticate', errors.unavailable('The sign-in provider is unavailable'), 'session_unavailable') } as const;
    const csrf = { ok: false, refusal: refusal('authenticate', Errors.csrf, 'csrf') } as const;
    const settle = (result: SessionAuthentication, ctx: RequestContext): Authentication => {
      if (!result.ok) return result.reason === 'csrf' ? csrf : result.reason === 'unavailable' ? unavailable : noSession;
      if (!providers.has(result.session.provider)) return otherProvider;
      if (this.ctx.config.identity.forwardToken) this.accessTokens.set(ctx, result.session.tokens.accessToken);
      return { ok: true, identity: this.identityOf(result.session) };
    };
    return {
      authenticate: (credential, ctx) => {
        if (credential.scheme !== 'session') return NOT_MINE;
        // Browsers send the cookie with any site's WebSocket handshake, and always say where it comes from.
        if (ctx.upgrade && !this.origins.has(ctx.headers.origin ?? '')) return csrf;
        const result = this.sessions.authenticate(ctx);
        return isThenable(result) ? result.then((settled) => settle(settled, ctx)) : settle(result, ctx);
      },
    };
  }

  /** The session's verified claims read through its issuer's claim paths; it counts until the absolute timeout. */
  private identityOf(session: Session): Identity {
    let identity = this.identities.get(session);
    if (identity === undefined) {
      const provider = this.config.providers.get(session.provider);
      const issuer = this.ctx.config.issuers.get(provider?.issuer ?? '') as IssuerConfig;
      const exp = Math.floor((session.createdAt + this.config.session.absoluteTimeoutMs) / 1000);
      // A session is one credential from sign-in to sign-out: refreshed tokens do not make it a later one, so a
      // revocation of its subject "before T" holds for it whatever its newest ID token says (and userinfo claims
      // carry no iat at all). The ID token's jti names a token the session replaces at each refresh.
      identity = Object.freeze({ ...buildIdentity(issuer, { ...session.claims, exp }), jti: undefined, iat: Math.floor(session.createdAt / 1000) });
      this.identities.set(session, identity);
      this.sessionIds.set(identity, session.id);
    }
    return identity;
  }

  private browserVerdict(verdict: Refusal, ctx: RequestContext, providers: readonly string[], problem: BrowserProblem | 'other'): Verdict | Promise<Verdict> {
    // Only a plain request shows a page: an upgrade has nowhere to show one, and a forward-auth check answers the
    // proxy, which must see the refusal itself (nginx relays only its status, and would take a 302 for an error).
    if (problem === 'other' || ctx.transport !== 'request' || !isNavigation(ctx.method, ctx.headers)) return verdict;
    const id = this.signIn.sessionId(ctx.headersDistinct);
    const context = {
      session: id === undefined ? undefined : this.store.cached(id),
      signOutHref: `${this.ctx.config.server.reservedPrefix}/sign_out`,
      signIn: (returnTo: string) => this.redirectToSignIn(providers, returnTo, ctx.clientIp),
      signInHref: (returnTo: string) => signInHref(this.ctx.config.server.reservedPrefix, providers, returnTo),
    };
    return renderForBrowser(problem, { method: ctx.method, headers: ctx.headers, target: ctx.path + ctx.query }, context).then(
      (page): Verdict => (page === undefined ? verdict : { ...verdict, page }),
    );
  }

  private async redirectToSignIn(providers: readonly string[], returnTo: string, clientIp: string): Promise<LoginAnswer> {
    const ready = providers.filter((name) => this.providers.has(name));
    if (ready.length === 0) {
      const unavailable = await renderForBrowser('unavailable', { method: 'GET', headers: { 'sec-fetch-mode': 'navigate' }, target: returnTo }, UNUSED_CONTEXT);
      return unavailable as LoginAnswer;
    }
    // A sign-in starts by writing its pre-login record: the store down is a page saying to retry, never a 500.
    const path = returnTo.split('?', 1)[0] as string;
    return this.signIn.redirectToSignIn(ready, returnTo, clientIp).catch((err: unknown) => this.storeFailed(err, path, SIGN_IN_UNAVAILABLE));
  }
}

interface OpenedSessionStore {
  readonly store: SessionStore;
  /** Signs cookies when `login.keys` is empty; kept across reloads with the sessions it vouches for. */
  readonly processKey: string;
  watch(id: string, end: () => void): () => void;
  /** Resolves once the store hears other instances' announcements. */
  readonly started: Promise<void>;
  close(): void;
}

/**
 * With `store.redis`, sessions live in Redis (shared by every instance, announced over pub/sub) on connections of
 * their own, so a subscriber that follows the session channel never competes with the revocation mirror's.
 */
function openSessionStore(ctx: CompileContext, timeouts: SessionTimeouts): OpenedSessionStore {
  const redis = ctx.config.store.redis;
  if (redis === undefined) {
    const store = new MemorySessionStore(timeouts);
    return { store, processKey: randomId(), watch: sessionWatch(store), started: Promise.resolve(), close: () => undefined };
  }
  const store = new RedisSessionStore({
    connect: (onSubscriber) => connect(redis, onSubscriber),
    prefix: `${ctx.config.store.prefix}sessions:`,
    timeouts,
    // Counted with the store's other errors; /readyz reports the same Redis through the revocation mirror's connections.
    onError: () => ctx.metrics.storeErrors.inc(),
  });
  return { store, processKey: randomId(), watch: sessionWatch(store), started: store.listening, close: () => void store.close() };
}

/** One end listener on the store for every watched session: an ending session looks up only its own watchers. */
function sessionWatch(store: SessionStore): OpenedSessionStore['watch'] {
  const watchers = new Map<string, Set<() => void>>();
  store.onEnd((id) => {
    const ending = watchers.get(id);
    watchers.delete(id);
    for (const end of ending ?? []) end();
  });
  return (id, end) => {
    let set = watchers.get(id);
    if (set === undefined) watchers.set(id, (set = new Set()));
    set.add(end);
    return () => {
      if (set.delete(end) && set.size === 0 && watchers.get(id) === set) watchers.delete(id);
    };
  };
}

/** One of the gateway's own sign-in endpoints: `checks` run before `run` answers. */
export interface LoginEndpoint {
  readonly methods: readonly string[];
  readonly checks?: readonly Step[];
  readonly run: (ctx: RequestContext) => Promise<LoginAnswer>;
}

const CROSS_SITE_SIGN_OUT = refusal('endpoint', Errors.csrf, 'csrf');

const LOGOUT_UNAVAILABLE: LoginAnswer = Object.freeze({
  status: 503,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store', 'retry-after': '5' },
  body: JSON.stringify({ error: 'temporarily_unavailable', error_description: 'Sessions cannot be ended right now' }),
});

/** A back-channel logout is a form with one signed token: a few KiB. */
const LOGOUT_BODY_MAX_BYTES = 64 * 1024;

const UNUSED_CONTEXT = { session: undefined, signOutHref: '', signIn: () => Promise.reject(new Error('not a sign-in')), signInHref: () => '' };

/** Refusals a browser answers by signing in: no credential, or a session this route does not take. */
const SIGN_IN_REASONS: ReadonlySet<string> = new Set(['no_token', 'no_session', 'session_other_provider']);

/** A link that starts the sign-in with the route's one provider, or the chooser of its several. */
function signInHref(reservedPrefix: string, providers: readonly string[], returnTo: string): string {
  const [only] = providers;
  if (providers.length === 1 && only !== undefined) return `${reservedPrefix}/sign_in?${new URLSearchParams({ provider: only, rd: returnTo })}`;
  return chooserLocation(reservedPrefix, providers, returnTo);
}

function browserProblem(refused: Refusal): BrowserProblem {
  if (SIGN_IN_REASONS.has(refused.reason)) return 'no_credentials';
  if (refused.error.code === 'insufficient_scope') return 'insufficient_scope';
  return refused.error.status === 503 ? 'unavailable' : 'other';
}

/** The registry's `session`: created when the config has a `login` section, after `jwt`, whose issuer keys it shares. */
export const session: MechanismType<Authenticator> = {
  create(ctx, previous, earlier) {
    const login = ctx.config.login;
    if (login === undefined) return undefined;
    const jwt = earlier('authenticators.jwt');
    const issuerKeys = (issuer: string): IssuerKeySet | undefined => (jwt instanceof JwtMechanism ? jwt.issuerKeys(issuer) : undefined);
    return new LoginService(login, ctx, previous instanceof LoginService ? previous : undefined, issuerKeys);
  },
};
