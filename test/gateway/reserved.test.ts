import { SignJWT } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { bearer, expectRefused, methodNotAllowed, noCredentials, noRoute, refuses, tokenCookie, upgrade, type Refusal } from './auth-fixture.js';
import { Errors } from '../../src/http/responses.js';

const SECRET = 'reserved-test-secret-0123456789-abcdefghij';
let upstream: RecordingUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s, trusted_proxies: [10.0.0.0/8], forward_auth: traefik }
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

/** This gateway trusts no proxy, so every forward-auth check it gets is refused. */
const untrustedForwardAuth: Refusal = {
  status: 403,
  error: 'forbidden',
  description: 'Forward-auth requests are accepted only from trusted proxies',
  wwwAuthenticate: undefined,
  reason: 'untrusted_forward_auth',
};

const crossSiteLogout: Refusal = {
  status: 403,
  error: 'forbidden',
  description: 'A cookie logout must come from the same origin',
  wwwAuthenticate: undefined,
  reason: 'cross_site_logout',
};

describe('the reserved prefix', () => {
  it.each([
    ['//_authgate/verify', untrustedForwardAuth],
    ['/%5Fauthgate/verify', untrustedForwardAuth],
    ['/x/../_authgate/verify', untrustedForwardAuth],
    ['/./_authgate/logout', noCredentials],
    ['/_authgate/../_authgate/logout', noCredentials],
    ['/_authgate/anything-else', noRoute],
    ['/_authgate', noRoute],
  ])('%s is answered by the gateway, however it is spelt, and never reaches a catch-all route', async (target, refusal) => {
    await refuses(gw, upstream, { method: target.endsWith('logout') ? 'POST' : 'GET', target }, refusal);
  });

  it.each([
    '/_authgate/verify',
    '//_authgate/verify',
    '/%5Fauthgate/verify',
    '/x/../_authgate/verify',
    '/./_authgate/logout',
    '/_authgate/anything-else',
    '/_authgate',
  ])('a WebSocket handshake to %s is refused 404 and never reaches a catch-all route, however it is spelt', async (target) => {
    const result = await upgrade(gw.port, target);
    if (result.upgraded) throw new Error(`${target} was upgraded by the upstream`);
    await expectRefused(gw, upstream, result.response, noRoute);
  });

  it('leaves paths that only start with the same letters to the routes', async () => {
    const res = await rawRequest(gw.port, { target: '/_authgate-docs/index.html' });
    expect(res.status).toBe(200);
    expect(upstream.seen.map((r) => r.url)).toEqual(['/_authgate-docs/index.html']);
  });
});

describe('logout', () => {
  it('answers 405 to a GET (a link or an image tag cannot log anyone out), and the token keeps working', async () => {
    const token = await sign('logout-by-get');
    await refuses(gw, upstream, { method: 'GET', target: '/_authgate/logout', headers: [bearer(token)] }, methodNotAllowed, [token]);
    expect((await rawRequest(gw.port, { target: '/api/x', headers: [bearer(token)] })).status).toBe(200);
    expect(upstream.seen.map((r) => r.url)).toEqual(['/api/x']);
  });
});

describe('logout with a token cookie', () => {
  it.each([
    ['its Origin', ['Origin', 'https://evil.example']],
    ['its Referer, without an Origin', ['Referer', 'https://evil.example/page']],
  ] as const)('is refused when %s names another site (403), and the token keeps working', async (_case, from) => {
    const token = await sign(`cookie-cross-site-${from[0]}`);
    const res = await rawRequest(gw.port, { method: 'POST', target: '/_authgate/logout', headers: [tokenCookie(token), [...from]] });
    await expectRefused(gw, upstream, res, crossSiteLogout, [token]);
    expect((await rawRequest(gw.port, { target: '/api/x', headers: [bearer(token)] })).status).toBe(200);
    expect(upstream.seen.map((r) => r.url)).toEqual(['/api/x']);
  });

  it('is accepted from the gateway’s own origin (204), and the token is refused afterwards', async () => {
    const token = await sign('cookie-same-origin');
    const res = await rawRequest(gw.port, {
      method: 'POST',
      target: '/_authgate/logout',
      headers: [tokenCookie(token), ['Origin', `http://127.0.0.1:${gw.port}`]],
    });
    expect(res.status).toBe(204);
    const after = await rawRequest(gw.port, { target: '/api/x', headers: [bearer(token)] });
    expect(after.status).toBe(401);
    expect(upstream.seen).toHaveLength(0);
  });
});

describe('a mixed-case reserved prefix on a case-insensitive gateway', () => {
  let folded: TestGateway;
  beforeAll(async () => {
    folded = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s, path_case: insensitive, reserved_prefix: /_AuthGate, trusted_proxies: [127.0.0.1/32], forward_auth: envoy }
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
    await refuses(folded, upstream, { method: 'POST', target }, noCredentials);
  });

  it.each(['/_AuthGate/verify/page?x=1', '/_authgate/VERIFY/page?x=1'])('%s is Envoy’s check of /page?x=1, in any case', async (target) => {
    const res = await rawRequest(folded.port, { method: 'PUT', target, headers: [['Host', 'shop.test']] });
    expect(res.status).toBe(200);
    expect(upstream.seen).toEqual([]);
  });
});

describe('the reserved endpoints behind server.allowed_hosts', () => {
  let hosted: TestGateway;
  beforeAll(async () => {
    hosted = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s, allowed_hosts: [shop.test], trusted_proxies: [127.0.0.1/32], forward_auth: ingress-nginx }
admin: { listen: 127.0.0.1:0 }
issuers:
  legacy: { issuer: https://legacy.example.com, secret: ${SECRET}, audiences: [api] }
upstreams: { api: { url: ${upstream.url} } }
routes:
  - { name: everything, match: { path: /** }, upstream: api, auth: none }
`);
  });
  afterAll(async () => {
    await hosted?.close();
  });

  const misdirected: Refusal = {
    status: 421,
    error: Errors.misdirected.code,
    description: Errors.misdirected.description,
    wwwAuthenticate: undefined,
    reason: 'host_not_allowed',
  };

  it.each([
    ['POST', '/_authgate/logout'],
    ['GET', '/_authgate/logout'],
    ['GET', '/_authgate/anything-else'],
  ])('%s %s with a Host outside allowed_hosts → 421, and the token keeps working', async (method, target) => {
    const token = await sign(`misdirected-${method}-${target}`);
    await refuses(hosted, upstream, { method, target, headers: [['Host', 'evil.example'], bearer(token)] }, misdirected, [token]);
    const logout = await rawRequest(hosted.port, { method: 'POST', target: '/_authgate/logout', headers: [['Host', 'shop.test'], bearer(token)] });
    expect(logout.status).toBe(204);
  });

  it('checks a forward-auth request on the original host, not on the Host the proxy addressed the gateway by', async () => {
    const check = (host: string) =>
      rawRequest(hosted.port, {
        target: '/_authgate/verify',
        headers: [['Host', 'authgate.auth.svc'], ['X-Original-URL', `https://${host}/page`], ['X-Original-Method', 'GET']],
      });
    expect((await check('shop.test')).status).toBe(200);
    await expectRefused(hosted, upstream, await check('evil.example'), misdirected);
  });
});
