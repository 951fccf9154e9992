import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_FETCH_LIMITS } from '../../src/auth/fetch-json.js';
import { IssuerKeySet } from '../../src/auth/key-set.js';
import { CookieJar, cookieReader, randomId } from '../../src/login/cookies.js';
import { RelyingParty } from '../../src/login/oidc.js';
import { safeReturnTo } from '../../src/login/return-to.js';
import { MemorySessionStore } from '../../src/login/sessions/memory.js';
import { PRE_LOGIN_TTL_MS } from '../../src/login/sessions/types.js';
import { IssuerSignatures } from '../../src/login/signatures.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import { launchBrowser, type TestBrowser } from '../helpers/browser.js';
import { startOidcProvider, type TestProvider } from '../helpers/oidc-provider.js';

const TIMEOUTS = { idleMs: 60_000, absoluteMs: 600_000 };

/**
 * The sign-in pieces composed the way the gateway will wire them, in a tiny loopback server: /start begins a flow,
 * the callback completes it and creates the session, /app answers with who the session says you are.
 */
class CallbackServer {
  readonly server: Server = createServer((req, res) => void this.handle(req, res).catch((error: Error) => res.writeHead(500).end(error.message)));
  readonly store = new MemorySessionStore(TIMEOUTS);
  readonly jar = new CookieJar({ name: 'authgate', sameSite: 'lax', secure: false, keys: ['a-session-key-of-at-least-32-bytes!!'] });
  rp: RelyingParty | undefined;
  origin = '';

  async listen(): Promise<string> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.origin;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.origin);
    if (url.pathname === '/start') return this.start(url, res);
    if (url.pathname === '/.authgate/callback') return this.callback(req, url, res);
    const id = this.sessionId(req);
    const session = id === undefined ? undefined : await this.store.get(id);
    if (session === undefined) return void res.writeHead(401).end('no session');
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${session.subject} (${(session.claims.roles as string[]).join(',')}) at ${url.pathname}`);
  }

  private async start(url: URL, res: ServerResponse): Promise<void> {
    const { url: authorization, preLogin } = await (this.rp as RelyingParty).begin(safeReturnTo(url.searchParams.get('rd') ?? undefined, { origin: this.origin, allowed: [] }));
    const flow = randomId();
    await this.store.savePreLogin(flow, preLogin);
    res.writeHead(302, { location: authorization.href, 'set-cookie': this.jar.issue(this.jar.flowCookieName(preLogin.state), flow, PRE_LOGIN_TTL_MS / 1000) }).end();
  }

  private async callback(req: IncomingMessage, url: URL, res: ServerResponse): Promise<void> {
    const flowCookie = this.jar.flowCookieName(url.searchParams.get('state') ?? '');
    const read = cookieReader(flowCookie)(req.headersDistinct);
    const flow = read.ok && read.value !== undefined ? this.jar.verify(flowCookie, read.value) : undefined;
    const preLogin = flow === undefined ? undefined : await this.store.takePreLogin(flow);
    const result = await (this.rp as RelyingParty).complete(url.search, preLogin);
    if (!result.ok) return void res.writeHead(400).end(result.reason);
    const now = Date.now();
    const id = randomId();
    await this.store.create({ id, provider: 'corp', subject: result.subject, idpSid: result.idpSid, claims: result.claims, tokens: result.tokens, createdAt: now, lastSeenAt: now });
    res.writeHead(302, {
      location: preLogin?.returnTo ?? '/',
      'set-cookie': [this.jar.issue(this.jar.sessionName, id, TIMEOUTS.absoluteMs / 1000), this.jar.clear(flowCookie)],
    }).end();
  }

  private sessionId(req: IncomingMessage): string | undefined {
    const read = cookieReader(this.jar.sessionName)(req.headersDistinct);
    return read.ok && read.value !== undefined ? this.jar.verify(this.jar.sessionName, read.value) : undefined;
  }
}

let app: CallbackServer;
let provider: TestProvider;
let browser: TestBrowser;
let keys: IssuerKeySet;
beforeAll(async () => {
  app = new CallbackServer();
  const origin = await app.listen();
  provider = await startOidcProvider({ redirectUri: `${origin}/.authgate/callback` });
  const issuer = {
    name: 'corp', issuer: provider.issuer, keys: { kind: 'discovery' as const }, audiences: [provider.clientId], algorithms: ['RS256'],
    clockSkewMs: 30_000, maxTokenAgeMs: undefined, tokenTypes: undefined, requireClaims: undefined,
    claims: { subject: 'sub', email: 'email', roles: 'roles', permissions: 'permissions', scopes: 'scope', clientId: 'client_id' },
    jwksCache: { maxAgeMs: 600_000, minRefetchIntervalMs: 0, staleIfErrorMs: 86_400_000 },
  };
  keys = new IssuerKeySet(issuer, { logger: createLogger('silent'), metrics: new Metrics(), now: Date.now, fetchLimits: DEFAULT_FETCH_LIMITS });
  await keys.start();
  app.rp = await RelyingParty.discover({
    provider: { name: 'corp', issuer: 'corp', clientId: provider.clientId, clientAuth: { method: 'client_secret_basic', secret: provider.clientSecret }, scopes: ['openid', 'email'], params: {}, identityFrom: 'id_token' },
    issuer, redirectUri: `${origin}/.authgate/callback`, signatures: new IssuerSignatures(keys, issuer.algorithms),
  });
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  keys?.release();
  await provider?.close();
  app?.server.closeAllConnections();
  app?.server.close();
});

describe('the browser helper', () => {
  it('fails naming the Debian package when Chromium is missing', async () => {
    await expect(launchBrowser('/nonexistent/chromium')).rejects.toThrow('install the Debian package chromium');
  });
});

describe('sign-in in a real browser', () => {
  it('alice signs in on the provider login page and lands on the page she asked for, with a session cookie only', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${app.origin}/start?rd=${encodeURIComponent('/app/reports?q=1')}`);
    expect(new URL(page.url()).origin).toBe(provider.issuer);
    await page.fill('input[name=login]', 'alice');
    await page.fill('input[name=password]', 'any');
    await page.click('button[type=submit]');
    await page.waitForURL((url) => url.origin === provider.issuer && url.pathname.startsWith('/interaction/'));
    await page.click('button[type=submit]');
    await page.waitForURL(`${app.origin}/app/reports?q=1`);
    expect(await page.textContent('body')).toBe('hello alice (staff) at /app/reports');

    const cookies = await browser.context.cookies(app.origin);
    const ours = cookies.filter((cookie) => cookie.name.startsWith('authgate'));
    expect(ours.map((cookie) => cookie.name)).toEqual(['authgate']);
    expect(ours[0]).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
    expect(app.jar.verify('authgate', ours[0]?.value ?? '')).toEqual(expect.any(String));
  });

  it('an open redirect in the return-to lands on / instead', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${app.origin}/start?rd=${encodeURIComponent('//evil.example/')}`);
    // Already signed in at the provider: it sends the browser straight back after consent (if asked).
    if (new URL(page.url()).origin === provider.issuer) await page.click('button[type=submit]');
    await page.waitForURL(`${app.origin}/`);
    expect(await page.textContent('body')).toBe('hello alice (staff) at /');
  });
});
