import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { signInThroughGateway, startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { freePort } from '../helpers/redis.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/**
 * A subject revoked "before T" through the admin API: sessions signed in at or before T are refused and ended, however
 * new their refreshed tokens are, and a sign-in after T passes. The provider's access tokens live a minute and
 * `refresh_before` is two, so every session request refreshes first and carries an ID token issued just now; the
 * second `userinfo` gateway takes its identity from the userinfo endpoint, whose claims carry no `iat` at all.
 */
const ADMIN_TOKEN = 'session-revocation-admin-token-0123';

let upstream: RecordingUpstream;

function gatewayYaml(port: number, provider: TestProvider, identityFrom: 'id_token' | 'userinfo'): string {
  return `
version: 1
server: { listen: 127.0.0.1:${port}, shutdown_grace: 200ms }
admin: { listen: 127.0.0.1:0, token: ${ADMIN_TOKEN} }
identity: { headers: { X-User-Id: subject } }
issuers:
  corp: { issuer: ${provider.issuer}, discovery: true, audiences: [${provider.clientId}], algorithms: [RS256] }
upstreams:
  legacy: { url: ${upstream.url}, timeout: 2s }
login:
  external_url: http://127.0.0.1:${port}
  providers:
    corp: { issuer: corp, client_id: ${provider.clientId}, client_secret: ${provider.clientSecret}, scopes: [openid, email], identity_from: ${identityFrom} }
  cookie: { name: authgate }
  keys: ['a-session-key-of-at-least-32-bytes!!']
  session: { refresh_before: 2m }
routes:
  - { name: app, match: { path: /app/** }, upstream: legacy, login: corp }
`;
}

beforeAll(async () => {
  upstream = await startRecordingUpstream();
});

afterAll(async () => {
  await upstream?.close();
});

beforeEach(() => {
  upstream.seen.length = 0;
});

/** Resolves once the clock is in a later epoch second than when called: a revocation "before now" is cut by seconds. */
async function nextSecond(): Promise<void> {
  const second = Math.floor(Date.now() / 1000);
  while (Math.floor(Date.now() / 1000) === second) await new Promise((resolve) => setTimeout(resolve, 20));
}

async function revokeSubject(gateway: TestGateway, subject: string): Promise<void> {
  const res = await fetch(`${gateway.adminUrl}/revocations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ subject }),
  });
  expect(res.status).toBe(201);
}

/** A script's request with the session cookie; whether the upstream got this very request. */
async function sessionRequest(gateway: TestGateway, cookie: string, navigate = false): Promise<{ status: number; location: string | undefined; reached: boolean; challenge: string | undefined }> {
  const probe = randomUUID();
  const headers: [string, string][] = [['Cookie', cookie], ['X-Probe', probe]];
  if (navigate) headers.push(['Sec-Fetch-Mode', 'navigate']);
  const res = await rawRequest(gateway.port, { target: '/app/page', headers });
  const reached = upstream.seen.some((seen) => seen.headers['x-probe'] === probe);
  return { status: res.status, location: res.headers.location, reached, challenge: res.headers['www-authenticate'] };
}

describe.each(['id_token', 'userinfo'] as const)('a revoked subject, identity from the %s', (identityFrom) => {
  let provider: TestProvider;
  let gateway: TestGateway;

  beforeAll(async () => {
    const port = await freePort();
    provider = await startOidcProvider({ redirectUri: `http://127.0.0.1:${port}/_authgate/callback`, accessTokenTtlS: 60 });
    gateway = await startTestGateway(gatewayYaml(port, provider, identityFrom));
  }, 60_000);

  afterAll(async () => {
    await gateway?.close();
    await provider?.close();
  });

  it('is refused even after its session refreshed, its session ends, and a sign-in after the revocation passes', async () => {
    const revokedCookie = await signInThroughGateway(gateway.port, provider, 'alice');
    expect(await sessionRequest(gateway, revokedCookie)).toMatchObject({ status: 200, reached: true });
    await nextSecond();
    await revokeSubject(gateway, 'alice');
    // Whatever the provider issues from now on is issued after the cut-off.
    await nextSecond();
    // A browser gets a page with a link to sign in again (a redirect could go round for good under a revocation that
    // also covers the next sign-in), and the session is ended in the store: from then on it is no session at all.
    const navigation = await sessionRequest(gateway, revokedCookie, true);
    expect(navigation).toMatchObject({ status: 401, reached: false, location: undefined });
    expect(await sessionRequest(gateway, revokedCookie)).toEqual({ status: 401, location: undefined, reached: false, challenge: 'Bearer realm="authgate"' });
    const again = await sessionRequest(gateway, revokedCookie, true);
    expect(again).toMatchObject({ status: 302, reached: false });
    expect(again.location).toContain(provider.issuer);

    const laterCookie = await signInThroughGateway(gateway.port, provider, 'alice');
    expect(await sessionRequest(gateway, laterCookie)).toMatchObject({ status: 200, reached: true });
    const bobCookie = await signInThroughGateway(gateway.port, provider, 'bob');
    expect(await sessionRequest(gateway, bobCookie)).toMatchObject({ status: 200, reached: true });
  });
});
