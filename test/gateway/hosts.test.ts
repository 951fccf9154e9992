import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawExchange, rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { expectRefused, refuses, upgrade, type Refusal } from './auth-fixture.js';

/**
 * A route scoped to a host must not be stepped past with a Host that names no host: such a Host matches no
 * host-scoped route, so it would fall through to a later, weaker one, while the upstream may read
 * `api.example.com:` as `api.example.com`. Every such Host is refused before routing.
 */

const BAD_HOST: Refusal = {
  status: 400,
  error: 'invalid_request',
  description: 'The request target is invalid',
  wwwAuthenticate: undefined,
  reason: 'bad_host',
};

let upstream: RecordingUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  corp: { issuer: https://corp.example.com, secret: hosts-test-secret-that-is-long-enough-0123, algorithms: [HS256], audiences: [api] }
upstreams:
  api: { url: ${upstream.url} }
routes:
  - { name: admin, match: { host: api.example.com, path: /api/admin/** }, upstream: api, require: { roles: [admin] } }
  - { name: catchall, match: { path: /** }, upstream: api, auth: none }
`);
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

beforeEach(() => {
  upstream.seen.length = 0;
});

describe('a route scoped to a host', () => {
  it('protects its host, and other hosts reach the later route', async () => {
    expect((await rawRequest(gw.port, { target: '/api/admin/users', headers: [['Host', 'api.example.com']] })).status).toBe(401);
    expect((await rawRequest(gw.port, { target: '/api/admin/users', headers: [['Host', 'API.Example.com.:8080']] })).status).toBe(401);
    expect(upstream.seen).toHaveLength(0);
    expect((await rawRequest(gw.port, { target: '/api/admin/users', headers: [['Host', 'docs.example.com']] })).status).toBe(200);
  });

  it.each([
    'api.example.com:',
    'api.example.com:0',
    'api.example.com:99999',
    'api.example.com:80:80',
    'api.example.com:+80',
    'api.example.com:@x',
    'api.example.com..',
    'api%2eexample.com',
    '#',
  ])('refuses Host %j before routing: the upstream sees nothing', async (host) => {
    await refuses(gw, upstream, { target: '/api/admin/users', headers: [['Host', host]] }, BAD_HOST);
  });

  it('refuses a request without a Host (HTTP/1.0)', async () => {
    // HTTP/1.0, which Node's parser lets through without a Host.
    await expectRefused(gw, upstream, await rawExchange(gw.port, 'GET /api/admin/users HTTP/1.0\r\n\r\n'), BAD_HOST);
  });

  it('refuses two Host lines (RFC 9112 §3.2), whichever comes first: a proxy in front may have read the other', async () => {
    const twoHosts = (first: string, second: string) =>
      rawExchange(gw.port, `GET /api/admin/users HTTP/1.1\r\nHost: ${first}\r\nHost: ${second}\r\nConnection: close\r\n\r\n`);
    await expectRefused(gw, upstream, await twoHosts('api.example.com', 'www.example.com'), BAD_HOST);
    await expectRefused(gw, upstream, await twoHosts('www.example.com', 'api.example.com'), BAD_HOST);
  });

  it('forwards a body whose length header comes after 2,000 others', async () => {
    const filler = Array.from({ length: 2100 }, (_, index) => `X-F${index}: 1\r\n`).join('');
    const res = await rawExchange(gw.port, `POST /www/form HTTP/1.1\r\nHost: www.example.com\r\n${filler}Content-Length: 5\r\nConnection: close\r\n\r\nhello`);
    expect(res.status).toBe(200);
    expect(upstream.seen.map((seen) => seen.body)).toEqual(['hello']);
  });

  it('refuses a WebSocket handshake with such a Host', async () => {
    const result = await upgrade(gw.port, '/api/admin/ws', { Host: 'api.example.com:' });
    expect(result.upgraded ? 101 : result.response.status).toBe(400);
    expect(upstream.seen).toHaveLength(0);
  });
});
