import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type RawResponse, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml, startIdp, type Idp } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import {
  accessLogLine,
  bearer,
  expectRefused,
  insufficientScope,
  methodNotAllowed,
  noCredentials,
  noRoute,
  refuses,
  type Refusal,
} from '../gateway/auth-fixture.js';

/**
 * SPEC §10: forward-auth as each proxy family calls it. Each helper sends the exact header set the proxy sends to
 * its auth endpoint: the client's own headers (Authorization, cookies, spoof attempts, another family's headers)
 * plus the proxy's description of the original request. Real nginx runs in forward-auth-nginx.test.ts.
 */

let idp: Idp;
let upstream: RecordingUpstream;
function yaml(trustedProxies: string, family: string): string {
  return `
version: 1
server:
  listen: 127.0.0.1:0
  trusted_proxies: [${trustedProxies}]
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
  api: { url: ${upstream.url} }
identity:
  headers:
    X-User-Id: subject
    X-User-Roles: roles
routes:
  - name: public
    match: { path: /public/** }
    upstream: api
    auth: none
  - name: admin
    match: { host: shop.test, path: /admin/** }
    upstream: api
    require: { roles: [admin] }
  - name: docs
    match: { host: docs.test, path: /** }
    upstream: api
    auth: none
  - name: orders-delete
    match: { path: "/orders/{id}", methods: [DELETE] }
    upstream: api
    require: { permissions: [orders:delete] }
    cors: { origins: [https://app.test], methods: [DELETE] }
  - name: orders
    match: { path: "/orders/{id}", methods: [GET, DELETE] }
    upstream: api
`;
}

beforeAll(async () => {
  idp = await startIdp({ keys: ['rsa'] });
  upstream = await startRecordingUpstream();
});
afterAll(async () => {
  await upstream?.close();
  await idp?.close();
});
beforeEach(() => {
  upstream.seen.length = 0;
});

/** A gateway trusting loopback and one trusting only 10/8, both with `forward_auth: family`, for one describe block. */
function gatewaysFor(family: string): { trusting: () => TestGateway; distrusting: () => TestGateway } {
  let trusting: TestGateway;
  let distrusting: TestGateway;
  beforeAll(async () => {
    trusting = await startTestGateway(yaml('127.0.0.1/32', family));
    distrusting = await startTestGateway(yaml('10.0.0.0/8', family));
  });
  afterAll(async () => {
    await trusting?.close();
    await distrusting?.close();
  });
  return { trusting: () => trusting, distrusting: () => distrusting };
}

interface Original {
  readonly method: string;
  readonly host: string;
  /** Request target as the client sent it (path and query). */
  readonly uri: string;
  readonly clientHeaders?: ReadonlyArray<readonly [string, string]>;
}

type Caller = (gw: TestGateway, original: Original) => Promise<RawResponse>;

/** ingress-nginx `auth-url`: a GET subrequest to the auth host with X-Original-URL/-Method and the client's headers. */
const ingressNginx: Caller = (gw, o) =>
  rawRequest(gw.port, {
    method: 'GET',
    target: '/_authgate/verify',
    headers: [
      ['Host', 'authgate.auth.svc.cluster.local'],
      ['X-Original-URL', `https://${o.host}${o.uri}`],
      ['X-Original-Method', o.method],
      ['X-Sent-From', 'nginx-ingress-controller'],
      ['X-Real-IP', '203.0.113.7'],
      ['X-Forwarded-For', '203.0.113.7'],
      ['X-Auth-Request-Redirect', o.uri],
      ...(o.clientHeaders ?? []),
    ],
  });

/** Plain nginx `auth_request`, configured as the docs say: X-Original-URI/-Method/-Host. */
const plainNginx: Caller = (gw, o) =>
  rawRequest(gw.port, {
    method: 'GET',
    target: '/_authgate/verify',
    headers: [
      ['Host', 'authgate'],
      ['X-Original-URI', o.uri],
      ['X-Original-Method', o.method],
      ['X-Original-Host', o.host],
      ...(o.clientHeaders ?? []),
    ],
  });

/** Traefik ForwardAuth: a GET with X-Forwarded-Method/-Proto/-Host/-Uri and the client's headers. */
const traefik: Caller = (gw, o) =>
  rawRequest(gw.port, {
    method: 'GET',
    target: '/_authgate/verify',
    headers: [
      ['Host', 'authgate:8080'],
      ['X-Forwarded-Method', o.method],
      ['X-Forwarded-Proto', 'https'],
      ['X-Forwarded-Host', o.host],
      ['X-Forwarded-Uri', o.uri],
      ['X-Forwarded-For', '203.0.113.7'],
      ...(o.clientHeaders ?? []),
    ],
  });

/**
 * Envoy ext_authz HTTP service (`path_prefix: /_authgate/verify`): the original method, the original authority as
 * Host, the prefix followed by the original path, no body, and the client's headers.
 */
const envoy: Caller = (gw, o) =>
  rawRequest(gw.port, {
    method: o.method,
    target: `/_authgate/verify${o.uri}`,
    headers: [
      ['Host', o.host],
      ['X-Forwarded-Proto', 'https'],
      ['X-Forwarded-For', '203.0.113.7'],
      ['X-Request-Id', randomUUID()],
      ['Content-Length', '0'],
      ...(o.clientHeaders ?? []),
    ],
  });

/** `own`: the headers of EVERY_FAMILY_SPOOF the proxy sets itself (overwriting the client's). */
const callers = [
  { controller: 'ingress-nginx', family: 'ingress-nginx', call: ingressNginx, own: ['X-Original-URL', 'X-Original-Method'] },
  { controller: 'plain nginx', family: 'nginx', call: plainNginx, own: ['X-Original-URI', 'X-Original-Method', 'X-Original-Host'] },
  { controller: 'Traefik', family: 'traefik', call: traefik, own: ['X-Forwarded-Uri', 'X-Forwarded-Method', 'X-Forwarded-Host', 'X-Forwarded-Proto'] },
  { controller: 'Envoy', family: 'envoy', call: envoy, own: ['X-Forwarded-Proto'] },
];

function spoofsBesides(own: readonly string[]): Array<readonly [string, string]> {
  return EVERY_FAMILY_SPOOF.filter(([name]) => !own.includes(name));
}

/**
 * Every family's description of a harmless request (GET /public/x on the public docs.test), as a client would add
 * it: a header the proxy in front does not set reaches the auth endpoint as the client wrote it.
 */
const EVERY_FAMILY_SPOOF: ReadonlyArray<readonly [string, string]> = [
  ['X-Forwarded-Uri', '/public/x'],
  ['X-Forwarded-Method', 'GET'],
  ['X-Forwarded-Host', 'docs.test'],
  ['X-Forwarded-Proto', 'https'],
  ['X-Original-URI', '/public/x'],
  ['X-Original-URL', 'https://docs.test/public/x'],
  ['X-Original-Method', 'GET'],
  ['X-Original-Host', 'docs.test'],
];

describe.each(callers)('forward-auth as $controller calls it', ({ call, family, own }) => {
  const gateways = gatewaysFor(family);
  let trusting: TestGateway;
  let distrusting: TestGateway;
  beforeAll(() => {
    trusting = gateways.trusting();
    distrusting = gateways.distrusting();
  });

  it('answers 200 with the identity headers for an allowed request, without a body, forwarding nothing', async () => {
    const token = idp.sign({ sub: 'alice', roles: ['admin', 'ops'] });
    const res = await call(trusting, {
      method: 'GET',
      host: 'shop.test',
      uri: '/admin/users?page=2',
      clientHeaders: [['Authorization', `Bearer ${token}`], ['X-User-Id', 'mallory'], ['X_User_Roles', 'root']],
    });
    expect(res.status).toBe(200);
    expect(res.body).toBe('');
    expect(res.headers['x-user-id']).toBe('alice');
    expect(res.headers['x-user-roles']).toBe('admin,ops');
    expect(res.headers['x-request-id']).toBeTruthy();
    expect(upstream.seen).toHaveLength(0);
  });

  it('hands back the client’s cookies without the token cookie, for the proxy to forward instead of its own', async () => {
    const token = idp.sign({ sub: 'alice', roles: ['admin'] });
    const res = await call(trusting, { method: 'GET', host: 'shop.test', uri: '/admin/users', clientHeaders: [['Cookie', `theme=dark; access_token=${token}; lang=en`]] });
    expect(res.status).toBe(200);
    expect(res.headers['x-user-id']).toBe('alice');
    expect(res.headers.cookie).toBe('theme=dark; lang=en');
    expect(res.headers['x-envoy-auth-headers-to-remove'] ?? '').not.toContain('cookie');
  });

  it('leaves no cookie for the upstream when the token cookie was the only one', async () => {
    const token = idp.sign({ sub: 'alice', roles: ['admin'] });
    const res = await call(trusting, { method: 'GET', host: 'shop.test', uri: '/admin/users', clientHeaders: [['Cookie', `access_token=${token}`]] });
    expect(res.status).toBe(200);
    // Envoy is told to remove the header; the others replace it with an empty one, which they do not send.
    if (family === 'envoy') {
      expect(res.headers.cookie).toBeUndefined();
      expect((res.headers['x-envoy-auth-headers-to-remove'] ?? '').split(',')).toContain('cookie');
    } else {
      expect(res.headers.cookie).toBe('');
    }
  });

  it('never lets a CORS preflight through unauthenticated: Envoy relays the answer (204), the others get 403', async () => {
    const preflight = (origin: string): Original => ({
      method: 'OPTIONS', host: 'shop.test', uri: '/orders/7', clientHeaders: [['Origin', origin], ['Access-Control-Request-Method', 'DELETE']],
    });
    const allowed = await call(trusting, preflight('https://app.test'));
    if (family === 'envoy') {
      expect(allowed.status).toBe(204);
      expect(allowed.headers['access-control-allow-origin']).toBe('https://app.test');
    } else {
      // nginx and Traefik would take a 2xx as a pass and send the OPTIONS on to the app.
      expect(allowed.status).toBe(403);
      const line = await accessLogLine(trusting, allowed.headers['x-request-id'] ?? '');
      expect(line.reason).toBe('preflight_at_proxy');
    }
    expect((await call(trusting, preflight('https://evil.test'))).status).toBe(403);
    expect(upstream.seen).toHaveLength(0);
  });

  it('lets an anonymous request through to a public route, without identity headers', async () => {
    const res = await call(trusting, { method: 'POST', host: 'shop.test', uri: '/public/feed', clientHeaders: [['X-User-Id', 'mallory']] });
    expect(res.status).toBe(200);
    expect(res.headers['x-user-id']).toBeUndefined();
    expect(upstream.seen).toHaveLength(0);
  });

  it.each([
    { case: 'no token', uri: '/admin/users', method: 'GET', host: 'shop.test', roles: undefined, status: 401 },
    { case: 'a token without the role', uri: '/admin/users', method: 'GET', host: 'shop.test', roles: ['user'], status: 403 },
    { case: 'another host than the route names', uri: '/admin/users', method: 'GET', host: 'other.test', roles: ['admin'], status: 404 },
    { case: 'a method the route does not take', uri: '/orders/7', method: 'PATCH', host: 'shop.test', roles: [], status: 404 },
    { case: 'a dot-segment climb to a protected path', uri: '/public/../admin/users', method: 'GET', host: 'shop.test', roles: ['user'], status: 400 },
    { case: 'an encoded slash', uri: '/public/..%2fadmin/users', method: 'GET', host: 'shop.test', roles: ['admin'], status: 400 },
    { case: 'matrix parameters', uri: '/admin;jsessionid=x/users', method: 'GET', host: 'shop.test', roles: ['admin'], status: 400 },
  ])('answers the SPEC §7 status for $case ($status)', async ({ uri, method, host, roles, status }) => {
    const clientHeaders: [string, string][] = roles === undefined ? [] : [['Authorization', `Bearer ${idp.sign({ roles })}`]];
    const res = await call(trusting, { method, host, uri, clientHeaders });
    expect(res.status).toBe(status);
    expect(res.headers['x-user-id']).toBeUndefined();
    expect(res.headers['cache-control']).toBe('no-store');
    expect(upstream.seen).toHaveLength(0);
  });

  it.each(['/public/../admin/users', '/admin/users/%2e%2e/%2E%2e/public/x', '/admin//../public/x', '/public/./x', '/admin//users', '/public/x/..?q=1'])(
    'refuses %s, which the app behind the proxy gets as sent and may read as another path than the normalized one (400)',
    async (uri) => {
      const res = await call(trusting, { method: 'GET', host: 'shop.test', uri, clientHeaders: [bearer(idp.sign({ sub: 'alice', roles: ['admin'] }))] });
      expect(res.status).toBe(400);
      expect(res.headers['x-user-id']).toBeUndefined();
      const line = await accessLogLine(trusting, res.headers['x-request-id'] ?? '');
      expect(line.reason).toBe('unnormalized_original');
    },
  );

  it('routes the original URI as normalized when that changes no segment: escaped letters, a trailing slash', async () => {
    const res = await call(trusting, {
      method: 'GET',
      host: 'shop.test',
      uri: '/%61dmin/users/',
      clientHeaders: [['Authorization', `Bearer ${idp.sign({ sub: 'alice', roles: ['admin'] })}`]],
    });
    expect(res.status).toBe(200);
    expect(res.headers['x-user-id']).toBe('alice');
    const line = await accessLogLine(trusting, res.headers['x-request-id'] ?? '');
    expect({ route: line.route, path: line.path }).toEqual({ route: 'admin', path: '/admin/users/' });
  });

  it('refuses the check from a peer outside trusted_proxies, whatever it claims (403)', async () => {
    const token = idp.sign({ sub: 'alice', roles: ['admin'] });
    const res = await call(distrusting, { method: 'GET', host: 'shop.test', uri: '/public/x', clientHeaders: [['Authorization', `Bearer ${token}`]] });
    await expectRefused(distrusting, upstream, res, untrustedForwardAuth, [token]);
    expect(res.headers['x-user-id']).toBeUndefined();
  });

  it('reads only its own proxy’s headers: another family’s, added by a client without a token, cannot turn /admin public', async () => {
    const res = await call(trusting, { method: 'GET', host: 'shop.test', uri: '/admin/orders', clientHeaders: spoofsBesides(own) });
    await expectRefused(trusting, upstream, res, noCredentials);
  });

  it('reads only its own proxy’s method: another family’s GET cannot take a DELETE past a permissions rule', async () => {
    const token = idp.sign({ sub: 'alice', permissions: ['orders:read'] });
    const res = await call(trusting, { method: 'DELETE', host: 'shop.test', uri: '/orders/7', clientHeaders: [bearer(token), ...spoofsBesides(own)] });
    await expectRefused(trusting, upstream, res, insufficientScope('permissions'), [token]);
  });

  it('records the original method and normalized path in the access log and authgate_requests_total', async () => {
    const token = idp.sign({ sub: 'alice', permissions: ['orders:delete'] });
    const res = await call(trusting, { method: 'DELETE', host: 'shop.test', uri: '/orders/%37?x=1', clientHeaders: [bearer(token)] });
    expect(res.status).toBe(200);
    const line = await accessLogLine(trusting, res.headers['x-request-id'] ?? '');
    expect({ method: line.method, path: line.path, route: line.route }).toEqual({ method: 'DELETE', path: '/orders/7', route: 'orders-delete' });
    const samples = (await trusting.metrics.requests.get()).values.filter((v) => v.labels.route === 'orders-delete');
    const methods = samples.map((v) => v.labels.method);
    expect(methods).toContain('DELETE');
    expect(methods).not.toContain('GET');
  });
});

describe('without server.forward_auth', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(yaml('127.0.0.1/32', 'off'));
  });
  afterAll(async () => {
    await gw?.close();
  });

  it.each(callers)('the verify endpoint does not exist: $controller’s check gets 404 like any unknown reserved path', async ({ call }) => {
    const res = await call(gw, { method: 'GET', host: 'shop.test', uri: '/public/x' });
    await expectRefused(gw, upstream, res, noRoute);
  });
});

const untrustedForwardAuth: Refusal = {
  status: 403,
  error: 'forbidden',
  description: 'Forward-auth requests are accepted only from trusted proxies',
  wwwAuthenticate: undefined,
  reason: 'untrusted_forward_auth',
};

function missing(what: string, reason: string): Refusal {
  const description = `The original request ${what} is missing`;
  return {
    status: 400,
    error: 'invalid_request',
    description,
    wwwAuthenticate: `Bearer realm="authgate", error="invalid_request", error_description="${description}"`,
    reason,
  };
}

const badOriginal = (reason: string): Refusal => ({
  status: 400,
  error: 'invalid_request',
  description: 'The request target is invalid',
  wwwAuthenticate: undefined,
  reason,
});

type Headers = ReadonlyArray<readonly [string, string]>;

describe.each([
  {
    family: 'ingress-nginx',
    cases: [
      { case: 'no X-Original-URL', headers: [['X-Original-Method', 'GET'], ['X-Original-URI', '/public/x']], refusal: missing('URI', 'no_original_uri') },
      { case: 'no X-Original-Method', headers: [['X-Original-URL', 'https://shop.test/public/x'], ['X-Forwarded-Method', 'GET']], refusal: missing('method', 'no_original_method') },
      { case: 'a URL with userinfo', headers: [['X-Original-URL', 'http://shop.test:@docs.test/public/x'], ['X-Original-Method', 'GET']], refusal: badOriginal('bad_original_host') },
      { case: 'a URL with port 0', headers: [['X-Original-URL', 'http://shop.test:0/public/x'], ['X-Original-Method', 'GET']], refusal: badOriginal('bad_original_host') },
      { case: 'a URL with port 65536', headers: [['X-Original-URL', 'http://shop.test:65536/public/x'], ['X-Original-Method', 'GET']], refusal: badOriginal('bad_original_host') },
      { case: 'a URL without a path', headers: [['X-Original-URL', 'http://shop.test'], ['X-Original-Method', 'GET']], refusal: badOriginal('bad_original_host') },
      { case: 'a method that is no HTTP method', headers: [['X-Original-URL', 'http://shop.test/public/x'], ['X-Original-Method', 'BREW']], refusal: badOriginal('bad_original_method') },
    ],
  },
  {
    family: 'nginx',
    cases: [
      { case: 'no X-Original-URI', headers: [['X-Original-Method', 'GET'], ['X-Original-URL', 'https://shop.test/public/x']], refusal: missing('URI', 'no_original_uri') },
      { case: 'no X-Original-Method', headers: [['X-Original-URI', '/public/x'], ['X-Forwarded-Method', 'GET']], refusal: missing('method', 'no_original_method') },
      { case: 'a host with userinfo', headers: [['X-Original-URI', '/public/x'], ['X-Original-Method', 'GET'], ['X-Original-Host', 'shop.test:@docs.test']], refusal: badOriginal('bad_original_host') },
    ],
  },
  {
    family: 'traefik',
    cases: [
      { case: 'no X-Forwarded-Uri', headers: [['X-Forwarded-Method', 'GET'], ['X-Forwarded-Host', 'shop.test'], ['X-Forwarded-Proto', 'https'], ['X-Original-URI', '/public/x']], refusal: missing('URI', 'no_original_uri') },
      { case: 'no X-Forwarded-Host', headers: [['X-Forwarded-Method', 'GET'], ['X-Forwarded-Uri', '/public/x'], ['X-Forwarded-Proto', 'https'], ['X-Original-Host', 'shop.test']], refusal: missing('host', 'no_original_host') },
      { case: 'no X-Forwarded-Proto', headers: [['X-Forwarded-Method', 'GET'], ['X-Forwarded-Uri', '/public/x'], ['X-Forwarded-Host', 'shop.test']], refusal: missing('scheme', 'no_original_proto') },
    ],
  },
] as const)('a $family check that does not describe the original request as $family does', ({ family, cases }) => {
  const gateways = gatewaysFor(family);

  it.each(cases as ReadonlyArray<{ case: string; headers: Headers; refusal: Refusal }>)('is refused: $case', async ({ headers, refusal }) => {
    const token = idp.sign({ roles: ['admin'] });
    await refuses(gateways.trusting(), upstream, { target: '/_authgate/verify', headers: [['Host', 'authgate'], bearer(token), ...headers] }, refusal, [token]);
  });

  it('answers 405 to a method other than GET or POST on the verify endpoint', async () => {
    await refuses(gateways.trusting(), upstream, { method: 'PUT', target: '/_authgate/verify', headers: [['X-Forwarded-Uri', '/public/x']] }, methodNotAllowed);
  });
});

describe('forward-auth for ingress-nginx with ?host=$host on the auth-url', () => {
  const gateways = gatewaysFor('ingress-nginx');
  const check = (query: string) => rawRequest(gateways.trusting().port, {
    target: `/_authgate/verify${query}`,
    headers: [['X-Original-URL', 'https://shop.test/public/x'], ['X-Original-Method', 'GET']],
  });

  it('passes when nginx routed on the host the URL names, in any case or with a port', async () => {
    expect((await check('?host=SHOP.test')).status).toBe(200);
  });

  it.each(['?host=docs.test', '?host=shop.test&host=docs.test', '?host=shop.test&host=shop.test'])('refuses %s (400): the routed host is not the URL\'s, or not one', async (query) => {
    const res = await check(query);
    await expectRefused(gateways.trusting(), upstream, res, badOriginal('original_host_mismatch'));
  });
});

describe('forward-auth for Envoy', () => {
  const gateways = gatewaysFor('envoy');

  it('lists the headers Envoy must remove: every identity header it does not set and the client’s spoofed ones', async () => {
    const token = idp.sign({ sub: 'alice', roles: ['admin'] });
    const res = await envoy(gateways.trusting(), {
      method: 'POST',
      host: 'shop.test',
      uri: '/admin/orders',
      clientHeaders: [bearer(token), ['X-User-Id', 'mallory'], ['X_User_Roles', 'root'], ['X-HTTP-Method-Override', 'DELETE'], ['X-Original-URL', '/public/x']],
    });
    expect(res.status).toBe(200);
    expect(res.headers['x-user-id']).toBe('alice');
    const removed = (res.headers['x-envoy-auth-headers-to-remove'] ?? '').split(',').sort();
    expect(removed).toEqual(['authorization', 'x-http-method-override', 'x-original-url', 'x_user_roles']);
    expect(upstream.seen).toHaveLength(0);
  });

  it('has Envoy remove every identity header from an anonymous request to a public route', async () => {
    const res = await envoy(gateways.trusting(), { method: 'GET', host: 'shop.test', uri: '/public/feed', clientHeaders: [['X-User-Id', 'mallory']] });
    expect(res.status).toBe(200);
    expect(res.headers['x-user-id']).toBeUndefined();
    expect((res.headers['x-envoy-auth-headers-to-remove'] ?? '').split(',').sort()).toEqual(['x-user-id', 'x-user-roles']);
  });

  it.each([
    ['/_authgate/verify/../../admin/orders', 'unnormalized_original'],
    ['/_authgate/verify/%2e%2e/%2e%2e/admin/orders', 'unnormalized_original'],
    ['/_authgate/verify/public/..%2f..%2fadmin', 'bad_target'],
  ])('refuses %s: the original path is cut from the raw target before anything is resolved (400)', async (target, reason) => {
    const res = await rawRequest(gateways.trusting().port, { target, headers: [['Host', 'shop.test']] });
    await expectRefused(gateways.trusting(), upstream, res, badOriginal(reason));
  });
});
