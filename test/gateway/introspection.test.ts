import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { parseConfig, formatProblem } from '../../src/config/load.js';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { CLIENTS, startOidcProvider, type OidcProvider } from '../helpers/oidc-provider.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { bearer, expectRefused, insufficientScope, invalidToken, refuses, unboundToken, type Refusal } from './auth-fixture.js';

/**
 * Opaque tokens through a running gateway: a certified OpenID provider (oidc-provider) introspects them, and a
 * loopback endpoint gives the answers that provider never gives (an active token past its exp, a refresh token).
 */

const AUDIENCE = 'api://orders';
const SCRIPTED_ISSUER = 'https://scripted.example';

const unavailable: Refusal = {
  status: 503,
  error: 'service_unavailable',
  description: 'The token introspection endpoint is unavailable',
  wwwAuthenticate: undefined,
  reason: 'introspection_unavailable',
};

let op: OidcProvider;
/** `hold`: tokens with this prefix get their answer only once `release` is called. */
let scripted: { server: Server; url: string; answers: Map<string, object>; calls: number; hold: string; held: (() => void)[] };
let upstream: RecordingUpstream;
let gw: TestGateway;

function gatewayYaml(): string {
  return `
version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  op:
    issuer: ${op.issuer}
    introspection:
      endpoint: ${op.introspectionEndpoint}
      client_id: ${CLIENTS.basic}
      client_secret: \${INTROSPECTION_SECRET}
      cache: { max_ttl: 5m, negative_ttl: 10s, max_entries: 1000 }
    audiences: [${AUDIENCE}]
  scripted:
    issuer: ${SCRIPTED_ISSUER}
    introspection: { endpoint: ${scripted.url}, client_id: gw, client_secret: s, auth: client_secret_post, max_concurrent: 1 }
    audiences: [${AUDIENCE}]
upstreams:
  api: { url: ${upstream.url}, timeout: 2s }
identity:
  headers:
    X-Client-Id: client_id
    X-User-Scopes: scopes
    X-Auth-Issuer: issuer_name
  strip: ["X-User-*", "X-Auth-*", "X-Client-*"]
routes:
  - name: scripted
    match: { path: /scripted/** }
    upstream: api
    issuers: [scripted]
  - name: write
    match: { path: /write/** }
    upstream: api
    issuers: [op]
    require: { scopes: [orders:write] }
  - name: api
    match: { path: /** }
    upstream: api
    issuers: [op]
`;
}

async function startScripted(): Promise<typeof scripted> {
  const answers = new Map<string, object>();
  const state = { server: undefined as unknown as Server, url: '', answers, calls: 0, hold: 'held-', held: [] as (() => void)[] };
  state.server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      state.calls += 1;
      const token = new URLSearchParams(body).get('token') ?? '';
      const answer = (): void => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answers.get(token) ?? { active: false }));
      if (token.startsWith(state.hold)) state.held.push(answer);
      else answer();
    });
  });
  state.server.listen(0, '127.0.0.1');
  await once(state.server, 'listening');
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}/introspect`;
  return state;
}

async function introspections(result: string): Promise<number> {
  const { values } = await gw.metrics.introspection.get();
  return values.filter((value) => value.labels.result === result).reduce((sum, value) => sum + value.value, 0);
}

beforeAll(async () => {
  [op, scripted, upstream] = await Promise.all([startOidcProvider(), startScripted(), startRecordingUpstream()]);
  gw = await startTestGateway(gatewayYaml(), { INTROSPECTION_SECRET: op.secret });
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([upstream?.close(), op?.close(), new Promise((resolve) => scripted?.server.close(resolve))]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

describe('opaque tokens introspected at a certified OpenID provider', () => {
  it('forwards an active token with the identity the provider reported', async () => {
    const token = await op.issueAccessToken(AUDIENCE);
    const res = await rawRequest(gw.port, { target: '/orders', headers: [bearer(token)] });
    expect(res.status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
    const seen = upstream.seen[0]!.headers;
    expect({ client: seen['x-client-id'], scopes: seen['x-user-scopes'], issuer: seen['x-auth-issuer'] })
      .toEqual({ client: CLIENTS.issuer, scopes: 'orders:read', issuer: 'op' });
    expect(seen.authorization).toBeUndefined();
  });

  it('refuses a token the provider does not know (inactive)', async () => {
    const token = 'an-opaque-token-nobody-issued-0123456789';
    await refuses(gw, upstream, { target: '/orders', headers: [bearer(token)] }, invalidToken('inactive', 'introspection_inactive'), [token]);
  });

  it('refuses a token revoked at the provider', async () => {
    const token = await op.issueAccessToken(AUDIENCE);
    await op.revoke(token);
    await refuses(gw, upstream, { target: '/orders', headers: [bearer(token)] }, invalidToken('inactive', 'introspection_inactive'), [token]);
  });

  it('refuses a token issued for another audience', async () => {
    const token = await op.issueAccessToken('api://billing');
    await refuses(gw, upstream, { target: '/orders', headers: [bearer(token)] }, invalidToken('audience', 'introspection_audience'), [token]);
  });

  it('a cached active token still meets the route rules on every request: 403 where it lacks the scope', async () => {
    const token = await op.issueAccessToken(AUDIENCE);
    expect((await rawRequest(gw.port, { target: '/orders', headers: [bearer(token)] })).status).toBe(200);
    const before = op.introspections;
    upstream.seen.length = 0;
    await refuses(gw, upstream, { target: '/write/orders', headers: [bearer(token)] }, insufficientScope('scopes', ['orders:write']), [token]);
    expect(op.introspections).toBe(before);
  });

  it('asks the provider once for a token used again and again', async () => {
    const token = await op.issueAccessToken(AUDIENCE);
    const before = op.introspections;
    for (let i = 0; i < 5; i++) expect((await rawRequest(gw.port, { target: '/orders', headers: [bearer(token)] })).status).toBe(200);
    expect(op.introspections - before).toBe(1);
  });
});

describe('answers the certified provider never gives', () => {
  it('refuses an active answer whose exp has passed', async () => {
    const token = 'scripted-expired-token-0123456789';
    scripted.answers.set(token, { active: true, iss: SCRIPTED_ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) - 3600 });
    await refuses(gw, upstream, { target: '/scripted/x', headers: [bearer(token)] }, invalidToken('expired', 'introspection_expired'), [token]);
  });

  it('refuses a refresh token', async () => {
    const token = 'scripted-refresh-token-0123456789';
    scripted.answers.set(token, { active: true, iss: SCRIPTED_ISSUER, aud: AUDIENCE, token_use: 'refresh_token' });
    await refuses(gw, upstream, { target: '/scripted/x', headers: [bearer(token)] }, invalidToken('type', 'introspection_type'), [token]);
  });

  it('refuses an introspected token bound to a DPoP key when it comes as Bearer', async () => {
    const token = 'scripted-dpop-bound-token-0123456789';
    scripted.answers.set(token, { active: true, iss: SCRIPTED_ISSUER, aud: AUDIENCE, cnf: { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' } });
    await refuses(gw, upstream, { target: '/scripted/x', headers: [bearer(token)] }, unboundToken('dpop_bound_token_as_bearer'), [token]);
  });

  it("never sends another issuer's JWT to the introspection endpoint", async () => {
    const before = scripted.calls;
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL290aGVyLmV4YW1wbGUifQ.c2lnbmF0dXJl';
    await refuses(gw, upstream, { target: '/scripted/x', headers: [bearer(jwt)] }, invalidToken('issuer', 'unknown_issuer'), [jwt]);
    expect(scripted.calls).toBe(before);
  });

  it('introspects the JWTs of an issuer that has no keys of its own', async () => {
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL3NjcmlwdGVkLmV4YW1wbGUiLCJzdWIiOiJ4In0.c2lnbmF0dXJl';
    scripted.answers.set(jwt, { active: true, iss: SCRIPTED_ISSUER, aud: AUDIENCE, client_id: 'jwt-client' });
    const before = scripted.calls;
    const res = await rawRequest(gw.port, { target: '/scripted/x', headers: [bearer(jwt)] });
    expect(res.status).toBe(200);
    expect(upstream.seen[0]?.headers['x-client-id']).toBe('jwt-client');
    expect(scripted.calls).toBe(before + 1);
  });
});

describe('a flood of distinct opaque tokens', () => {
  async function cacheLookups(result: string): Promise<number> {
    const { values } = await gw.metrics.introspectionCache.get();
    return values.find((value) => value.labels.issuer === 'scripted' && value.labels.result === result)?.value ?? 0;
  }

  it('past max_concurrent asking and as many waiting, an uncached token gets 503 at once, unforwarded', async () => {
    const [first, second] = ['held-token-0123456789-a', 'held-token-0123456789-b'];
    for (const token of [first, second]) scripted.answers.set(token, { active: true, iss: SCRIPTED_ISSUER, aud: AUDIENCE });
    const misses = await cacheLookups('miss');
    const asking = rawRequest(gw.port, { target: '/scripted/a', headers: [bearer(first)] });
    const waiting = rawRequest(gw.port, { target: '/scripted/b', headers: [bearer(second)] });
    // Both reached the introspector: one asks (and is held), one waits its turn.
    await vi.waitFor(async () => expect(await cacheLookups('miss')).toBe(misses + 2));
    const flood = 'held-token-0123456789-c';
    const res = await rawRequest(gw.port, { target: '/scripted/c', headers: [bearer(flood)] });
    expect(res.headers['retry-after']).toBe('5');
    await expectRefused(gw, upstream, res, unavailable, [flood]);
    expect(await cacheLookups('shed')).toBe(1);
    scripted.hold = 'nothing held from now on';
    for (const answer of scripted.held.splice(0)) answer();
    expect([(await asking).status, (await waiting).status]).toEqual([200, 200]);
  });
});

describe('the provider down', () => {
  it('cached tokens keep working, uncached ones get 503 with Retry-After, until it is back', async () => {
    const cached = await op.issueAccessToken(AUDIENCE);
    const uncached = await op.issueAccessToken(AUDIENCE);
    expect((await rawRequest(gw.port, { target: '/orders', headers: [bearer(cached)] })).status).toBe(200);
    await op.stop();
    try {
      upstream.seen.length = 0;
      expect((await rawRequest(gw.port, { target: '/orders', headers: [bearer(cached)] })).status).toBe(200);
      expect(upstream.seen).toHaveLength(1);
      upstream.seen.length = 0;
      const res = await rawRequest(gw.port, { target: '/orders', headers: [bearer(uncached)] });
      expect(res.headers['retry-after']).toBe('5');
      await expectRefused(gw, upstream, res, unavailable, [uncached]);
      expect(await introspections('unavailable')).toBeGreaterThan(0);
    } finally {
      await op.start();
    }
    expect((await rawRequest(gw.port, { target: '/orders', headers: [bearer(uncached)] })).status).toBe(200);
  });
});

describe('authgate explain', () => {
  async function explain(token: string, target: string): Promise<{ code: number | undefined; out: string }> {
    const file = join(await mkdtemp(join(tmpdir(), 'authgate-explain-')), 'gateway.yaml');
    await writeFile(file, gatewayYaml().replace('\${INTROSPECTION_SECRET}', op.secret));
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    // `--token=`: an opaque token may begin with `-`, which a separate argument would have read as an option.
    const code = await main(['explain', '-c', file, `--token=${token}`, 'GET', target], { stdout, stderr: new PassThrough() });
    return { code, out };
  }

  it('shows what the introspection endpoint said about a token', async () => {
    const active = await explain(await op.issueAccessToken(AUDIENCE), '/orders');
    expect(active.code).toBe(0);
    expect(active.out).toContain('pass  authenticate issuer op');
    expect(active.out).toContain(`x-client-id: ${CLIENTS.issuer}`);
    const token = 'scripted-refresh-token-for-explain';
    scripted.answers.set(token, { active: true, iss: SCRIPTED_ISSUER, aud: AUDIENCE, token_type: 'refresh_token' });
    const refused = await explain(token, '/scripted/x');
    expect(refused.code).toBe(3);
    expect(refused.out).toContain('FAIL  authenticate introspection_type (header Authorization): the introspection endpoint of issuer scripted answered active, for a refresh token');
    expect(refused.out).not.toContain(token);
  });
});

describe('introspection config', () => {
  const base = (routeIssuers: string) => `
version: 1
server: { listen: 127.0.0.1:0 }
issuers:
  a:
    issuer: https://a.example
    introspection: { endpoint: https://a.example/introspect, client_id: gw, client_secret: s }
    audiences: [api]
  b:
    issuer: https://b.example
    jwks_uri: https://b.example/jwks
    introspection: { endpoint: https://b.example/introspect, client_id: gw, client_secret: s }
    audiences: [api]
upstreams:
  api: { url: http://127.0.0.1:9 }
routes:
  - name: both
    match: { path: /** }
    upstream: api${routeIssuers}
`;

  it('refuses a route that accepts two introspecting issuers, naming the route', () => {
    const { problems } = parseConfig(base(''), 'gateway.yaml', {});
    expect(problems.map(formatProblem)).toEqual([
      'gateway.yaml:17:5: routes[0]: route "both" accepts two issuers with introspection (a, b) (a route without issuers: accepts every issuer): an opaque token could go to either; list one of them in the route\'s issuers',
    ]);
  });

  it('accepts introspection alone or beside a key source when each route has one introspecting issuer', () => {
    const { config, problems } = parseConfig(base('\n    issuers: [b]'), 'gateway.yaml', {});
    expect(problems.map(formatProblem)).toEqual([]);
    expect(config?.issuers.get('a')?.keys).toBeUndefined();
    expect(config?.issuers.get('b')?.keys).toEqual({ kind: 'jwks_uri', url: 'https://b.example/jwks' });
  });
});
