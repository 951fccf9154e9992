import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { signInThroughGateway, startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { freePort, startRedis, type RedisServer } from '../helpers/redis.js';
import { closeOf, OPCODE, openWebSocket } from '../helpers/websocket.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/**
 * Two gateway instances on one real redis-server share their browser sessions: a session made on one opens the
 * other, and a sign-out or a back-channel logout on either holds on both within a second.
 */
const PREFIX = '/_authgate';
const SIGN_OUT_DEADLINE_MS = 1000;

let redis: RedisServer;
let provider: TestProvider;
let upstream: RecordingUpstream;
const gateways: TestGateway[] = [];

function gatewayYaml(port: number): string {
  return `
version: 1
server: { listen: 127.0.0.1:${port}, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
store: { redis: ${redis.url} }
identity: { forward_token: true }
issuers:
  corp: { issuer: ${provider.issuer}, discovery: true, audiences: [${provider.clientId}], algorithms: [RS256] }
upstreams:
  legacy: { url: ${upstream.url}, timeout: 2s }
login:
  external_url: http://127.0.0.1:${port}
  providers:
    corp: { issuer: corp, client_id: ${provider.clientId}, client_secret: ${provider.clientSecret}, scopes: [openid, email] }
  cookie: { name: authgate }
  keys: ['a-session-key-of-at-least-32-bytes!!']
routes:
  - { name: app, match: { path: /app/** }, upstream: legacy, login: corp }
`;
}

beforeAll(async () => {
  const [portA, portB] = [await freePort(), await freePort()];
  redis = await startRedis();
  upstream = await startRecordingUpstream();
  provider = await startOidcProvider({
    redirectUri: `http://127.0.0.1:${portA}${PREFIX}/callback`, backchannelLogoutUri: `http://127.0.0.1:${portB}${PREFIX}/backchannel_logout`,
  });
  gateways.push(await startTestGateway(gatewayYaml(portA)), await startTestGateway(gatewayYaml(portB)));
}, 60_000);

afterAll(async () => {
  await Promise.all(gateways.map((gw) => gw.close()));
  await Promise.all([upstream?.close(), provider?.close(), redis?.close()]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

/** Signs alice in on gateway A; the session cookie's `name=value`. */
function signInOnA(): Promise<string> {
  return signInThroughGateway((gateways[0] as TestGateway).port, provider, 'alice');
}

function statusOn(gw: TestGateway, cookie: string): Promise<number> {
  return rawRequest(gw.port, { target: '/app/page', headers: [['Cookie', `${cookie}; theme=dark`]] }).then((answer) => answer.status);
}

/** Polls until `gw` refuses the cookie; resolves with how long that took, or fails past the deadline. */
async function refusedWithin(gw: TestGateway, cookie: string, deadlineMs: number): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < deadlineMs) {
    if ((await statusOn(gw, cookie)) === 401) return performance.now() - started;
  }
  throw new Error(`the session still opened ${gw.url} after ${deadlineMs} ms`);
}

/** `authgate_sessions_active` as the instance's admin listener reports it (undefined when /metrics is not 200). */
async function sessionsActive(gw: TestGateway): Promise<number | undefined> {
  const response = await fetch(`${gw.adminUrl}/metrics`);
  if (response.status !== 200) return undefined;
  const line = (await response.text()).split('\n').find((entry) => entry.startsWith('authgate_sessions_active '));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

describe('sessions shared through Redis', () => {
  it('a session made on one instance opens the other; a sign-out on one holds on the other within a second', async () => {
    const [a, b] = gateways as [TestGateway, TestGateway];
    const cookie = await signInOnA();
    expect(await statusOn(a, cookie)).toBe(200);
    expect(await statusOn(b, cookie)).toBe(200);
    expect(upstream.seen.map((seen) => seen.headers['x-user-id'])).toEqual(['alice', 'alice']);
    // forward_token: the session's access token goes upstream, the session cookie never does.
    for (const seen of upstream.seen) {
      expect(seen.headers.authorization).toMatch(/^Bearer [\w.~+/-]+=*$/);
      expect(seen.headers.cookie ?? '').not.toContain('authgate');
    }
    const signOut = await rawRequest(a.port, { target: `${PREFIX}/sign_out`, headers: [['Cookie', cookie]] });
    expect(signOut.status).toBe(302);
    upstream.seen.length = 0;
    expect(await refusedWithin(b, cookie, SIGN_OUT_DEADLINE_MS)).toBeLessThan(SIGN_OUT_DEADLINE_MS);
    expect(await statusOn(a, cookie)).toBe(401);
    expect(upstream.seen).toHaveLength(0);
  });

  it('a WebSocket opened with a session on one instance closes when the session is signed out on the other', async () => {
    const [a, b] = gateways as [TestGateway, TestGateway];
    const cookie = await signInOnA();
    upstream.seen.length = 0;
    const foreign: Record<string, string>[] = [{}, { Origin: 'https://evil.example' }];
    for (const origin of foreign) {
      const hijack = await openWebSocket(b.port, '/app/ws', { Cookie: cookie, ...origin });
      expect(hijack.status).toBe(403);
      hijack.socket.destroy();
    }
    expect(upstream.seen).toHaveLength(0);
    const ws = await openWebSocket(b.port, '/app/ws', { Cookie: cookie, Origin: `http://127.0.0.1:${b.port}` });
    expect(ws.status).toBe(101);
    const signOut = await rawRequest(a.port, { target: `${PREFIX}/sign_out`, headers: [['Cookie', cookie]] });
    expect(signOut.status).toBe(302);
    await ws.closed;
    expect(closeOf(ws.reader.frames.at(-1))).toMatchObject({ opcode: OPCODE.close, status: 1008 });
  });

  it('a back-channel logout received by one instance ends the session on both', async () => {
    const [a, b] = gateways as [TestGateway, TestGateway];
    const cookie = await signInOnA();
    expect(await statusOn(a, cookie)).toBe(200);
    expect(await statusOn(b, cookie)).toBe(200);
    const token = provider.sign(
      { iss: provider.issuer, aud: provider.clientId, iat: Math.floor(Date.now() / 1000), jti: `j-${Date.now()}`, sub: 'alice', events: { 'http://schemas.openid.net/event/backchannel-logout': {} } },
      { typ: 'logout+jwt' },
    );
    const logout = await rawRequest(b.port, {
      method: 'POST', target: `${PREFIX}/backchannel_logout`, headers: [['Content-Type', 'application/x-www-form-urlencoded']], body: `logout_token=${token}`,
    });
    expect(logout.status).toBe(200);
    upstream.seen.length = 0;
    await refusedWithin(a, cookie, SIGN_OUT_DEADLINE_MS);
    expect(await statusOn(b, cookie)).toBe(401);
    expect(upstream.seen).toHaveLength(0);
  });

  it('every instance reports the live sessions of the whole store; a scrape still answers while Redis is down', async () => {
    const [a, b] = gateways as [TestGateway, TestGateway];
    const before = (await sessionsActive(b)) as number;
    const cookie = await signInOnA();
    expect([await sessionsActive(a), await sessionsActive(b)]).toEqual([before + 1, before + 1]);
    expect((await rawRequest(b.port, { target: `${PREFIX}/sign_out`, headers: [['Cookie', cookie]] })).status).toBe(302);
    expect([await sessionsActive(a), await sessionsActive(b)]).toEqual([before, before]);
    await signInOnA();
    expect(await sessionsActive(a)).toBe(before + 1);
    await redis.stop();
    // The count cannot be had: the scrape answers with the last one.
    expect(await sessionsActive(a)).toBe(before + 1);
    await redis.restart();
    // A restarted Redis without persistence comes back empty: no session is live any more.
    await expect.poll(() => sessionsActive(a), { timeout: 5000 }).toBe(0);
  });
});
