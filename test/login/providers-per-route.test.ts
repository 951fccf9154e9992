import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { signInThroughGateway, startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { freePort } from '../helpers/redis.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/**
 * One session cookie, whichever provider signed the browser in: a login route takes only the sessions of the
 * providers it names (and of those, only providers whose issuer its `issuers` admits), as it takes only tokens
 * of its issuers. Two real OpenID providers; alice has role staff at both.
 */

let corp: TestProvider;
let partner: TestProvider;
let upstream: RecordingUpstream;
let gw: TestGateway;

beforeAll(async () => {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  upstream = await startRecordingUpstream();
  [corp, partner] = await Promise.all([
    startOidcProvider({ redirectUri: `${origin}/_authgate/callback`, clientId: 'corp-client' }),
    startOidcProvider({ redirectUri: `${origin}/_authgate/callback`, clientId: 'partner-client' }),
  ]);
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:${port} }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  corp: { issuer: ${corp.issuer}, discovery: true, audiences: [${corp.clientId}], algorithms: [RS256] }
  partner: { issuer: ${partner.issuer}, discovery: true, audiences: [${partner.clientId}], algorithms: [RS256] }
upstreams:
  legacy: { url: ${upstream.url} }
login:
  external_url: ${origin}
  providers:
    corp: { issuer: corp, client_id: ${corp.clientId}, client_secret: ${corp.clientSecret} }
    partner: { issuer: partner, client_id: ${partner.clientId}, client_secret: ${partner.clientSecret} }
  cookie: { name: authgate }
  keys: ['a-session-key-of-at-least-32-bytes!!']
routes:
  - { name: internal, match: { path: /internal/** }, upstream: legacy, login: corp, issuers: [corp], require: { roles: [staff] } }
  - { name: reports, match: { path: /reports/** }, upstream: legacy, login: corp }
  - { name: portal, match: { path: /portal/** }, upstream: legacy, login: partner }
  - { name: both, match: { path: /both/** }, upstream: legacy, login: [corp, partner] }
`);
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await Promise.all([upstream?.close(), corp?.close(), partner?.close()]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

function accessLine(requestId: string): Record<string, unknown> | undefined {
  return gw.logs.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === 'request' && line.requestId === requestId);
}

describe('a session of one provider on login routes', () => {
  it('opens the routes that name its provider, and no route that does not', async () => {
    const cookie = await signInThroughGateway(gw.port, partner, 'alice', '/portal/x');
    upstream.seen.length = 0;
    for (const path of ['/portal/a', '/both/a']) {
      expect((await rawRequest(gw.port, { target: path, headers: [['Cookie', cookie]] })).status).toBe(200);
    }
    expect(upstream.seen).toHaveLength(2);
    upstream.seen.length = 0;

    for (const path of ['/internal/secret', '/reports/q3']) {
      const script = await rawRequest(gw.port, { target: path, headers: [['Cookie', cookie]] });
      expect(script.status).toBe(401);
      await expect.poll(() => accessLine(script.headers['x-request-id'] as string)).toMatchObject({ decision: 'deny', reason: 'session_other_provider' });
      // A browser is sent to sign in with the route's own provider.
      const navigation = await rawRequest(gw.port, { target: path, headers: [['Cookie', cookie], ['Sec-Fetch-Mode', 'navigate']] });
      expect(navigation.status).toBe(302);
      expect(navigation.headers.location?.startsWith(corp.issuer)).toBe(true);
    }
    expect(upstream.seen).toHaveLength(0);
  });

  it("a session of the route's own provider passes", async () => {
    const cookie = await signInThroughGateway(gw.port, corp, 'alice', '/internal/x');
    upstream.seen.length = 0;
    expect((await rawRequest(gw.port, { target: '/internal/secret', headers: [['Cookie', cookie]] })).status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
  });
});
