import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isNavigation } from '../../src/login/browser.js';
import { CookieJar } from '../../src/login/cookies.js';
import { BrowserSignIn, type LoginAnswer } from '../../src/login/endpoints.js';
import { MemorySessionStore } from '../../src/login/sessions/memory.js';
import { launchBrowser, type TestBrowser } from '../helpers/browser.js';
import { signInAtProvider, startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { relyingParty, releaseKeySets } from '../helpers/relying-party.js';

const TIMEOUTS = { idleMs: 60_000, absoluteMs: 600_000 };
const PREFIX = '/.authgate';

/**
 * The sign-in modules wired the way the gateway will wire them, in a tiny loopback server: the reserved endpoints,
 * and a "protected route" that answers with who the session says you are, sends a navigation without a session
 * to sign in, and gives anything else a 401.
 */
class MiniGateway {
  readonly server: Server = createServer((req, res) => void this.handle(req, res).catch((error: Error) => res.writeHead(500).end(error.message)));
  readonly store = new MemorySessionStore(TIMEOUTS);
  readonly jar = new CookieJar({ name: 'authgate', sameSite: 'lax', secure: false, keys: ['a-session-key-of-at-least-32-bytes!!'] });
  signIn: BrowserSignIn | undefined;
  origin = '';
  backchannelAnswers: number[] = [];
  protectedRequests = 0;

  async listen(): Promise<string> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.origin;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const signIn = this.signIn as BrowserSignIn;
    const [path = '/', query = ''] = (req.url ?? '/').split('?', 2);
    const search = query === '' ? '' : `?${query}`;
    switch (path) {
      case `${PREFIX}/callback`: return send(res, await signIn.callback(search, req.headersDistinct));
      case `${PREFIX}/sign_in`: return send(res, await signIn.signIn(query, req.socket.remoteAddress ?? ''));
      case `${PREFIX}/sign_out`: return send(res, await signIn.signOut(query, req.headersDistinct));
      case `${PREFIX}/backchannel_logout`: {
        const answer = await signIn.backchannelLogout(await bodyOf(req));
        this.backchannelAnswers.push(answer.status);
        return send(res, answer);
      }
    }
    const id = signIn.sessionId(req.headersDistinct);
    const session = id === undefined ? undefined : await this.store.get(id);
    if (session !== undefined) {
      this.protectedRequests++;
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${session.subject} (${(session.claims.roles as string[]).join(',')}) at ${path}`);
      return;
    }
    if (isNavigation(req.method ?? 'GET', req.headers)) return send(res, await signIn.redirectToSignIn(['corp'], req.url ?? '/', req.socket.remoteAddress ?? ''));
    res.writeHead(401, { 'www-authenticate': 'Bearer realm="authgate"' }).end();
  }
}

function send(res: ServerResponse, answer: LoginAnswer): void {
  res.writeHead(answer.status, answer.headers).end(answer.body);
}

async function bodyOf(req: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) body += String(chunk);
  return body;
}

let app: MiniGateway;
let provider: TestProvider;
let browser: TestBrowser;
beforeAll(async () => {
  app = new MiniGateway();
  const origin = await app.listen();
  provider = await startOidcProvider({
    redirectUri: `${origin}${PREFIX}/callback`, postLogoutRedirectUri: `${origin}/`, backchannelLogoutUri: `${origin}${PREFIX}/backchannel_logout`,
  });
  const rp = await relyingParty(provider, `${origin}${PREFIX}/callback`, { scopes: ['openid', 'email'] });
  app.signIn = new BrowserSignIn({
    providers: new Map([['corp', rp]]), store: app.store, jar: app.jar, redirects: { origin, allowed: [] }, reservedPrefix: PREFIX,
    timeouts: TIMEOUTS, now: Date.now,
  });
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  releaseKeySets();
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
    await page.goto(`${app.origin}/app/reports?q=1`);
    expect(new URL(page.url()).origin).toBe(provider.issuer);
    await signInAtProvider(page, 'alice', `${app.origin}/app/reports?q=1`);
    expect(await page.textContent('body')).toBe('hello alice (staff) at /app/reports');

    const ours = (await browser.context.cookies(app.origin)).filter((cookie) => cookie.name.startsWith('authgate'));
    expect(ours.map((cookie) => cookie.name)).toEqual(['authgate']);
    expect(ours[0]).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
    expect(app.jar.verify('authgate', ours[0]?.value ?? '')).toEqual(expect.any(String));
    await page.close();
  });

  it('a script without the cookie gets a 401, never a redirect to the provider', async () => {
    const before = app.protectedRequests;
    const response = await fetch(`${app.origin}/app/reports`, { redirect: 'manual', headers: { accept: '*/*', 'sec-fetch-mode': 'cors' } });
    expect(response.status).toBe(401);
    expect(response.headers.get('location')).toBeNull();
    expect(app.protectedRequests).toBe(before);
  });

  it('a sign-out at the provider reaches the gateway by back-channel and ends the session', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${app.origin}/app`);
    expect(await page.textContent('body')).toBe('hello alice (staff) at /app');
    // The user signs out at the provider itself (another application's sign-out button, say).
    await page.goto(`${provider.issuer}/session/end`);
    await page.click('button[autofocus], button[type=submit]');
    await page.waitForURL((url) => url.origin === provider.issuer && url.pathname.includes('success'));
    expect(app.backchannelAnswers).toEqual([200]);
    const before = app.protectedRequests;
    await page.goto(`${app.origin}/app`);
    expect(new URL(page.url()).origin).toBe(provider.issuer);
    expect(app.protectedRequests).toBe(before);
    await page.close();
  });

  it('sign_out ends the session, clears the cookie and goes through the provider end-session endpoint', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${app.origin}/app`);
    expect(new URL(page.url()).origin).toBe(provider.issuer);
    await signInAtProvider(page, 'alice', `${app.origin}/app`);
    const cookie = (await browser.context.cookies(app.origin)).find((c) => c.name === 'authgate');
    expect(cookie).toBeDefined();
    await page.goto(`${app.origin}${PREFIX}/sign_out?rd=/`);
    expect(new URL(page.url()).origin).toBe(provider.issuer);
    expect((await browser.context.cookies(app.origin)).find((c) => c.name === 'authgate')).toBeUndefined();
    // The old cookie, replayed after sign-out, opens nothing.
    const before = app.protectedRequests;
    const replay = await fetch(`${app.origin}/app`, { headers: { cookie: `authgate=${cookie?.value}` }, redirect: 'manual' });
    expect(replay.status).toBe(401);
    expect(app.protectedRequests).toBe(before);
    await page.close();
  });
});
