import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type RawResponse, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml, startIdp, type Idp } from '../helpers/idp.js';
import { startNginx, type NginxServer } from '../helpers/nginx.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { accessLogLine, bearer } from '../gateway/auth-fixture.js';

/**
 * Forward-auth behind a real nginx, configured as ingress-nginx's template configures an `auth-url` location and
 * as the docs configure plain nginx `auth_request`. nginx passes the client's own headers to the auth sub-request
 * (`proxy_pass_request_headers on`) and sets only its own few, so a client can add any other proxy family's
 * headers; the gateway must read only the family it is configured for. The app behind nginx must never see a
 * request the gateway did not allow.
 */

let idp: Idp;
let app: RecordingUpstream;

beforeAll(async () => {
  idp = await startIdp({ keys: ['rsa'] });
  app = await startRecordingUpstream();
});
afterAll(async () => {
  await app?.close();
  await idp?.close();
});
beforeEach(() => {
  app.seen.length = 0;
});

function gatewayYaml(family: string): string {
  return `
version: 1
server:
  listen: 127.0.0.1:0
  trusted_proxies: [127.0.0.1/32]
  shutdown_grace: 1s
  forward_auth: ${family}
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
tokens:
  - header: Authorization
  - cookie: access_token
issuers:
${issuerYaml(idp)}
upstreams:
  app: { url: ${app.url} }
identity:
  headers:
    X-User-Id: subject
    X-User-Roles: roles
routes:
  - { name: public, match: { path: /public/** }, upstream: app, auth: none }
  - { name: admin, match: { host: shop.example.com, path: /admin/** }, upstream: app, require: { roles: [admin] } }
  - { name: docs, match: { host: docs.example.com, path: /** }, upstream: app, auth: none }
  - { name: orders-delete, match: { path: "/orders/{id}", methods: [DELETE] }, upstream: app, require: { permissions: [orders:delete] } }
  - { name: orders, match: { path: "/orders/{id}", methods: [GET, DELETE] }, upstream: app }
`;
}

/**
 * The protected location: identity headers and Cookie from the auth answer, as `auth-response-headers` sets them up. The
 * check carries nginx's `$request_id` (as ingress-nginx's does) and the client gets it back, to find the check's log.
 */
function protectedLocation(authLocation: string): string {
  return `
    location / {
      auth_request ${authLocation};
      auth_request_set $auth_user_id $upstream_http_x_user_id;
      auth_request_set $auth_user_roles $upstream_http_x_user_roles;
      auth_request_set $auth_cookie $upstream_http_cookie;
      proxy_set_header X-User-Id $auth_user_id;
      proxy_set_header X-User-Roles $auth_user_roles;
      proxy_set_header Cookie $auth_cookie;
      proxy_set_header Host $host;
      add_header X-Request-Id $request_id always;
      proxy_pass http://127.0.0.1:${app.port};
    }`;
}

/** ingress-nginx's `auth-url` location, as its nginx.tmpl writes it (with the example's proxy-buffer-size). */
async function ingressNginxServer(gatewayPort: number): Promise<string> {
  return `
    location = /_external-auth {
      internal;
      proxy_pass_request_body off;
      proxy_buffer_size 16k;
      proxy_buffers 4 16k;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Proto "";
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header Host authgate.auth.svc.cluster.local;
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Sent-From "nginx-ingress-controller";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
      proxy_pass_request_headers on;
      proxy_http_version 1.1;
      proxy_pass http://127.0.0.1:${gatewayPort}/_authgate/verify?host=$host;
    }
${protectedLocation('/_external-auth')}`;
}

/**
 * Plain nginx `auth_request`, exactly as docs/operations.md configures it (its nginx block, with this test's addresses),
 * plus nginx's `$request_id` back to the client, to find the check's log line.
 */
async function plainNginxServer(gatewayPort: number): Promise<string> {
  const docs = await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  const block = /```nginx\n([\s\S]*?)```/.exec(docs)?.[1];
  if (block === undefined) throw new Error('docs/operations.md has no nginx block');
  return block
    .replace('http://authgate:8080', `http://127.0.0.1:${gatewayPort}`)
    .replace('proxy_pass http://app;', `add_header X-Request-Id $request_id always;\n proxy_pass http://127.0.0.1:${app.port};`);
}

/** Every family's description of a harmless request (GET /public/x on the public docs host). */
const EVERY_FAMILY_SPOOF: ReadonlyArray<readonly [string, string]> = [
  ['X-Forwarded-Uri', '/public/x'],
  ['X-Forwarded-Method', 'GET'],
  ['X-Forwarded-Host', 'docs.example.com'],
  ['X-Forwarded-Proto', 'https'],
  ['X-Original-URI', '/public/x'],
  ['X-Original-URL', 'http://docs.example.com/public/x'],
  ['X-Original-Method', 'GET'],
  ['X-Original-Host', 'docs.example.com'],
];

describe.each([
  { proxy: 'ingress-nginx (auth-url)', family: 'ingress-nginx', server: ingressNginxServer },
  { proxy: 'plain nginx (auth_request)', family: 'nginx', server: plainNginxServer },
])('behind $proxy', ({ family, server }) => {
  let gw: TestGateway;
  let nginx: NginxServer;
  beforeAll(async () => {
    gw = await startTestGateway(gatewayYaml(family));
    nginx = await startNginx(await server(gw.port));
  });
  afterAll(async () => {
    await nginx?.close();
    await gw?.close();
  });

  const viaNginx = (method: string, target: string, headers: ReadonlyArray<readonly [string, string]>): Promise<RawResponse> =>
    rawRequest(nginx.port, { method, target, headers });

  it('lets a valid token through: the app sees the gateway’s identity headers, not the client’s', async () => {
    const token = idp.sign({ sub: 'alice', roles: ['admin'] });
    const res = await viaNginx('GET', '/admin/orders?page=2', [['Host', 'shop.example.com'], bearer(token), ['X-User-Id', 'mallory'], ['X-User-Roles', 'root']]);
    expect(res.status).toBe(200);
    expect(app.seen.map((r) => ({ url: r.url, user: r.headers['x-user-id'], roles: r.headers['x-user-roles'] }))).toEqual([
      { url: '/admin/orders?page=2', user: 'alice', roles: 'admin' },
    ]);
  });

  it('keeps the token cookie from the app and passes the app’s own cookies', async () => {
    const token = idp.sign({ sub: 'alice', roles: ['admin'] });
    const res = await viaNginx('GET', '/admin/orders', [['Host', 'shop.example.com'], ['Cookie', `theme=dark; access_token=${token}`]]);
    expect(res.status).toBe(200);
    expect(app.seen.map((r) => ({ user: r.headers['x-user-id'], cookie: r.headers.cookie }))).toEqual([{ user: 'alice', cookie: 'theme=dark' }]);
    app.seen.length = 0;
    expect((await viaNginx('GET', '/admin/orders', [['Host', 'shop.example.com'], ['Cookie', `access_token=${token}`]])).status).toBe(200);
    expect(app.seen.map((r) => r.headers.cookie)).toEqual([undefined]);
  });

  it('refuses a client without a token that adds every other family’s description of a public request (401)', async () => {
    const res = await viaNginx('GET', '/admin/orders', [['Host', 'shop.example.com'], ...EVERY_FAMILY_SPOOF]);
    expect(res.status).toBe(401);
    expect(app.seen).toEqual([]);
    expect(await nginx.errorLog()).not.toContain('auth request unexpected status');
  });

  it('refuses a DELETE that other families’ headers call a GET, past a permissions rule (403)', async () => {
    const token = idp.sign({ sub: 'alice', permissions: ['orders:read'] });
    const res = await viaNginx('DELETE', '/orders/7', [['Host', 'shop.example.com'], bearer(token), ...EVERY_FAMILY_SPOOF]);
    expect(res.status).toBe(403);
    expect(app.seen).toEqual([]);
  });

  it('passes a request with 7 KB of cookies: the check answers with them, within the buffer the docs give', async () => {
    const token = idp.sign({ sub: 'alice', roles: ['admin'] });
    const cookies = Array.from({ length: 7 }, (_, i) => `c${i}=${'x'.repeat(1000)}`).join('; ');
    const res = await rawRequest(nginx.port, { target: '/admin/orders', headers: [['Host', 'shop.example.com'], bearer(token), ['Cookie', cookies]] });
    expect(res.status).toBe(200);
    expect(app.seen.map((r) => r.headers.cookie)).toEqual([cookies]);
  });

  it.each(['/admin/../public/x', '/admin/orders/%2e%2e/%2e%2e/public/x', '/admin//../public/x'])(
    'never lets %s reach the app, which nginx forwards as sent and the app may read under /admin/',
    async (target) => {
      const res = await viaNginx('GET', target, [['Host', 'shop.example.com']]);
      expect(res.status).not.toBe(200);
      expect(app.seen).toEqual([]);
    },
  );

  it('records the check with the original method and path', async () => {
    const token = idp.sign({ sub: 'alice', permissions: ['orders:delete'] });
    const res = await viaNginx('DELETE', '/orders/%37', [['Host', 'shop.example.com'], bearer(token)]);
    expect(res.status).toBe(200);
    const line = await accessLogLine(gw, res.headers['x-request-id'] ?? '');
    expect({ method: line.method, path: line.path, route: line.route, status: line.status }).toEqual({
      method: 'DELETE',
      path: '/orders/7',
      route: 'orders-delete',
      status: 200,
    });
  });

  it.each(['shop.example.com:@docs.example.com', 'shop.example.com:0', 'shop.example.com:65536'])(
    'never lets Host %s pass a protected path without a token',
    async (host) => {
      const res = await viaNginx('GET', '/admin/orders', [['Host', host]]);
      expect(res.status).not.toBe(200);
      expect(app.seen).toEqual([]);
    },
  );
});

describe('behind plain nginx configured as the docs say', () => {
  let gw: TestGateway;
  let nginx: NginxServer;
  beforeAll(async () => {
    gw = await startTestGateway(gatewayYaml('nginx'));
    nginx = await startNginx(await plainNginxServer(gw.port));
  });
  afterAll(async () => {
    await nginx?.close();
    await gw?.close();
  });

  it('the app sees only the gateway’s identity headers, never the client’s own nor the token', async () => {
    const token = idp.sign({ sub: 'alice', roles: ['admin'] });
    const spoofed: Array<[string, string]> = [
      ['X-User-Email', 'ceo@example.com'], ['X-User-Permissions', 'all'], ['X-User-Scopes', 'admin'], ['X-Auth-Issuer', 'corp'], ['X-User-Roles', 'root'],
    ];
    const res = await rawRequest(nginx.port, { target: '/admin/orders', headers: [['Host', 'shop.example.com'], bearer(token), ...spoofed] });
    expect(res.status).toBe(200);
    const seen = app.seen.map((r) => Object.fromEntries(Object.entries(r.headers).filter(([name]) => /^(x-user-|x-auth-|authorization)/.test(name))));
    expect(seen).toEqual([{ 'x-user-id': 'alice', 'x-user-roles': 'admin' }]);
  });

  it('the app never sees a method override: authgate checked the method the client sent', async () => {
    const token = idp.sign({ sub: 'alice', permissions: ['orders:read'] });
    const overrides: Array<[string, string]> = [['X-HTTP-Method-Override', 'DELETE'], ['X-HTTP-Method', 'DELETE'], ['X-Method-Override', 'DELETE']];
    const res = await rawRequest(nginx.port, { method: 'GET', target: '/orders/7', headers: [['Host', 'shop.example.com'], bearer(token), ...overrides] });
    expect(res.status).toBe(200);
    expect(app.seen.map((r) => [r.method, Object.keys(r.headers).filter((name) => name.includes('method'))])).toEqual([['GET', []]]);
  });
});

describe('behind ingress-nginx, a host the check must not take at its word', () => {
  let gw: TestGateway;
  let nginx: NginxServer;
  beforeAll(async () => {
    gw = await startTestGateway(gatewayYaml('ingress-nginx'));
    nginx = await startNginx(await ingressNginxServer(gw.port));
  });
  afterAll(async () => {
    await nginx?.close();
    await gw?.close();
  });

  it('an X-Original-URL authority that is not a host is refused (400, which nginx turns into 500), not read as the host after the @', async () => {
    const res = await rawRequest(nginx.port, { target: '/admin/orders', headers: [['Host', 'shop.example.com:@docs.example.com']] });
    expect(res.status).toBe(500);
    expect(app.seen).toEqual([]);
    const line = await accessLogLine(gw, res.headers['x-request-id'] ?? '');
    expect({ status: line.status, reason: line.reason }).toEqual({ status: 400, reason: 'bad_original_host' });
  });

  it('is refused: nginx routes on the request line, so the check must not decide for the public docs host', async () => {
    const res = await rawRequest(nginx.port, { target: 'http://shop.example.com/admin/orders', headers: [['Host', 'docs.example.com']] });
    expect(res.status).not.toBe(200);
    expect(app.seen).toEqual([]);
    const line = await accessLogLine(gw, res.headers['x-request-id'] ?? '');
    expect({ status: line.status, reason: line.reason }).toEqual({ status: 400, reason: 'original_host_mismatch' });
  });
});
