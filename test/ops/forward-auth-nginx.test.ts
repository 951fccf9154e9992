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
 * The protected location: identity headers from the auth answer, as `auth-response-headers` sets them up. The
 * check carries nginx's `$request_id` (as ingress-nginx's does) and the client gets it back, to find the check's log.
 */
function protectedLocation(authLocation: string): string {
  return `
    location / {
      auth_request ${authLocation};
      auth_request_set $auth_user_id $upstream_http_x_user_id;
      auth_request_set $auth_user_roles $upstream_http_x_user_roles;
      proxy_set_header X-User-Id $auth_user_id;
      proxy_set_header X-User-Roles $auth_user_roles;
      proxy_set_header Host $host;
      add_header X-Request-Id $request_id always;
      proxy_pass http://127.0.0.1:${app.port};
    }`;
}

/** ingress-nginx's `auth-url` location, as its nginx.tmpl writes it. */
function ingressNginxServer(gatewayPort: number): string {
  return `
    location = /_external-auth {
      internal;
      proxy_pass_request_body off;
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
      proxy_pass http://127.0.0.1:${gatewayPort}/_authgate/verify;
    }
${protectedLocation('/_external-auth')}`;
}

/** Plain nginx `auth_request`, as docs/operations.md configures it. */
function plainNginxServer(gatewayPort: number): string {
  return `
    location = /_authgate-check {
      internal;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-Host $host;
      proxy_set_header X-Request-ID $request_id;
      proxy_pass http://127.0.0.1:${gatewayPort}/_authgate/verify;
    }
${protectedLocation('/_authgate-check')}`;
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
    nginx = await startNginx(server(gw.port));
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

  it('records the check with the original method and path', async () => {
    const token = idp.sign({ sub: 'alice', permissions: ['orders:delete'] });
    const res = await viaNginx('DELETE', '/orders/./7', [['Host', 'shop.example.com'], bearer(token)]);
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

describe('behind ingress-nginx, an X-Original-URL whose authority is not a host', () => {
  let gw: TestGateway;
  let nginx: NginxServer;
  beforeAll(async () => {
    gw = await startTestGateway(gatewayYaml('ingress-nginx'));
    nginx = await startNginx(ingressNginxServer(gw.port));
  });
  afterAll(async () => {
    await nginx?.close();
    await gw?.close();
  });

  it('is refused (400, which nginx turns into 500) instead of being read as the host after the @', async () => {
    const res = await rawRequest(nginx.port, { target: '/admin/orders', headers: [['Host', 'shop.example.com:@docs.example.com']] });
    expect(res.status).toBe(500);
    expect(app.seen).toEqual([]);
    const line = await accessLogLine(gw, res.headers['x-request-id'] ?? '');
    expect({ status: line.status, reason: line.reason }).toEqual({ status: 400, reason: 'bad_original_host' });
  });
});
