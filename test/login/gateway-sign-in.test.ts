import type { Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { launchBrowser, type TestBrowser } from '../helpers/browser.js';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startOidcProvider, type TestProvider } from '../helpers/oidc-provider.js';
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

/** Goes through the provider's login and consent pages until the browser is back at `landing`. */
async function signInAtProvider(page: Page, user: string, landing: string): Promise<void> {
  for (let step = 0; step < 4 && page.url() !== landing; step++) {
    const at = page.url();
    if ((await page.locator('input[name=login]').count()) > 0) {
      await page.fill('input[name=login]', user);
      await page.fill('input[name=password]', 'any');
    }
    await page.click('button[type=submit]');
    await page.waitForURL((url) => url.href !== at);
  }
  expect(page.url()).toBe(landing);
}

async function sessionCookie(): Promise<string | undefined> {
  return (await browser.context.cookies(origin)).find((cookie) => cookie.name === 'authgate')?.value;
}

async function signedInPage(user: string, path: string): Promise<Page> {
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

  it('bob signs in and gets the 403 page naming him, with a sign-out link; the upstream sees nothing', async () => {
    // Alice's session at the provider would sign her in again without asking.
    await browser.context.clearCookies();
    const page = await browser.context.newPage();
    await page.goto(`${origin}/app/reports`);
    await signInAtProvider(page, 'bob', `${origin}/app/reports`);
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
