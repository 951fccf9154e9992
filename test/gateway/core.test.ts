import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { signRaw } from '../helpers/tokens.js';
import { createLatch, startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { invalidRequest, refuses } from './auth-fixture.js';

const SECRET = 'core-test-secret-that-is-long-enough-0123456789';

function gatewayYaml(upstream: string, slow: string): string {
  return `
version: 1
server:
  listen: 127.0.0.1:0
  trusted_proxies: [10.99.99.99/32]
  shutdown_grace: 1s
admin:
  listen: 127.0.0.1:0
logging: { level: info, access_log: true }
issuers:
  legacy:
    issuer: https://legacy.example.com
    secret: ${SECRET}
    algorithms: [HS256]
    audiences: [api]
upstreams:
  api: { url: ${upstream}, timeout: 2s }
  slow: { url: ${slow}, timeout: 300ms }
  dead: { url: "http://127.0.0.1:9", timeout: 1s }
identity:
  headers:
    X-User-Id: subject
    X-User-Roles: roles
    X-Auth-Issuer: issuer
  strip: ["X-User-*", "X-Auth-*"]
routes:
  - name: public
    match: { path: /public/** }
    upstream: api
    auth: none
  - name: admin
    match: { path: /admin/** }
    upstream: api
  - name: slow
    match: { path: /slow }
    upstream: slow
    auth: none
  - name: dead
    match: { path: /dead }
    upstream: dead
    auth: none
  - name: ws-public
    match: { path: /ws-public }
    upstream: api
    auth: none
  - name: ws
    match: { path: /ws }
    upstream: api
`;
}

let upstream: RecordingUpstream;
/** Never answers while the suite runs, so /slow outlasts its 300 ms upstream timeout. */
let slow: RecordingUpstream;
const slowAnswers = createLatch();
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  slow = await startRecordingUpstream(() => ({ holdUntil: slowAnswers }));
  gw = await startTestGateway(gatewayYaml(upstream.url, slow.url));
});
afterAll(async () => {
  slowAnswers.release();
  await gw?.close();
  await upstream?.close();
  await slow?.close();
});
beforeEach(() => {
  upstream.seen.length = 0;
});

function expectGatewayError(res: Awaited<ReturnType<typeof rawRequest>>, status: number, code: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toBe('application/json');
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['x-content-type-options']).toBe('nosniff');
  const body = res.json<{ error: string; error_description: string; request_id: string }>();
  expect(body.error).toBe(code);
  expect(typeof body.error_description).toBe('string');
  expect(body.request_id).toBe(res.headers['x-request-id']);
}

describe('forwarding', () => {
  it('forwards a public request with its query string, and the upstream answer comes back', async () => {
    const res = await rawRequest(gw.port, { target: '/public/items?b=2&a=1&a=%20x' });
    expect(res.status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
    expect(upstream.seen[0]?.url).toBe('/public/items?b=2&a=1&a=%20x');
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('streams a request body to the upstream unchanged', async () => {
    const body = 'x'.repeat(512 * 1024) + 'end';
    const res = await rawRequest(gw.port, { method: 'POST', target: '/public/upload', body, headers: [['Content-Type', 'text/plain']] });
    expect(res.status).toBe(200);
    expect(upstream.seen[0]?.body).toBe(body);
  });

  it('answers 404 with the SPEC error shape when no route matches, and forwards nothing', async () => {
    const res = await rawRequest(gw.port, { target: '/nowhere' });
    expectGatewayError(res, 404, 'not_found');
    expect(upstream.seen).toHaveLength(0);
  });

  it('answers 401 without an error code on a protected route without a token, and forwards nothing', async () => {
    const res = await rawRequest(gw.port, { target: '/admin/users' });
    expectGatewayError(res, 401, 'unauthorized');
    expect(res.headers['www-authenticate']).toBe('Bearer realm="authgate"');
    expect(upstream.seen).toHaveLength(0);
  });

  it('answers 502 when the upstream refuses the connection', async () => {
    const res = await rawRequest(gw.port, { target: '/dead' });
    expectGatewayError(res, 502, 'bad_gateway');
    const metrics = await gw.metrics.registry.getSingleMetricAsString('authgate_upstream_errors_total');
    expect(metrics).toContain('upstream="dead",kind="refused"');
  });

  it('answers 504 when the upstream does not answer within its timeout', async () => {
    const res = await rawRequest(gw.port, { target: '/slow' });
    expectGatewayError(res, 504, 'gateway_timeout');
    expect(slow.seen.map((r) => r.url)).toEqual(['/slow']);
  });
});

describe('default token sources (no query source configured)', () => {
  it('refuses a token in ?access_token= with 400, rather than ignore it where an upstream might read it', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'https://legacy.example.com', aud: 'api', sub: 'query-user', iat: now, exp: now + 300 };
    const token = signRaw('HS256', SECRET, { alg: 'HS256', typ: 'JWT' }, claims);
    await refuses(gw, upstream, { target: `/admin/x?access_token=${token}` }, invalidRequest('query_token_not_enabled'), [token]);
  });
});

describe('Expect: 100-continue', () => {
  /** Every byte the gateway sends back for `text`, until it closes the connection. */
  function exchange(text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(gw.port, '127.0.0.1');
      let received = '';
      socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
      socket.on('close', () => resolve(received));
      socket.on('error', reject);
      socket.write(text);
    });
  }
  const post = (path: string): string =>
    `POST ${path} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nbody`;

  it('is not invited before authentication: a refused request gets its 401 and never a 100', async () => {
    const received = await exchange(post('/admin/upload'));
    expect(received.startsWith('HTTP/1.1 401 Unauthorized\r\n')).toBe(true);
    expect(received).not.toContain('100 Continue');
    expect(upstream.seen).toHaveLength(0);
  });

  it('is invited once the request may pass, and the body reaches the upstream', async () => {
    const received = await exchange(post('/public/upload'));
    expect(received.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n')).toBe(true);
    expect(upstream.seen.map((r) => r.body)).toEqual(['body']);
  });
});

describe('request-target attacks against a protected /admin beside a public route', () => {
  // Each target either is refused (400), or normalizes to a path that the policy then checks; what reaches the
  // upstream is exactly the normalized path.
  const cases: Array<[target: string, status: number, forwardedAs?: string]> = [
    ['/public/../admin', 401],
    ['/public/%2e%2e/admin', 401],
    ['/public/%2E%2E/admin', 401],
    ['/public/.%2e/admin', 401],
    ['/public/..%2fadmin', 400],
    ['/public/..%2Fadmin', 400],
    ['/public/%252e%252e/admin', 200, '/public/%252e%252e/admin'],
    ['/public\\..\\admin', 400],
    ['/public/..\\admin', 400],
    ['/public/%5c..%5cadmin', 400],
    ['//admin', 401],
    ['///admin//users', 401],
    ['/admin/', 401],
    ['/admin', 401],
    ['/admin;jsessionid=x', 400],
    ['/admin/users;x=1', 400],
    ['/admin%2fusers', 400],
    ['/%61dmin', 401],
    ['/%41dmin', 404],
    ['/admin#fragment', 400],
    ['/public#/../admin', 400],
    ['http://127.0.0.1/admin', 400],
    ['http://evil.example/public/x', 400],
    ['127.0.0.1:80', 400],
    ['*', 400],
    ['/../admin', 400],
    ['/public/../../admin', 400],
    ['/public/%00/x', 400],
    ['/public/./x/../y', 200, '/public/y'],
    ['/public/%7euser/%2a', 200, '/public/~user/%2A'],
  ];
  it.each(cases)('%s → %i', async (target, status, forwardedAs) => {
    const res = await rawRequest(gw.port, { target });
    expect(res.status).toBe(status);
    if (forwardedAs) {
      expect(upstream.seen.map((r) => r.url)).toEqual([forwardedAs]);
    } else {
      expect(upstream.seen).toHaveLength(0);
    }
  });
});

describe('header hygiene', () => {
  it('strips spoofed identity headers in every spelling on a public route; the upstream sees none', async () => {
    const res = await rawRequest(gw.port, {
      target: '/public/x',
      headers: [
        ['X-User-Id', 'admin'],
        ['X-User-Id', 'root'],
        ['x-user-roles', 'admin'],
        ['X_User_Id', 'underscore'],
        ['X-AUTH-ISSUER', 'https://evil'],
        ['X-User-Anything', 'pattern'],
        ['X-Auth_Whatever', 'pattern'],
        ['X-HTTP-Method-Override', 'DELETE'],
        ['X-HTTP-Method', 'DELETE'],
        ['X-Method-Override', 'DELETE'],
        ['X-Original-URL', '/admin'],
        ['X-Rewrite-URL', '/admin'],
        ['X-Forwarded-Uri', '/admin'],
        ['X-Forwarded-For', '6.6.6.6'],
        ['X-Forwarded-Host', 'evil.example'],
        ['X-Forwarded-Proto', 'https'],
        ['Forwarded', 'for=6.6.6.6;host=evil.example'],
        ['X-Request-Id', 'spoofed-id'],
        ['Accept', 'application/json'],
      ],
    });
    expect(res.status).toBe(200);
    const seen = upstream.seen[0];
    expect(seen).toBeDefined();
    const names = (seen?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    for (const name of names) {
      expect(name.replaceAll('_', '-')).not.toMatch(/^x-(user|auth)-/);
    }
    expect(names).not.toContain('x-http-method-override');
    expect(names).not.toContain('x-http-method');
    expect(names).not.toContain('x-method-override');
    expect(names).not.toContain('x-original-url');
    expect(names).not.toContain('x-rewrite-url');
    expect(names).not.toContain('x-forwarded-uri');
    expect(names).not.toContain('forwarded');
    expect(seen?.method).toBe('GET');
    expect(seen?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen?.headers['x-forwarded-host']).toBe(`127.0.0.1:${gw.port}`);
    expect(seen?.headers['x-forwarded-proto']).toBe('http');
    expect(seen?.headers['x-request-id']).not.toBe('spoofed-id');
    expect(seen?.headers['x-request-id']).toBe(res.headers['x-request-id']);
    expect(seen?.headers.accept).toBe('application/json');
  });

  it.each(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST'])(
    'frames a chunked %s body for the upstream, so a request hidden in it is never parsed as a second one',
    async (method) => {
      const hidden = 'GET /admin/secret HTTP/1.1\r\nHost: up\r\nX-User-Id: admin\r\nX-User-Roles: admin\r\n\r\n';
      const chunked = `${Buffer.byteLength(hidden).toString(16)}\r\n${hidden}\r\n0\r\n\r\n`;
      const res = await rawRequest(gw.port, { method, target: '/public/x', headers: [['Transfer-Encoding', 'chunked']], rawBody: chunked });
      expect(res.status).toBe(200);
      expect(upstream.seen.map((r) => [r.method, r.url])).toEqual([[method, '/public/x']]);
      expect(upstream.seen[0]?.body).toBe(hidden);
    },
  );

  it('refuses request-smuggling shapes with Node’s strict parser; nothing reaches the upstream', async () => {
    for (const headers of [
      [['Content-Length', '4'], ['Transfer-Encoding', 'chunked']],
      [['Content-Length', '4'], ['Content-Length', '5']],
    ] as Array<Array<[string, string]>>) {
      const res = await rawRequest(gw.port, { method: 'POST', target: '/public/x', headers });
      expect(res.status).toBe(400);
    }
    expect(upstream.seen).toHaveLength(0);
  });
});

describe('logs', () => {
  it('writes one access line per request and never a token, cookie or Authorization value', async () => {
    const token = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsZWFrIn0.c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ';
    const before = gw.logs.length;
    await rawRequest(gw.port, { target: '/admin/x', headers: [['Authorization', `Bearer ${token}`]] });
    await rawRequest(gw.port, { target: '/public/x', headers: [['Cookie', `access_token=${token}; theme=dark`]] });
    await expect.poll(() => gw.logs.length - before).toBeGreaterThanOrEqual(2);
    const lines = gw.logs.slice(before);
    expect(lines.join('\n')).not.toContain(token);
    expect(lines.join('\n')).not.toContain('c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ');
    const access = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request');
    expect(access.map((l) => [l.route, l.status, l.decision])).toEqual([
      ['admin', 401, 'deny'],
      ['public', 200, 'allow'],
    ]);
  });
});

describe('WebSocket', () => {
  function upgrade(path: string, headers: Record<string, string> = {}): Promise<{ status: number; echo?: string }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({
        host: '127.0.0.1',
        port: gw.port,
        path,
        headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13', ...headers },
      });
      req.on('upgrade', (res, socket) => {
        socket.once('data', (d: Buffer) => {
          resolve({ status: res.statusCode ?? 0, echo: d.toString() });
          socket.destroy();
        });
        socket.write('ping-bytes');
      });
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0 });
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('proxies an upgrade on a public route and carries bytes both ways', async () => {
    const result = await upgrade('/ws-public', { 'X-User-Id': 'spoof' });
    expect(result).toEqual({ status: 101, echo: 'ping-bytes' });
    expect(upstream.seen).toHaveLength(1);
    expect(upstream.seen[0]?.upgrade).toBe(true);
    expect(upstream.seen[0]?.headers['x-user-id']).toBeUndefined();
  });

  it('refuses an upgrade without a token on a protected route with 401 and no upgrade', async () => {
    const result = await upgrade('/ws');
    expect(result.status).toBe(401);
    expect(upstream.seen).toHaveLength(0);
  });

  it('refuses an upgrade with a bad token with 401 and no upgrade', async () => {
    const result = await upgrade('/ws', { Authorization: 'Bearer abc.def.ghi' });
    expect(result.status).toBe(401);
    expect(upstream.seen).toHaveLength(0);
  });
});
