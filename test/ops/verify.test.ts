import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type RawResponse, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml, startIdp, type Idp } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { accessLogLine, expectRefused, methodNotAllowed, refuses, type Refusal } from '../gateway/auth-fixture.js';

/**
 * SPEC §10: forward-auth as the two ingress controllers call it. Each helper sends the exact header set the
 * controller sends to its auth endpoint: the client's own headers (Authorization, cookies, spoof attempts)
 * plus the controller's description of the original request.
 */

let idp: Idp;
let upstream: RecordingUpstream;
let trusting: TestGateway;
let distrusting: TestGateway;

function yaml(trustedProxies: string): string {
  return `
version: 1
server:
  listen: 127.0.0.1:0
  trusted_proxies: [${trustedProxies}]
  shutdown_grace: 1s
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
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
  - name: orders
    match: { path: "/orders/{id}", methods: [GET, DELETE] }
    upstream: api
`;
}

beforeAll(async () => {
  idp = await startIdp({ keys: ['rsa'] });
  upstream = await startRecordingUpstream();
  trusting = await startTestGateway(yaml('127.0.0.1/32'));
  distrusting = await startTestGateway(yaml('10.0.0.0/8'));
});
afterAll(async () => {
  await trusting?.close();
  await distrusting?.close();
  await upstream?.close();
  await idp?.close();
});
beforeEach(() => {
  upstream.seen.length = 0;
});

interface Original {
  readonly method: string;
  readonly host: string;
  /** Request target as the client sent it (path and query). */
  readonly uri: string;
  readonly clientHeaders?: ReadonlyArray<readonly [string, string]>;
}

type Caller = (gw: TestGateway, original: Original) => Promise<RawResponse>;

/** ingress-nginx `auth-url`: a GET subrequest with X-Original-* (nginx's $request_uri is not normalized). */
const ingressNginx: Caller = (gw, o) =>
  rawRequest(gw.port, {
    method: 'GET',
    target: '/_authgate/verify',
    headers: [
      ['Host', 'authgate.auth.svc.cluster.local'],
      ['X-Original-URI', o.uri],
      ['X-Original-Method', o.method],
      ['X-Original-URL', `https://${o.host}${o.uri}`],
      ['X-Scheme', 'https'],
      ['X-Sent-From', 'nginx-ingress-controller'],
      ['X-Real-IP', '203.0.113.7'],
      ['X-Forwarded-For', '203.0.113.7'],
      ['X-Auth-Request-Redirect', o.uri],
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

const callers = [
  { controller: 'ingress-nginx', call: ingressNginx },
  { controller: 'Traefik', call: traefik },
];

describe.each(callers)('forward-auth as $controller calls it', ({ call }) => {
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
    { case: 'a dot-segment climb to a protected path', uri: '/public/../admin/users', method: 'GET', host: 'shop.test', roles: ['user'], status: 403 },
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

  it('normalizes the original URI before routing: a dot-segment climb lands on the route it resolves to', async () => {
    const res = await call(trusting, {
      method: 'GET',
      host: 'shop.test',
      uri: '/public/../admin/users',
      clientHeaders: [['Authorization', `Bearer ${idp.sign({ sub: 'alice', roles: ['admin'] })}`]],
    });
    expect(res.status).toBe(200);
    expect(res.headers['x-user-id']).toBe('alice');
    const line = await accessLogLine(trusting, res.headers['x-request-id'] ?? '');
    expect({ route: line.route, path: line.path }).toEqual({ route: 'admin', path: '/admin/users' });
  });

  it('refuses the check from a peer outside trusted_proxies, whatever it claims (403)', async () => {
    const token = idp.sign({ sub: 'alice', roles: ['admin'] });
    const res = await call(distrusting, { method: 'GET', host: 'shop.test', uri: '/public/x', clientHeaders: [['Authorization', `Bearer ${token}`]] });
    await expectRefused(distrusting, upstream, res, untrustedForwardAuth, [token]);
    expect(res.headers['x-user-id']).toBeUndefined();
  });
});

const untrustedForwardAuth: Refusal = {
  status: 403,
  error: 'forbidden',
  description: 'Forward-auth requests are accepted only from trusted proxies',
  wwwAuthenticate: undefined,
  reason: 'untrusted_forward_auth',
};

it('answers 400 when a trusted proxy does not say which request it asks about', async () => {
  const token = idp.sign();
  const description = 'The original request URI is missing';
  const noOriginalUri: Refusal = {
    status: 400,
    error: 'invalid_request',
    description,
    wwwAuthenticate: `Bearer realm="authgate", error="invalid_request", error_description="${description}"`,
    reason: 'no_original_uri',
  };
  await refuses(trusting, upstream, { target: '/_authgate/verify', headers: [['Authorization', `Bearer ${token}`]] }, noOriginalUri, [token]);
});

it('answers 405 to a method other than GET or POST on the verify endpoint', async () => {
  await refuses(trusting, upstream, { method: 'PUT', target: '/_authgate/verify', headers: [['X-Forwarded-Uri', '/public/x']] }, methodNotAllowed);
});
