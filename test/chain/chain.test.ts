import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';
import { Context } from '../../src/chain/context.js';
import { decide } from '../../src/chain/run.js';
import type { Trace } from '../../src/chain/verdict.js';
import { buildRuntime, closeRuntime, startRuntime, type Runtime } from '../../src/server/runtime.js';
import type { Authentication, Authenticator, MechanismType } from '../../src/chain/kinds.js';
import { registry } from '../../src/plan/registry.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import { createStore, type Store } from '../../src/store/index.js';

/**
 * The chain as a table: request facts and one config in, the verdict of every step out. No sockets: this pins
 * what each step decides, in which order, independent of the listener that carries the request.
 */
const SECRET = 'chain-table-secret-0123456789-abcdefghijkl';
const ISSUER = 'https://legacy.example.com';

/** The signing key of the identity assertion, written before the config is parsed. */
const ASSERTION_KEY = join(mkdtempSync(join(tmpdir(), 'authgate-chain-')), 'assertion.pem');
writeFileSync(ASSERTION_KEY, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));

const YAML = `
version: 1
server: { listen: 127.0.0.1:0, allowed_hosts: [api.example.com] }
tokens:
  - header: Authorization
  - query: access_token
identity:
  headers: { X-User-Id: subject, X-User-Roles: roles, X-Issuer-Name: issuer_name }
  assertion: { keys: [{ file: ${ASSERTION_KEY} }], issuer: https://gateway.example.com, fields: [subject, roles] }
issuers:
  legacy: { issuer: ${ISSUER}, secret: ${SECRET}, audiences: [api] }
  other: { issuer: https://other.example.com, secret: ${SECRET}-other, audiences: [api] }
upstreams: { api: { url: "http://127.0.0.1:1" } }
rate_limits:
  one-per-ip: { key: ip, limit: 1, window: 1m }
routes:
  - { name: public, match: { path: /public/** }, upstream: api, auth: none }
  - { name: limited, match: { path: /limited/** }, upstream: api, auth: none, rate_limit: one-per-ip }
  - name: admin
    match: { path: /admin/** }
    upstream: api
    require: { roles: [admin] }
  - name: optional
    match: { path: /optional/** }
    upstream: api
    auth: optional
    require: { roles: [user] }
  - name: other-only
    match: { path: /other/** }
    upstream: api
    issuers: [other]
  - name: cors
    match: { path: /cors/** }
    upstream: api
    cors: { origins: ["https://app.example.com"], methods: [GET] }
  - name: tenant
    match: { path: "/tenants/{tenant}/**" }
    upstream: api
    require: { expr: 'claims.tenant == params.tenant && "write" in identity.permissions' }
  - name: owner
    match: { path: "/docs/{owner}/{id}" }
    upstream: api
    require: { expr: 'params.owner == identity.subject || "admin" in identity.roles' }
  - { name: typed, match: { path: /typed }, upstream: api, require: { expr: 'claims.level > 2' } }
  - { name: non-boolean, match: { path: /non-boolean }, upstream: api, require: { expr: 'claims.flag' } }
  - name: request
    match: { path: /request }
    upstream: api
    require: { expr: 'request.method == "GET" && request.query.v[0] == "1" && request.headers["x-team"] == "blue" && !("x-user-id" in request.headers)' }
  - { name: api, match: { path: /** }, upstream: api }
`;

let config: GatewayConfig;
let runtime: Runtime;
let store: Store;
const metrics = new Metrics();

beforeAll(async () => {
  const loaded = parseConfig(YAML, 'chain.yaml');
  if (!loaded.config) throw new Error(JSON.stringify(loaded.problems));
  config = loaded.config;
  const logger = createLogger('silent');
  store = createStore({ redis: undefined, prefix: 'chain:' }, config.rateLimits, { logger, metrics });
  runtime = buildRuntime(config, { logger, metrics, store });
  await Promise.all([startRuntime(runtime), store.ready()]);
  await store.revocations.revokeJti('revoked-jti', Math.floor(Date.now() / 1000) + 600, ISSUER);
});
afterAll(async () => {
  if (runtime) closeRuntime(runtime);
  await store?.close();
});

function token(claims: Record<string, unknown>, secret = SECRET, issuer = ISSUER): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(issuer)
    .setAudience('api')
    .setSubject('alice')
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .sign(new TextEncoder().encode(secret));
}

interface Row {
  readonly method?: string;
  readonly target: string;
  readonly host?: string;
  readonly headers?: Record<string, string | string[]>;
  readonly upgrade?: boolean;
}

type Verdict =
  | { readonly status: number; readonly reason: string | undefined }
  | { readonly forwarded: string; readonly identityHeaders: Record<string, unknown> };

interface Walked {
  readonly steps: [string, boolean][];
  readonly verdict: Verdict;
}

function contextOf(row: Row): Context {
  const host = row.host ?? 'api.example.com';
  const headers: IncomingHttpHeaders = { host };
  const headersDistinct: NodeJS.Dict<string[]> = { host: [host] };
  for (const [name, value] of Object.entries(row.headers ?? {})) {
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
    headersDistinct[name] = Array.isArray(value) ? value : [value];
  }
  return new Context({
    method: row.method ?? 'GET',
    target: row.target,
    host,
    headers,
    headersDistinct,
    peerIp: '192.0.2.7',
    trustedPeer: false,
    proto: 'https',
    transport: row.upgrade ? 'upgrade' : 'request',
    requestId: 'chain-row',
  });
}

function identityHeadersOf(headers: OutgoingHttpHeaders): Record<string, unknown> {
  return { 'x-user-id': headers['x-user-id'], 'x-user-roles': headers['x-user-roles'], 'x-issuer-name': headers['x-issuer-name'] };
}

/** One request through the chain as the listener runs it. */
function decideRow(row: Row): Promise<Walked> {
  return walk(runtime, row);
}

async function walk(through: Runtime, row: Row): Promise<Walked> {
  const steps: [string, boolean][] = [];
  const trace: Trace = (stage, ok) => steps.push([stage, ok]);
  const ctx = contextOf(row);
  const verdict = await decide(through.head, ctx, trace);
  if (!verdict.ok) return { steps, verdict: { status: verdict.error.status, reason: verdict.reason } };
  if (verdict.answer) return { steps, verdict: { status: verdict.answer.status, reason: undefined } };
  return { steps, verdict: { forwarded: ctx.path + ctx.query, identityHeaders: identityHeadersOf(ctx.upstreamHeaders ?? {}) } };
}

const NO_IDENTITY = { 'x-user-id': undefined, 'x-user-roles': undefined, 'x-issuer-name': undefined };

describe('the chain, step by step', () => {
  it('a public route forwards without identity headers', async () => {
    expect(await decideRow({ target: '/public/a?x=1' })).toEqual({
      steps: [['normalize', true], ['route', true], ['inject', true]],
      verdict: { forwarded: '/public/a?x=1', identityHeaders: NO_IDENTITY },
    });
  });

  it('no token on a protected route: 401 no_token', async () => {
    expect(await decideRow({ target: '/api/a' })).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', false]],
      verdict: { status: 401, reason: 'no_token' },
    });
  });

  it('a verified token passes with its identity headers', async () => {
    const bearer = `Bearer ${await token({ roles: ['admin', 'ops'] })}`;
    expect(await decideRow({ target: '/admin/x', headers: { authorization: bearer } })).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', true], ['revocation', true], ['authorize', true], ['inject', true]],
      verdict: { forwarded: '/admin/x', identityHeaders: { 'x-user-id': 'alice', 'x-user-roles': 'admin,ops', 'x-issuer-name': 'legacy' } },
    });
  });

  it('a role missing: 403 rule_roles', async () => {
    const bearer = `Bearer ${await token({ roles: ['user'] })}`;
    expect(await decideRow({ target: '/admin/x', headers: { authorization: bearer } })).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', true], ['revocation', true], ['authorize', false]],
      verdict: { status: 403, reason: 'rule_roles' },
    });
  });

  it('two Authorization headers: 400 multiple_authorization_headers', async () => {
    const bearer = `Bearer ${await token({})}`;
    expect(await decideRow({ target: '/api/a', headers: { authorization: [bearer, bearer] } })).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', false]],
      verdict: { status: 400, reason: 'multiple_authorization_headers' },
    });
  });

  it('a query token on a plain request: 400 query_token_not_upgrade', async () => {
    expect(await decideRow({ target: `/api/a?access_token=${await token({})}` })).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', false]],
      verdict: { status: 400, reason: 'query_token_not_upgrade' },
    });
  });

  it('a query token on an upgrade passes and is cut from the forwarded query', async () => {
    const row = { target: `/api/ws?a=1&access_token=${await token({})}&b=2`, upgrade: true };
    expect(await decideRow(row)).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', true], ['revocation', true], ['inject', true]],
      verdict: { forwarded: '/api/ws?a=1&b=2', identityHeaders: { 'x-user-id': 'alice', 'x-user-roles': undefined, 'x-issuer-name': 'legacy' } },
    });
  });

  it('a revoked jti: 401 revoked', async () => {
    const bearer = `Bearer ${await token({ jti: 'revoked-jti' })}`;
    expect(await decideRow({ target: '/api/a', headers: { authorization: bearer } })).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', true], ['revocation', false]],
      verdict: { status: 401, reason: 'revoked' },
    });
  });

  it('an IP limit of one: the second request is 429', async () => {
    expect((await decideRow({ target: '/limited/a' })).verdict).toEqual({ forwarded: '/limited/a', identityHeaders: NO_IDENTITY });
    expect(await decideRow({ target: '/limited/a' })).toEqual({
      steps: [['normalize', true], ['route', true], ['rate_limit', false]],
      verdict: { status: 429, reason: 'rate_limit_one-per-ip' },
    });
  });

  it('a target climbing out of the root: 400 bad_target', async () => {
    expect(await decideRow({ target: '/a/%2e%2e/..' })).toEqual({
      steps: [['normalize', false]],
      verdict: { status: 400, reason: 'bad_target' },
    });
  });

  it('a host outside allowed_hosts: 421 host_not_allowed', async () => {
    expect(await decideRow({ target: '/public/a', host: 'evil.example.com' })).toEqual({
      steps: [['host', false]],
      verdict: { status: 421, reason: 'host_not_allowed' },
    });
  });

  it('an anonymous request on an optional route with rules: 401 no_token', async () => {
    expect(await decideRow({ target: '/optional/a' })).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', true], ['authorize', false]],
      verdict: { status: 401, reason: 'no_token' },
    });
  });

  it('a token of an issuer the route does not accept: 401 issuer_not_allowed', async () => {
    const bearer = `Bearer ${await token({})}`;
    expect(await decideRow({ target: '/other/a', headers: { authorization: bearer } })).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', false]],
      verdict: { status: 401, reason: 'issuer_not_allowed' },
    });
  });

  it('a CORS preflight is answered 204 before authentication', async () => {
    const headers = { origin: 'https://app.example.com', 'access-control-request-method': 'GET' };
    expect(await decideRow({ method: 'OPTIONS', target: '/cors/a', headers })).toEqual({
      steps: [['normalize', true], ['cors', true]],
      verdict: { status: 204, reason: undefined },
    });
  });

  it('a WebSocket handshake under the reserved prefix: 404 no_route, whatever route would take it', async () => {
    expect(await decideRow({ target: '/_authgate/verify', upgrade: true })).toEqual({
      steps: [],
      verdict: { status: 404, reason: 'no_route' },
    });
  });

  it('a role holding the list separator: 403 identity_list_separator at inject', async () => {
    const bearer = `Bearer ${await token({ roles: ['admin,ops'] })}`;
    expect(await decideRow({ target: '/api/a', headers: { authorization: bearer } })).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', true], ['revocation', true], ['inject', false]],
      verdict: { status: 403, reason: 'identity_list_separator' },
    });
  });
});

describe('authenticators from the registry, asked in order', () => {
  /** Says "not mine" to everything, and counts how often it was asked. */
  function notMine(asked: { count: number }): MechanismType<Authenticator> {
    const answer: Authentication = { ok: false, refusal: undefined };
    return { create: () => ({ forRoute: () => ({ authenticate: () => ((asked.count += 1), answer) }) }) };
  }

  async function withAuthenticators(authenticators: Readonly<Record<string, MechanismType<Authenticator>>>, row: Row): Promise<Walked> {
    const logger = createLogger('silent');
    const own = buildRuntime(config, { logger, metrics, store }, undefined, { ...registry, authenticators });
    await startRuntime(own);
    try {
      return await walk(own, row);
    } finally {
      closeRuntime(own);
    }
  }

  it('one that says "not mine" passes the credential to the next', async () => {
    const asked = { count: 0 };
    const row = { target: '/api/a', headers: { authorization: `Bearer ${await token({})}` } };
    const walked = await withAuthenticators({ first: notMine(asked), jwt: registry.authenticators.jwt }, row);
    expect(walked.verdict).toEqual({ forwarded: '/api/a', identityHeaders: { 'x-user-id': 'alice', 'x-user-roles': undefined, 'x-issuer-name': 'legacy' } });
    expect(asked.count).toBe(1);
  });

  it('a credential no authenticator claims: 401 unclaimed_credential', async () => {
    const row = { target: '/api/a', headers: { authorization: `Bearer ${await token({})}` } };
    expect(await withAuthenticators({ only: notMine({ count: 0 }) }, row)).toEqual({
      steps: [['normalize', true], ['route', true], ['authenticate', false]],
      verdict: { status: 401, reason: 'unclaimed_credential' },
    });
  });
});

describe('CEL expressions, step by step', () => {
  const FORWARDED_STEPS = [['normalize', true], ['route', true], ['authenticate', true], ['revocation', true], ['authorize', true], ['inject', true]];
  const DENIED_STEPS = [['normalize', true], ['route', true], ['authenticate', true], ['revocation', true], ['authorize', false]];
  it.each([
    { case: 'tenant from the path, with write', target: '/tenants/acme/docs', claims: { tenant: 'acme', permissions: ['write'] }, allowed: true },
    { case: 'another tenant in the path', target: '/tenants/globex/docs', claims: { tenant: 'acme', permissions: ['write'] }, allowed: false },
    { case: 'the tenant, without write', target: '/tenants/acme/docs', claims: { tenant: 'acme', permissions: ['read'] }, allowed: false },
    { case: 'a percent-encoded tenant is compared decoded', target: '/tenants/ac%20me/x', claims: { tenant: 'ac me', permissions: ['write'] }, allowed: true },
    { case: 'the owner', target: '/docs/alice/7', claims: {}, allowed: true },
    { case: 'an admin who is not the owner', target: '/docs/bob/7', claims: { roles: ['admin'] }, allowed: true },
    { case: 'neither owner nor admin', target: '/docs/bob/7', claims: { roles: ['user'] }, allowed: false },
    { case: 'a missing claim (evaluation error)', target: '/tenants/acme/docs', claims: { permissions: ['write'] }, allowed: false },
    { case: 'a claim of the wrong type (evaluation error)', target: '/typed', claims: { level: 'high' }, allowed: false },
    { case: 'a number that holds', target: '/typed', claims: { level: 3 }, allowed: true },
    { case: 'a non-boolean result', target: '/non-boolean', claims: { flag: 'yes' }, allowed: false },
    { case: 'a boolean claim true', target: '/non-boolean', claims: { flag: true }, allowed: true },
    { case: 'method, query and stripped headers', target: '/request?v=1', headers: { 'x-team': 'blue', 'x-user-id': 'mallory' }, claims: {}, allowed: true },
    { case: 'a header that is not there', target: '/request?v=1', headers: { 'x-team': 'red' }, claims: {}, allowed: false },
  ] as { case: string; target: string; claims: Record<string, unknown>; headers?: Record<string, string>; allowed: boolean }[])('$case', async ({ target, claims, headers, allowed }) => {
    const bearer = `Bearer ${await token(claims)}`;
    const walked = await decideRow({ target, headers: { ...headers, authorization: bearer } });
    expect(walked.steps).toEqual(allowed ? FORWARDED_STEPS : DENIED_STEPS);
    if (!allowed) expect(walked.verdict).toEqual({ status: 403, reason: 'rule_expr' });
  });
});

describe('the signed assertion, step by step', () => {
  async function assertionOf(row: Row): Promise<unknown> {
    const ctx = contextOf(row);
    const verdict = await decide(runtime.head, ctx);
    expect(verdict.ok).toBe(true);
    // A CGI upstream reads X_Authgate_Assertion as the same header: no spelling of the client's copy may pass.
    expect(ctx.upstreamHeaders).not.toHaveProperty('x_authgate_assertion');
    return ctx.upstreamHeaders?.['x-authgate-assertion'];
  }

  it('a verified identity gets an assertion for the route and the upstream origin', async () => {
    const bearer = `Bearer ${await token({ roles: ['admin'] })}`;
    const jws = await assertionOf({ target: '/admin/x', headers: { authorization: bearer, 'x-authgate-assertion': 'client-made' } });
    expect(decodeJwt(jws as string)).toMatchObject({ iss: 'https://gateway.example.com', aud: 'http://127.0.0.1:1', sub: 'alice', route: 'admin', roles: ['admin'] });
  });

  it('a public route forwards no assertion, and never the client\'s', async () => {
    expect(await assertionOf({ target: '/public/a', headers: { 'x-authgate-assertion': 'client-made', 'x_authgate_assertion': 'client-made' } })).toBeUndefined();
  });
});
