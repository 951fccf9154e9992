import type { Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { launchBrowser, type TestBrowser } from '../helpers/browser.js';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { signInAtProvider, startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { freePort } from '../helpers/redis.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/**
 * Browser sign-in through a real gateway: a real Chromium, a real OpenID provider (oidc-provider), the gateway
 * started from YAML as `authgate start` would, and a recording upstream that must never see the session cookie.
 */
const PREFIX = '/_authgate';
const SESSION_KEY = 'a-session-key-of-at-least-32-bytes!!';

let provider: TestProvider;
let upstream: RecordingUpstream;
let gw: TestGateway;
let browser: TestBrowser;
let origin: string;

function gatewayYaml(port: number): string {
  return `
version: 1
server: { listen: 127.0.0.1:${port}, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
issuers:
  corp:
    issuer: ${provider.issuer}
    discovery: true
    audiences: [${provider.clientId}]
    algorithms: [RS256]
upstreams:
  legacy: { url: ${upstream.url}, timeout: 2s }
login:
  external_url: ${origin}
  providers:
    corp:
      issuer: corp
      client_id: ${provider.clientId}
      client_secret: ${provider.clientSecret}
      scopes: [openid, email]
  cookie: { name: authgate }
  keys: ['${SESSION_KEY}']
routes:
  - name: app
    match: { path: /app/** }
    upstream: legacy
    login: corp
    require: { roles: [staff] }
  - name: api
    match: { path: /api/** }
    upstream: legacy
`;
}

beforeAll(async () => {
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  upstream = await startRecordingUpstream();
  provider = await startOidcProvider({
    redirectUri: `${origin}${PREFIX}/callback`, postLogoutRedirectUri: `${origin}/`, backchannelLogoutUri: `${origin}${PREFIX}/backchannel_logout`,
  });
  gw = await startTestGateway(gatewayYaml(port));
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await Promise.all([upstream?.close(), provider?.close()]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

async function sessionCookie(): Promise<string | undefined> {
  return (await browser.context.cookies(origin)).find((cookie) => cookie.name === 'authgate')?.value;
}

/** A flow started by a navigation and completed at the provider (over HTTP) as alice, up to the callback URL. */
async function providerCallback(): Promise<{ flowCookie: string; callback: URL }> {
  const start = await rawRequest(gw.port, { target: '/app/x', headers: [['Sec-Fetch-Mode', 'navigate']] });
  const flowCookie = (start.headers['set-cookie'] ?? '').split(';')[0] as string;
  return { flowCookie, callback: await provider.signIn(new URL(start.headers.location ?? ''), 'alice') };
}

async function expectNoSession(target: string, headers: [string, string][]): Promise<void> {
  const answer = await rawRequest(gw.port, { target, headers });
  expect(answer.status).toBe(400);
  expect(answer.headers['set-cookie'] ?? '').not.toMatch(/^authgate=/);
}

async function signedInPage(user: string, path: string): Promise<Page> {
  // A session left at the provider would sign the previous user in again without asking.
  await browser.context.clearCookies();
  const page = await browser.context.newPage();
  await page.goto(`${origin}${path}`);
  expect(new URL(page.url()).origin).toBe(provider.issuer);
  await signInAtProvider(page, user, `${origin}${path}`);
  return page;
}

describe('browser sign-in through the gateway', () => {
  it('alice signs in and reaches the protected page; the upstream sees her identity and never the session cookie', async () => {
    const page = await signedInPage('alice', '/app/reports?q=1');
    const echoed = JSON.parse((await page.textContent('body')) ?? '{}') as { url: string };
    expect(echoed.url).toBe('/app/reports?q=1');
    const seen = upstream.seen.filter((request) => request.url.startsWith('/app/'));
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers['x-user-id']).toBe('alice');
    expect(seen[0]?.headers['x-user-email']).toBe('alice@example.com');
    expect(seen[0]?.headers.cookie ?? '').not.toContain('authgate');
    expect(seen[0]?.headers.authorization).toBeUndefined();
    // The access log follows the session by a short hash, never its ID or cookie.
    const cookie = (await sessionCookie()) as string;
    // The line is written once the response has closed, which may be just after the browser has the page.
    const line = await vi.waitFor(() => {
      const found = gw.logs.map((text) => JSON.parse(text) as Record<string, unknown>).find((entry) => entry.path === '/app/reports' && entry.status === 200);
      if (found === undefined) throw new Error('no access line yet');
      return found;
    }, { timeout: 2000 });
    expect(line.session).toMatch(/^[\w-]{8}$/);
    expect(gw.logs.some((text) => text.includes(cookie) || text.includes(cookie.split('.')[0] as string))).toBe(false);
    await page.close();
  });

  it('a script without a session gets a 401, never a redirect, and the upstream sees nothing', async () => {
    const response = await fetch(`${origin}/app/reports`, { redirect: 'manual', headers: { accept: '*/*', 'sec-fetch-mode': 'cors' } });
    expect(response.status).toBe(401);
    expect(response.headers.get('location')).toBeNull();
    expect(response.headers.get('www-authenticate')).toBe('Bearer realm="authgate"');
    expect(upstream.seen).toHaveLength(0);
  });

  it('a navigation without a session is sent to the provider; the upstream sees nothing', async () => {
    // A raw request: fetch() itself would send Sec-Fetch-Mode: cors.
    const response = await rawRequest(gw.port, { target: '/app/x', headers: [['Accept', 'text/html'], ['Sec-Fetch-Mode', 'navigate']] });
    expect(response.status).toBe(302);
    expect(new URL(response.headers.location ?? '').origin).toBe(provider.issuer);
    expect(response.headers['set-cookie']).toMatch(/^authgate-login-[\w-]+=[\w-]+\.[\w-]+; Max-Age=600; Path=\/; HttpOnly; SameSite=Lax$/);
    expect(upstream.seen).toHaveLength(0);
  });

  it('a cross-site POST riding on the session cookie is refused 403 csrf before the upstream', async () => {
    const cookie = await sessionCookie();
    expect(cookie).toBeDefined();
    const foreign: Record<string, string>[] = [{}, { origin: 'https://evil.example' }, { referer: 'https://evil.example/form' }, { origin: 'null' }];
    for (const headers of foreign) {
      const response = await fetch(`${origin}/app/transfer`, { method: 'POST', headers: { cookie: `authgate=${cookie}`, ...headers }, body: 'x' });
      expect(response.status).toBe(403);
      expect(((await response.json()) as { error: string }).error).toBe('csrf');
    }
    const same = await fetch(`${origin}/app/transfer`, { method: 'POST', headers: { cookie: `authgate=${cookie}`, origin }, body: 'x' });
    expect(same.status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
  });

  it('a forged, truncated or re-signed session cookie opens nothing', async () => {
    const cookie = (await sessionCookie()) as string;
    const [id = ''] = cookie.split('.');
    for (const forged of [`${cookie.slice(0, -2)}AA`, cookie.slice(0, 40), `${id}.${'A'.repeat(43)}`, 'x']) {
      const response = await fetch(`${origin}/app/r`, { headers: { cookie: `authgate=${forged}` }, redirect: 'manual' });
      expect(response.status).toBe(401);
    }
    expect(upstream.seen).toHaveLength(0);
  });

  it('an API route keeps ignoring the session: no token is 401', async () => {
    const response = await fetch(`${origin}/api/x`, { headers: { cookie: `authgate=${await sessionCookie()}` } });
    expect(response.status).toBe(401);
    expect(upstream.seen).toHaveLength(0);
  });

  it('sign_out ends the session: the old cookie opens nothing afterwards', async () => {
    const cookie = await sessionCookie();
    const page = await browser.context.newPage();
    await page.goto(`${origin}${PREFIX}/sign_out?rd=/`);
    expect(await sessionCookie()).toBeUndefined();
    await page.close();
    const replay = await fetch(`${origin}/app/r`, { headers: { cookie: `authgate=${cookie}` }, redirect: 'manual' });
    expect(replay.status).toBe(401);
    const navigation = await rawRequest(gw.port, { target: '/app/r', headers: [['Cookie', `authgate=${cookie}`], ['Sec-Fetch-Mode', 'navigate']] });
    expect(navigation.status).toBe(302);
    expect(new URL(navigation.headers.location ?? '').origin).toBe(provider.issuer);
    expect(upstream.seen).toHaveLength(0);
  });

  it('a sign-out posted from another site is refused 403 csrf and the session lives on; one from the gateway ends it', async () => {
    const page = await signedInPage('alice', '/app/stay');
    const cookie = `authgate=${await sessionCookie()}`;
    const signOut = (headers: [string, string][]) => rawRequest(gw.port, { method: 'POST', target: `${PREFIX}/sign_out?rd=/`, headers: [['Cookie', cookie], ...headers], body: '' });
    for (const foreign of [[], [['Origin', 'https://evil.example']], [['Referer', 'https://evil.example/page']], [['Origin', 'null']]] as [string, string][][]) {
      const refused = await signOut(foreign);
      expect(refused.status).toBe(403);
      expect(refused.json()).toMatchObject({ error: 'csrf' });
      expect(refused.headers['set-cookie']).toBeUndefined();
    }
    upstream.seen.length = 0;
    expect((await fetch(`${origin}/app/stay`, { headers: { cookie } })).status).toBe(200);
    const fromHere = await signOut([['Origin', origin]]);
    expect(fromHere.status).toBe(302);
    expect(fromHere.headers['set-cookie']).toMatch(/^authgate=; Max-Age=0/);
    expect((await fetch(`${origin}/app/stay`, { headers: { cookie } })).status).toBe(401);
    expect(upstream.seen).toHaveLength(1);
    await page.close();
  });

  it('a sign-out form on the gateway\'s own page (Referer, no Origin) ends the session', async () => {
    const page = await signedInPage('alice', '/app/form');
    const cookie = `authgate=${await sessionCookie()}`;
    const answer = await rawRequest(gw.port, { method: 'POST', target: `${PREFIX}/sign_out`, headers: [['Cookie', cookie], ['Referer', `${origin}/app/form`]], body: '' });
    expect(answer.status).toBe(302);
    expect((await fetch(`${origin}/app/form`, { headers: { cookie } })).status).toBe(401);
    await page.close();
  });

  it('a callback with a missing, wrong or replayed state, or no flow cookie, creates no session', async () => {
    const first = await providerCallback();
    const tries: [string, [string, string][]][] = [
      [`${PREFIX}/callback?code=${first.callback.searchParams.get('code')}`, [['Cookie', first.flowCookie]]],
      [`${PREFIX}/callback${first.callback.search}`, []],
    ];
    for (const [target, headers] of tries) await expectNoSession(target, headers);
    const good = await rawRequest(gw.port, { target: `${PREFIX}/callback${first.callback.search}`, headers: [['Cookie', first.flowCookie]] });
    expect(good.status).toBe(302);
    expect(good.headers['set-cookie']).toMatch(/^authgate=/);
    const code = first.callback.searchParams.get('code') ?? '';
    expect(gw.logs.filter((line) => line.includes(`${PREFIX}/callback`)).length).toBeGreaterThan(0);
    expect(gw.logs.some((line) => line.includes(code))).toBe(false);
    await expectNoSession(`${PREFIX}/callback${first.callback.search}`, [['Cookie', first.flowCookie]]);
    // A wrong state ends its flow: the record is taken once, so the right state cannot follow it.
    const second = await providerCallback();
    const state = second.callback.searchParams.get('state') ?? '';
    const wrong = new URL(second.callback);
    wrong.searchParams.set('state', `${state.slice(0, -1)}${state.endsWith('x') ? 'y' : 'x'}`);
    await expectNoSession(`${PREFIX}/callback${wrong.search}`, [['Cookie', second.flowCookie]]);
    await expectNoSession(`${PREFIX}/callback${second.callback.search}`, [['Cookie', second.flowCookie]]);
    expect(upstream.seen).toHaveLength(0);
    const metrics = await gw.metrics.registry.getSingleMetricAsString('authgate_logins_total');
    expect(metrics).toMatch(/authgate_logins_total\{provider="corp",result="success"\} [1-9]/);
    expect(metrics).toMatch(/authgate_logins_total\{provider="corp",result="state_mismatch"\} 1/);
    expect(metrics).toMatch(/authgate_logins_total\{provider="-",result="no_flow"\} [1-9]/);
  });

  it('sign_out sends the browser back only to a safe place', async () => {
    for (const rd of ['//evil.example', '/\\evil.example', 'https:evil.example', '/%2F%2Fevil.example', 'javascript:alert(1)', 'https://app.example.com.evil']) {
      const answer = await rawRequest(gw.port, { target: `${PREFIX}/sign_out?rd=${encodeURIComponent(rd)}` });
      expect(answer.status).toBe(302);
      const location = new URL(answer.headers.location ?? '', origin);
      expect(location.origin).toBe(origin);
      expect(location.pathname).toBe('/');
    }
  });

  it('a back-channel logout from the provider ends the session; a replayed or unsigned logout token is 400', async () => {
    const page = await signedInPage('alice', '/app/b');
    const cookie = await sessionCookie();
    // The user signs out at the provider itself; the provider tells the gateway over the back channel.
    await page.goto(`${provider.issuer}/session/end`);
    await page.click('button[autofocus], button[type=submit]');
    await page.waitForURL((url) => url.origin === provider.issuer && url.pathname.includes('success'));
    upstream.seen.length = 0;
    const after = await fetch(`${origin}/app/b`, { headers: { cookie: `authgate=${cookie}` } });
    expect(after.status).toBe(401);
    const token = provider.sign({ iss: provider.issuer, aud: provider.clientId, iat: Math.floor(Date.now() / 1000), jti: 'j1', sub: 'alice', events: { 'http://schemas.openid.net/event/backchannel-logout': {} } }, { typ: 'logout+jwt' });
    const post = (body: string) => rawRequest(gw.port, { method: 'POST', target: `${PREFIX}/backchannel_logout`, headers: [['Content-Type', 'application/x-www-form-urlencoded']], body });
    expect((await post(`logout_token=${token}`)).status).toBe(200);
    expect((await post(`logout_token=${token}`)).status).toBe(400);
    const [head = '', payload = ''] = token.split('.');
    expect((await post(`logout_token=${head}.${payload}.`)).status).toBe(400);
    expect(upstream.seen).toHaveLength(0);
    await page.close();
  });

  it('bearer tokens and sign-ins of one issuer share its keys: the provider is asked for them once', async () => {
    const page = await signedInPage('alice', '/app/keys');
    expect(upstream.seen.filter((request) => request.url === '/app/keys')).toHaveLength(1);
    const now = Math.floor(Date.now() / 1000);
    const token = provider.sign({ iss: provider.issuer, aud: provider.clientId, sub: 'carol', iat: now, exp: now + 300 }, { typ: 'JWT' });
    const bearer = await fetch(`${origin}/api/keys`, { headers: { authorization: `Bearer ${token}` } });
    expect(bearer.status).toBe(200);
    expect(provider.jwksRequests).toBe(1);
    await page.close();
  });

  it('bob signs in and gets the 403 page naming him, with a sign-out link; the upstream sees nothing', async () => {
    const page = await signedInPage('bob', '/app/reports');
    const response = await page.reload();
    expect(response?.status()).toBe(403);
    expect(response?.headers()['content-security-policy']).toMatch(/^default-src 'none'/);
    expect(response?.headers()['x-frame-options']).toBe('DENY');
    expect(await page.textContent('body')).toContain('bob@example.com');
    expect(await page.locator(`a[href="${PREFIX}/sign_out"]`).count()).toBe(1);
    expect(upstream.seen).toHaveLength(0);
    await page.close();
  });
});
