import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { upgrade } from '../gateway/auth-fixture.js';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { signInThroughGateway, startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { freePort } from '../helpers/redis.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/**
 * A login route shows a browser navigation a sign-in redirect or a page instead of the JSON refusal. That page is
 * still a refusal: a forward-auth check for the same navigation must not answer 200 (the proxy would let the
 * request through), a WebSocket handshake that claims to be a navigation must not be tunnelled, and the access log
 * and metrics count it as denied.
 */

let provider: TestProvider;
let upstream: RecordingUpstream;
let gw: TestGateway;

const NAVIGATION: [string, string][] = [['Accept', 'text/html'], ['Sec-Fetch-Mode', 'navigate'], ['Sec-Fetch-Dest', 'document']];

beforeAll(async () => {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  upstream = await startRecordingUpstream();
  provider = await startOidcProvider({
    redirectUri: `${origin}/_authgate/callback`, postLogoutRedirectUri: `${origin}/`, backchannelLogoutUri: `${origin}/_authgate/backchannel_logout`,
  });
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:${port}, trusted_proxies: [127.0.0.1/32], forward_auth: traefik }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  corp: { issuer: ${provider.issuer}, discovery: true, audiences: [${provider.clientId}], algorithms: [RS256] }
upstreams:
  legacy: { url: ${upstream.url} }
login:
  external_url: ${origin}
  providers:
    corp: { issuer: corp, client_id: ${provider.clientId}, client_secret: ${provider.clientSecret} }
  cookie: { name: authgate }
  keys: ['a-session-key-of-at-least-32-bytes!!']
identity: { forward_token: true }
routes:
  - { name: app, match: { path: /app/** }, upstream: legacy, login: corp, require: { roles: [staff] } }
`);
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await Promise.all([upstream?.close(), provider?.close()]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

function accessLine(requestId: string): Record<string, unknown> | undefined {
  return gw.logs.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === 'request' && line.requestId === requestId);
}

/** A Traefik ForwardAuth check of a navigation to `uri`, with the client's other headers. */
function forwardAuthCheck(uri: string, headers: [string, string][] = []): ReturnType<typeof rawRequest> {
  return rawRequest(gw.port, {
    target: '/_authgate/verify',
    headers: [
      ['Host', 'authgate:8080'], ['X-Forwarded-Method', 'GET'], ['X-Forwarded-Proto', 'https'], ['X-Forwarded-Host', 'app.example'],
      ['X-Forwarded-Uri', uri], ...NAVIGATION, ...headers,
    ],
  });
}

async function deniedCount(reason: string): Promise<number> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`authgate_auth_denied_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('a login route refusing a browser navigation', () => {
  it('sends it to sign in, and logs and counts that as the refusal it is', async () => {
    const before = await deniedCount('no_token');
    const res = await rawRequest(gw.port, { target: '/app/reports', headers: NAVIGATION });
    expect(res.status).toBe(302);
    const requestId = res.headers['x-request-id'] as string;
    await expect.poll(() => accessLine(requestId)).toMatchObject({ status: 302, decision: 'deny', reason: 'no_token' });
    expect(accessLine(requestId)).not.toHaveProperty('upstream');
    expect(await deniedCount('no_token')).toBe(before + 1);
    expect(upstream.seen).toHaveLength(0);
  });

  it('answers a forward-auth check of that navigation with the refusal, never 200', async () => {
    const res = await forwardAuthCheck('/app/reports');
    expect(res.status).toBe(401);
    expect(res.json()).toMatchObject({ error: 'unauthorized' });
    expect(res.headers.location).toBeUndefined();
    expect(res.headers['set-cookie']).toBeUndefined();
    await expect.poll(() => accessLine(res.headers['x-request-id'] as string)).toMatchObject({ path: '/app/reports', decision: 'deny', reason: 'no_token' });
  });

  it('a signed-in user the rules refuse: the 403 page; forward-auth answers 403 with no identity; a WebSocket reaches nothing', async () => {
    const cookie = await signInThroughGateway(gw.port, provider, 'bob');
    const page = await rawRequest(gw.port, { target: '/app/reports', headers: [...NAVIGATION, ['Cookie', cookie]] });
    expect(page.status).toBe(403);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    await expect.poll(() => accessLine(page.headers['x-request-id'] as string)).toMatchObject({ decision: 'deny', reason: 'rule_roles', subject: 'bob' });

    const check = await forwardAuthCheck('/app/reports', [['Cookie', cookie]]);
    expect(check.status).toBe(403);
    expect(check.headers['x-user-id']).toBeUndefined();
    expect(check.json()).toMatchObject({ error: 'insufficient_scope' });

    const socket = await upgrade(gw.port, '/app/socket', { ...Object.fromEntries(NAVIGATION), Cookie: cookie, Origin: `http://127.0.0.1:${gw.port}` });
    expect(socket.upgraded ? 101 : socket.response.status).toBe(403);
    expect(upstream.seen).toHaveLength(0);
  });

  it('refuses a WebSocket handshake that claims to be a navigation, and tunnels nothing', async () => {
    const result = await upgrade(gw.port, '/app/socket', Object.fromEntries(NAVIGATION));
    expect(result.upgraded ? 101 : result.response.status).toBe(401);
    expect(upstream.seen).toHaveLength(0);
  });
});

describe('forward-auth with a browser session and identity.forward_token', () => {
  it("answers 200 with the Authorization the upstream gets (the session's access token, or the client's own), for the proxy to set", async () => {
    const cookie = await signInThroughGateway(gw.port, provider, 'alice');
    const proxied = await rawRequest(gw.port, { target: '/app/reports', headers: [['Cookie', cookie]] });
    expect(proxied.status).toBe(200);
    const accessToken = upstream.seen[0]?.headers.authorization;
    expect(accessToken).toMatch(/^Bearer \S+$/);
    const check = await forwardAuthCheck('/app/reports', [['Cookie', `${cookie}; theme=dark`]]);
    expect(check.status).toBe(200);
    expect({ authorization: check.headers.authorization, cookie: check.headers.cookie }).toEqual({ authorization: accessToken, cookie: 'theme=dark' });
    // A client's own bearer token comes back too: a proxy that copies the header drops it from an answer without it.
    const now = Math.floor(Date.now() / 1000);
    const bearer = `Bearer ${provider.sign({ iss: provider.issuer, aud: provider.clientId, sub: 'carol', roles: ['staff'], iat: now, exp: now + 300 })}`;
    const bearerCheck = await forwardAuthCheck('/app/reports', [['Authorization', bearer]]);
    expect({ status: bearerCheck.status, authorization: bearerCheck.headers.authorization }).toEqual({ status: 200, authorization: bearer });
  });
});
