import { afterAll, beforeAll, expect, it } from 'vitest';
import { launchBrowser, type TestBrowser } from '../helpers/browser.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { signInAtProvider, startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { freePort } from '../helpers/redis.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/**
 * `login.cookie.same_site: strict` in a real Chromium. The provider is another site (127.0.0.1 against the
 * gateway's localhost), as any real provider is: a Strict cookie set on the way back from it must still reach the
 * page the browser first asked for, without a second trip to the provider.
 */
let provider: TestProvider;
let upstream: RecordingUpstream;
let gw: TestGateway;
let browser: TestBrowser;
let origin: string;

beforeAll(async () => {
  const port = await freePort();
  origin = `http://localhost:${port}`;
  upstream = await startRecordingUpstream();
  provider = await startOidcProvider({ redirectUri: `${origin}/_authgate/callback` });
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:${port}, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
issuers:
  corp: { issuer: ${provider.issuer}, discovery: true, audiences: [${provider.clientId}], algorithms: [RS256] }
upstreams:
  legacy: { url: ${upstream.url}, timeout: 2s }
login:
  external_url: ${origin}
  providers:
    corp: { issuer: corp, client_id: ${provider.clientId}, client_secret: ${provider.clientSecret}, scopes: [openid, email] }
  cookie: { name: authgate, same_site: strict }
  keys: ['a-session-key-of-at-least-32-bytes!!']
routes:
  - { name: app, match: { path: /app/** }, upstream: legacy, login: corp }
`);
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await Promise.all([upstream?.close(), provider?.close()]);
});

it('signs in once and lands on the page first asked for, the session cookie Strict', async () => {
  const page = await browser.context.newPage();
  await page.goto(`${origin}/app/reports?q=1`);
  expect(new URL(page.url()).origin).toBe(provider.issuer);
  await signInAtProvider(page, 'alice', `${origin}/app/reports?q=1`);
  const echoed = JSON.parse((await page.textContent('body')) ?? '{}') as { url: string };
  expect(echoed.url).toBe('/app/reports?q=1');
  expect(provider.tokenRequests).toBe(1);
  const cookie = (await browser.context.cookies(origin)).find((entry) => entry.name === 'authgate');
  expect(cookie?.sameSite).toBe('Strict');
  expect(upstream.seen.map((seen) => seen.headers['x-user-id'])).toEqual(['alice']);
});
