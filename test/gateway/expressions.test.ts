import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { signRaw } from '../helpers/tokens.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { accessLogLine, bearer, expectRefused, insufficientScope } from './auth-fixture.js';

const SECRET = 'expressions-test-secret-that-is-long-enough-01';

function token(claims: Record<string, unknown>): string {
  const now = Math.floor(Date.now() / 1000);
  return signRaw('HS256', SECRET, { alg: 'HS256', typ: 'JWT' }, { iss: 'https://idp.test', aud: 'api', sub: 'alice', iat: now, exp: now + 600, ...claims });
}

let upstream: RecordingUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  main: { issuer: https://idp.test, secret: ${SECRET}, algorithms: [HS256], audiences: [api] }
upstreams:
  api: { url: ${upstream.url}, timeout: 2s }
identity:
  headers: { X-User-Id: subject }
routes:
  - name: tenant
    match: { path: "/tenants/{tenant}/**" }
    upstream: api
    require:
      expr: >-
        claims.tenant == params.tenant &&
        "write" in identity.permissions
  - name: owner
    match: { path: "/docs/{owner}/{id}" }
    upstream: api
    require: { expr: 'params.owner == identity.subject || "admin" in identity.roles' }
  - { name: typed, match: { path: /typed }, upstream: api, require: { expr: 'claims.level > 2' } }
  - { name: non-boolean, match: { path: /non-boolean }, upstream: api, require: { expr: 'claims.flag' } }
  - name: spoof
    match: { path: /spoof }
    upstream: api
    require: { expr: '!("x-user-id" in request.headers) && request.query.v == ["1", "2"]' }
`);
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});
beforeEach(() => {
  upstream.seen.length = 0;
});

describe('CEL rules through a real gateway', () => {
  it.each([
    { case: 'tenant from the path, with write', target: '/tenants/acme/orders', claims: { tenant: 'acme', permissions: ['write'] } },
    { case: 'the owner of the document', target: '/docs/alice/7', claims: {} },
    { case: 'an admin who does not own it', target: '/docs/bob/7', claims: { roles: ['admin'] } },
    { case: 'a number claim that holds', target: '/typed', claims: { level: 5 } },
    // A client's X-User-Id is stripped before the expression sees the headers: `!("x-user-id" in …)` holds.
    { case: 'stripped headers and a repeated query parameter', target: '/spoof?v=1&v=2', claims: {}, headers: [['X-User-Id', 'mallory']] as [string, string][] },
    // Names of Object.prototype members are only names: no 500, no type confusion in the evaluator.
    {
      case: 'a query parameter and a header named constructor, __proto__, toString',
      target: '/spoof?v=1&constructor=x&__proto__=y&toString=z&v=2',
      claims: {},
      headers: [['Constructor', 'x'], ['toString', 'y']] as [string, string][],
    },
  ])('allows: $case', async ({ target, claims, headers }) => {
    const res = await rawRequest(gw.port, { target, headers: [bearer(token(claims)), ...(headers ?? [])] });
    expect(res.status).toBe(200);
    expect(upstream.seen.map((seen) => seen.url)).toEqual([target]);
  });

  it.each([
    { case: 'another tenant in the path', target: '/tenants/globex/orders', claims: { tenant: 'acme', permissions: ['write'] }, detail: 'expression is false' },
    { case: 'neither owner nor admin', target: '/docs/bob/7', claims: { roles: ['user'] }, detail: 'expression is false' },
    { case: 'a missing claim', target: '/tenants/acme/orders', claims: { permissions: ['write'] }, detail: 'expression error' },
    { case: 'a claim of another type', target: '/typed', claims: { level: 'high' }, detail: 'expression error' },
    { case: 'a non-boolean result', target: '/non-boolean', claims: { flag: 'yes' }, detail: 'expression yielded a string, not true' },
    { case: 'a query parameter that differs', target: '/spoof?v=1&v=3', claims: {}, detail: 'expression is false' },
    {
      case: 'more query values than an expression is handed (its cost could grow with their square)',
      target: `/spoof?${Array.from({ length: 300 }, (_, i) => `v=${i}`).join('&')}`,
      claims: {},
      detail: 'too large for the expression: more than 256 query values',
    },
  ])('denies with 403 rule_expr, the upstream seeing nothing: $case', async ({ target, claims, detail }) => {
    const jwt = token(claims);
    const res = await rawRequest(gw.port, { target, headers: [bearer(jwt)] });
    await expectRefused(gw, upstream, res, insufficientScope('expr'), [jwt]);
    const line = await accessLogLine(gw, res.headers['x-request-id'] ?? '');
    expect(line.detail).toContain(detail);
  });
});

describe('with path_case: insensitive', () => {
  let insensitive: TestGateway;
  beforeAll(async () => {
    insensitive = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s, path_case: insensitive }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  main: { issuer: https://idp.test, secret: ${SECRET}, algorithms: [HS256], audiences: [api] }
upstreams:
  api: { url: ${upstream.url}, timeout: 2s }
routes:
  - { name: e, match: { path: /e/** }, upstream: api, require: { expr: '!request.path.startsWith("/e/admin")' } }
`);
  });
  afterAll(async () => {
    await insensitive?.close();
  });

  it('a rule on the path sees it as the routes do: /e/ADMIN is /e/admin to an upstream that ignores case', async () => {
    const jwt = token({});
    expect((await rawRequest(insensitive.port, { target: '/e/public/x', headers: [bearer(jwt)] })).status).toBe(200);
    upstream.seen.length = 0;
    const res = await rawRequest(insensitive.port, { target: '/e/ADMIN/x', headers: [bearer(jwt)] });
    await expectRefused(insensitive, upstream, res, insufficientScope('expr'), [jwt]);
  });
});
