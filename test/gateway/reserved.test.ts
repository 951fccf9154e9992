import { SignJWT } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

const SECRET = 'reserved-test-secret-0123456789-abcdefghij';
let upstream: RecordingUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
issuers:
  legacy: { issuer: https://legacy.example.com, secret: ${SECRET}, audiences: [api] }
upstreams: { api: { url: ${upstream.url} } }
routes:
  - { name: protected, match: { path: /api/** }, upstream: api }
  - { name: everything-else, match: { path: /** }, upstream: api, auth: none }
`);
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});
beforeEach(() => {
  upstream.seen.length = 0;
});

function sign(jti: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ jti })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer('https://legacy.example.com')
    .setAudience('api')
    .setSubject('alice')
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .sign(new TextEncoder().encode(SECRET));
}

describe('the reserved prefix', () => {
  it.each([
    ['//_authgate/verify', 403],
    ['/%5Fauthgate/verify', 403],
    ['/x/../_authgate/verify', 403],
    ['/./_authgate/logout', 401],
    ['/_authgate/../_authgate/logout', 401],
    ['/_authgate/anything-else', 404],
    ['/_authgate', 404],
  ])('%s is answered by the gateway (%i), however it is spelt, and never reaches a catch-all route', async (target, status) => {
    const res = await rawRequest(gw.port, { method: target.endsWith('logout') ? 'POST' : 'GET', target });
    expect(res.status).toBe(status);
    expect(upstream.seen).toHaveLength(0);
  });

  it('leaves paths that only start with the same letters to the routes', async () => {
    const res = await rawRequest(gw.port, { target: '/_authgate-docs/index.html' });
    expect(res.status).toBe(200);
    expect(upstream.seen.map((r) => r.url)).toEqual(['/_authgate-docs/index.html']);
  });
});

describe('logout with a token cookie', () => {
  it('is refused from another site (403), and the token keeps working', async () => {
    const token = await sign('cookie-cross-site');
    const res = await rawRequest(gw.port, {
      method: 'POST',
      target: '/_authgate/logout',
      headers: [['Cookie', `access_token=${token}`], ['Origin', 'https://evil.example']],
    });
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ error: 'forbidden' });
    expect((await rawRequest(gw.port, { target: '/api/x', headers: [['Authorization', `Bearer ${token}`]] })).status).toBe(200);
  });

  it('is accepted from the gateway’s own origin (204), and the token is refused afterwards', async () => {
    const token = await sign('cookie-same-origin');
    const res = await rawRequest(gw.port, {
      method: 'POST',
      target: '/_authgate/logout',
      headers: [['Cookie', `access_token=${token}`], ['Origin', `http://127.0.0.1:${gw.port}`]],
    });
    expect(res.status).toBe(204);
    const after = await rawRequest(gw.port, { target: '/api/x', headers: [['Authorization', `Bearer ${token}`]] });
    expect(after.status).toBe(401);
    expect(upstream.seen).toHaveLength(0);
  });
});

describe('a mixed-case reserved prefix on a case-insensitive gateway', () => {
  let folded: TestGateway;
  beforeAll(async () => {
    folded = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s, path_case: insensitive, reserved_prefix: /_AuthGate }
admin: { listen: 127.0.0.1:0 }
upstreams: { api: { url: ${upstream.url} } }
routes:
  - { name: everything, match: { path: /** }, upstream: api, auth: none }
`);
  });
  afterAll(async () => {
    await folded?.close();
  });

  it.each(['/_AuthGate/logout', '/_authgate/logout', '/_AUTHGATE/logout'])('%s is the gateway’s logout, in any case', async (target) => {
    const res = await rawRequest(folded.port, { method: 'POST', target });
    expect(res.status).toBe(401);
    expect(upstream.seen).toHaveLength(0);
  });
});
