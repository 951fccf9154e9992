import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { rawRequest, startTestGateway, type RawResponse, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml, startIdp, type Idp } from '../helpers/idp.js';
import { startRedis, startTcpProxy, type RedisServer } from '../helpers/redis.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/**
 * Revocations, logout and rate limits across replicas: real gateways (startTestGateway) on one real
 * redis-server, a real IdP serving JWKS over HTTP, and a recording upstream. Every request carries a unique
 * `X-Probe` header so "the upstream never saw it" holds even when requests run concurrently.
 */

const ADMIN_TOKEN = 'shared-state-admin-token-0123456789';
/** SPEC §8: a revocation made on one instance holds on all within this. */
const PROPAGATION_DEADLINE_MS = 1_000;
/** ioredis reconnects with backoff capped at 2 s; a resync follows the reconnect. */
const RECONNECT_DEADLINE_MS = 10_000;
const PER_USER_LIMIT = 4;
const LOGIN_LIMIT = 3;
/** `max_keys` of the header-keyed limit on /keyed: small, so a test can go past it. */
const KEYED_MAX_KEYS = 3;

interface GatewayShape {
  readonly redisUrl?: string;
  readonly trustedProxies?: readonly string[];
  readonly perUserLimit?: number;
  /** Adds a `burst` limit (key: subject) of this many requests a minute. */
  readonly burstLimit?: number;
  /** Limits on the /limited route; default [per-user]. */
  readonly limitedRoute?: readonly string[];
}

let prefixCounter = 0;

/** Each gateway pair gets its own key space on the shared redis-server, so tests never share counters. */
function freshPrefix(): string {
  prefixCounter += 1;
  return `shared${prefixCounter}:`;
}

function gatewayYaml(idp: Idp, upstreamUrl: string, prefix: string, shape: GatewayShape): string {
  return `
version: 1
server:
  listen: 127.0.0.1:0
  trusted_proxies: [${(shape.trustedProxies ?? ['10.99.99.99/32']).join(', ')}]
  shutdown_grace: 200ms
admin:
  listen: 127.0.0.1:0
  token: ${ADMIN_TOKEN}
store:
  redis: \${REDIS_URL:-}
  prefix: "${prefix}"
logging: { level: info, access_log: false }
issuers:
${issuerYaml(idp)}
upstreams:
  api: { url: ${upstreamUrl}, timeout: 2s }
rate_limits:
  per-user: { key: subject, limit: ${shape.perUserLimit ?? PER_USER_LIMIT}, window: 1m }
  bulk: { key: subject, limit: 100000, window: 1m }
  login: { key: ip, limit: ${LOGIN_LIMIT}, window: 1m }
  per-client: { key: header.X-Client, limit: 1, window: 1m, max_keys: ${KEYED_MAX_KEYS} }
${shape.burstLimit === undefined ? '' : `  burst: { key: subject, limit: ${shape.burstLimit}, window: 1m }`}
routes:
  - { name: api, match: { path: /api/** }, upstream: api }
  - { name: limited, match: { path: /limited/** }, upstream: api, rate_limit: [${(shape.limitedRoute ?? ['per-user']).join(', ')}] }
  - { name: bulk, match: { path: /bulk/** }, upstream: api, rate_limit: [bulk] }
  - { name: login, match: { path: /login }, upstream: api, auth: none, rate_limit: [login] }
  - { name: keyed, match: { path: /keyed }, upstream: api, auth: none, rate_limit: [per-client] }
  - { name: guarded, match: { path: /guarded/** }, upstream: api, rate_limit: [login] }
`;
}

let idp: Idp;
let upstream: RecordingUpstream;
let redis: RedisServer;
const openGateways: TestGateway[] = [];

beforeAll(async () => {
  [idp, upstream, redis] = await Promise.all([startIdp({ keys: ['rsa'] }), startRecordingUpstream(), startRedis()]);
});
afterEach(async () => {
  await Promise.all(openGateways.splice(0).map((gateway) => gateway.close()));
});
afterAll(async () => {
  await Promise.all([idp?.close(), upstream?.close(), redis?.stop()]);
});

async function startGateway(prefix: string, shape: GatewayShape = {}): Promise<TestGateway> {
  // As in the bundled config: REDIS_URL unset or empty means the in-memory store.
  const env = shape.redisUrl === undefined ? {} : { REDIS_URL: shape.redisUrl };
  const gateway = await startTestGateway(gatewayYaml(idp, upstream.url, prefix, shape), env);
  openGateways.push(gateway);
  return gateway;
}

/** Two replicas on one Redis and one prefix, as a deployment would run them. */
async function startReplicas(redisUrl: string, shape: GatewayShape = {}): Promise<[TestGateway, TestGateway]> {
  const prefix = freshPrefix();
  const a = await startGateway(prefix, { ...shape, redisUrl });
  const b = await startGateway(prefix, { ...shape, redisUrl });
  return [a, b];
}

interface Sent {
  readonly res: RawResponse;
  /** Whether the upstream received this very request. */
  readonly reached: boolean;
}

interface SendOptions {
  readonly token?: string;
  readonly target?: string;
  readonly method?: string;
  readonly headers?: ReadonlyArray<readonly [string, string]>;
}

async function send(gateway: TestGateway, options: SendOptions = {}): Promise<Sent> {
  const probe = randomUUID();
  const headers: (readonly [string, string])[] = [['X-Probe', probe], ...(options.headers ?? [])];
  if (options.token !== undefined) headers.push(['Authorization', `Bearer ${options.token}`]);
  const res = await rawRequest(gateway.port, { method: options.method, target: options.target ?? '/api/thing', headers });
  // The upstream records a request before it answers, so by now it has it if it ever got it.
  return { res, reached: upstream.seen.some((seen) => seen.headers['x-probe'] === probe) };
}

function expectForwarded(sent: Sent): void {
  expect(sent.res.status).toBe(200);
  expect(sent.reached).toBe(true);
}

function expectRefused(sent: Sent, status: number, code: string): void {
  expect(sent.res.status).toBe(status);
  expect(sent.res.json<{ error: string }>().error).toBe(code);
  expect(sent.reached).toBe(false);
}

function expectRevoked(sent: Sent): void {
  expectRefused(sent, 401, 'invalid_token');
  expect(sent.res.headers['www-authenticate']).toContain('The access token has been revoked');
}

function expectRateLimited(sent: Sent, limit: number): void {
  expectRefused(sent, 429, 'rate_limited');
  expect(Number(sent.res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  expect(sent.res.headers['ratelimit-limit']).toBe(String(limit));
  expect(sent.res.headers['ratelimit-remaining']).toBe('0');
  expect(Number(sent.res.headers['ratelimit-reset'])).toBeGreaterThanOrEqual(1);
}

async function adminRevoke(gateway: TestGateway, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${gateway.adminUrl}/revocations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function readiness(gateway: TestGateway): Promise<{ status: number; store: string | undefined }> {
  const res = await fetch(`${gateway.adminUrl}/readyz`);
  const report = (await res.json()) as { checks: { store: { status: string } } };
  return { status: res.status, store: report.checks.store.status };
}

const nowS = (): number => Math.floor(Date.now() / 1000);

/** A fresh user's token; a unique subject keeps rate-limit buckets and subject cut-offs apart between tests. */
function tokenFor(subject = `user-${randomUUID()}`, claims: Record<string, unknown> = {}): { token: string; jti: string; exp: number; subject: string } {
  const jti = randomUUID();
  const exp = nowS() + 300;
  return { token: idp.sign({ sub: subject, jti, exp, ...claims }), jti, exp, subject };
}

/**
 * Polls `gateway` with `token` until it is refused as revoked, failing after the SPEC's 1 s; returns how long the
 * revocation took to arrive, measured from `since`.
 */
async function revocationLatencyMs(gateway: TestGateway, token: string, since: number, deadlineMs = PROPAGATION_DEADLINE_MS): Promise<number> {
  await expect
    .poll(async () => (await send(gateway, { token })).res.status, { timeout: deadlineMs - (performance.now() - since), interval: 5 })
    .toBe(401);
  return performance.now() - since;
}

describe('revocation across two replicas on one Redis', () => {
  it('a jti revoked through instance A’s admin API holds on instance B within 1 s', async () => {
    const [a, b] = await startReplicas(redis.url);
    const { token, jti, exp } = tokenFor();
    expectForwarded(await send(b, { token }));

    const started = performance.now();
    expect((await adminRevoke(a, { jti, exp, issuer: 'idp' })).status).toBe(201);
    const latency = await revocationLatencyMs(b, token, started);
    console.log(`admin revocation on A refused on B after ${latency.toFixed(1)} ms`);

    expectRevoked(await send(b, { token }));
    expectRevoked(await send(a, { token }));
  });

  it('a logout on instance A holds on instance B within 1 s', async () => {
    const [a, b] = await startReplicas(redis.url);
    const { token } = tokenFor();
    expectForwarded(await send(b, { token }));

    const started = performance.now();
    const logout = await send(a, { token, method: 'POST', target: '/_authgate/logout' });
    expect(logout.res.status).toBe(204);
    expect(logout.reached).toBe(false);
    const latency = await revocationLatencyMs(b, token, started);
    console.log(`logout on A refused on B after ${latency.toFixed(1)} ms`);

    expectRevoked(await send(b, { token }));
    expectRevoked(await send(a, { token }));
  });

  it('a subject cut-off refuses the older token and accepts the newer one on both instances', async () => {
    const [a, b] = await startReplicas(redis.url);
    const subject = `user-${randomUUID()}`;
    const cutoff = nowS() - 60;
    const older = tokenFor(subject, { iat: cutoff - 10 }).token;
    const newer = tokenFor(subject, { iat: cutoff + 30 }).token;

    const started = performance.now();
    expect((await adminRevoke(a, { subject, issuer: 'idp', before: cutoff })).status).toBe(201);
    const latency = await revocationLatencyMs(b, older, started);
    console.log(`subject cut-off on A refused on B after ${latency.toFixed(1)} ms`);

    for (const gateway of [a, b]) {
      expectRevoked(await send(gateway, { token: older }));
      expectForwarded(await send(gateway, { token: newer }));
    }
  });
});

describe('rate limits shared across two replicas', () => {
  it('a per-user limit of N on A and B together admits exactly N, then 429 with the RateLimit headers', async () => {
    const [a, b] = await startReplicas(redis.url);
    const { token } = tokenFor();
    const results: Sent[] = [];
    for (let i = 0; i < 2 * PER_USER_LIMIT; i++) results.push(await send(i % 2 === 0 ? a : b, { token, target: '/limited/x' }));

    const admitted = results.slice(0, PER_USER_LIMIT);
    // Remaining counts down across the two instances: one counter, not two.
    expect(admitted.map((sent) => sent.res.headers['ratelimit-remaining'])).toEqual(
      Array.from({ length: PER_USER_LIMIT }, (_, i) => String(PER_USER_LIMIT - 1 - i)),
    );
    for (const sent of admitted) {
      expectForwarded(sent);
      expect(sent.res.headers['ratelimit-limit']).toBe(String(PER_USER_LIMIT));
    }
    for (const sent of results.slice(PER_USER_LIMIT)) expectRateLimited(sent, PER_USER_LIMIT);
    expect(results.filter((sent) => sent.reached)).toHaveLength(PER_USER_LIMIT);
  });

  it.each([
    ['a forged signature', (subject: string) => idp.sign({ sub: subject }, { key: idp.generateKey('rsa'), kid: idp.key('rsa').kid })],
    ['an expired token', (subject: string) => idp.sign({ sub: subject, iat: nowS() - 600, exp: nowS() - 300 })],
  ])('%s naming the victim’s subject gets 401 and does not consume the victim’s bucket', async (_case, forge) => {
    const [a, b] = await startReplicas(redis.url);
    const victim = tokenFor();
    const forged = forge(victim.subject);
    for (let i = 0; i < PER_USER_LIMIT + 2; i++) expectRefused(await send(i % 2 === 0 ? a : b, { token: forged, target: '/limited/x' }), 401, 'invalid_token');

    const first = await send(a, { token: victim.token, target: '/limited/x' });
    expectForwarded(first);
    expect(first.res.headers['ratelimit-remaining']).toBe(String(PER_USER_LIMIT - 1));
  });
});

describe('IP-keyed limits run before authentication', () => {
  const rotations: [string, (i: number) => [string, string]][] = [
    ['X-Forwarded-For', (i) => ['X-Forwarded-For', `203.0.113.${i}`]],
    ['X-Real-IP', (i) => ['X-Real-IP', `203.0.113.${i}`]],
    ['Forwarded: for=', (i) => ['Forwarded', `for=203.0.113.${i}`]],
  ];

  it.each(rotations)('rotating %s from an untrusted peer does not reset the login limit', async (_name, header) => {
    const [a, b] = await startReplicas(redis.url);
    const results: Sent[] = [];
    for (let i = 0; i < LOGIN_LIMIT + 3; i++) results.push(await send(i % 2 === 0 ? a : b, { target: '/login', headers: [header(i)] }));
    for (const sent of results.slice(0, LOGIN_LIMIT)) expectForwarded(sent);
    for (const sent of results.slice(LOGIN_LIMIT)) expectRateLimited(sent, LOGIN_LIMIT);
  });

  it('behind a trusted proxy, distinct X-Forwarded-For clients get distinct buckets', async () => {
    const [a, b] = await startReplicas(redis.url, { trustedProxies: ['127.0.0.1/32'] });
    const client = (ip: string): [string, string][] => [['X-Forwarded-For', ip]];
    for (let i = 0; i < LOGIN_LIMIT; i++) expectForwarded(await send(i % 2 === 0 ? a : b, { target: '/login', headers: client('198.51.100.1') }));
    expectRateLimited(await send(a, { target: '/login', headers: client('198.51.100.1') }), LOGIN_LIMIT);
    expectRateLimited(await send(b, { target: '/login', headers: client('198.51.100.1') }), LOGIN_LIMIT);
    expectForwarded(await send(b, { target: '/login', headers: client('198.51.100.2') }));
  });

  it('attempts with a broken token use up the IP limit, so even a valid token is then refused with 429', async () => {
    const [a, b] = await startReplicas(redis.url);
    for (let i = 0; i < LOGIN_LIMIT; i++) {
      expectRefused(await send(i % 2 === 0 ? a : b, { target: '/guarded/x', token: tokenFor().token.slice(0, -4) }), 401, 'invalid_token');
    }
    expectRateLimited(await send(b, { target: '/guarded/x', token: tokenFor().token }), LOGIN_LIMIT);
  });
});

describe('memory store (no Redis), one instance', () => {
  it('reports the store as memory and is ready', async () => {
    const gateway = await startGateway(freshPrefix());
    expect(await readiness(gateway)).toEqual({ status: 200, store: 'memory' });
  });

  it('an admin jti revocation refuses the token at once, and the lookup API confirms it', async () => {
    const gateway = await startGateway(freshPrefix());
    const { token, jti, exp } = tokenFor();
    expectForwarded(await send(gateway, { token }));
    expect((await adminRevoke(gateway, { jti, exp })).status).toBe(201);
    expectRevoked(await send(gateway, { token }));
    const lookup = await fetch(`${gateway.adminUrl}/revocations/jti/${jti}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(lookup.status).toBe(200);
  });

  it('an admin subject revocation refuses that subject’s tokens and no one else’s', async () => {
    const gateway = await startGateway(freshPrefix());
    const revoked = tokenFor();
    const other = tokenFor();
    expect((await adminRevoke(gateway, { subject: revoked.subject })).status).toBe(201);
    expectRevoked(await send(gateway, { token: revoked.token }));
    expectForwarded(await send(gateway, { token: other.token }));
  });

  it('logout answers 204 and the same token is refused afterwards', async () => {
    const gateway = await startGateway(freshPrefix());
    const { token } = tokenFor();
    const logout = await send(gateway, { token, method: 'POST', target: '/_authgate/logout' });
    expect(logout.res.status).toBe(204);
    expect(logout.reached).toBe(false);
    expectRevoked(await send(gateway, { token }));
  });

  it('revocations hold for the issuer, not its name: renaming it under issuers: brings no revoked token back', async () => {
    const gateway = await startGateway(freshPrefix());
    const loggedOut = tokenFor();
    const revoked = tokenFor();
    expect((await send(gateway, { token: loggedOut.token, method: 'POST', target: '/_authgate/logout' })).res.status).toBe(204);
    expect((await adminRevoke(gateway, { jti: revoked.jti, exp: revoked.exp, issuer: 'idp' })).status).toBe(201);
    await writeFile(gateway.file, gatewayYaml(idp, upstream.url, freshPrefix(), {}).replace('\n  idp:\n', '\n  corp-idp:\n'));
    const { config } = await loadConfig(gateway.file, {});
    if (config?.issuers.has('corp-idp') !== true) throw new Error('the renamed config did not load');
    await gateway.gateway.reload(config);
    expectRevoked(await send(gateway, { token: loggedOut.token }));
    expectRevoked(await send(gateway, { token: revoked.token }));
    expectForwarded(await send(gateway, { token: tokenFor().token }));
    const lookup = await fetch(`${gateway.adminUrl}/revocations/jti/${revoked.jti}?issuer=corp-idp`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(lookup.status).toBe(200);
  });
});

interface StreamResult {
  readonly options: SendOptions & { readonly expected: number };
  readonly sent: Sent;
}

/**
 * Sends `requests` round-robin to `gateways` from `concurrency` workers, kills `server` once `killAfter` requests
 * were issued, and keeps going until `afterDeath` more were issued with Redis dead (never more than `cap` in all).
 */
async function streamThroughOutage(
  server: RedisServer,
  gateways: readonly TestGateway[],
  requests: readonly StreamResult['options'][],
  plan: { killAfter: number; afterDeath: number; concurrency: number; cap: number },
): Promise<{ results: StreamResult[]; sentWhileDead: number }> {
  const results: StreamResult[] = [];
  let issued = 0;
  let sentWhileDead = 0;
  let dead = false;
  let killed: Promise<void> | undefined;
  const worker = async (): Promise<void> => {
    while (issued < plan.cap && (!dead || sentWhileDead < plan.afterDeath)) {
      const index = issued++;
      if (index === plan.killAfter) killed = server.stop().then(() => void (dead = true));
      if (dead) sentWhileDead++;
      const options = requests[index % requests.length] as StreamResult['options'];
      const gateway = gateways[index % gateways.length] as TestGateway;
      results.push({ options, sent: await send(gateway, options) });
    }
  };
  await Promise.all(Array.from({ length: plan.concurrency }, worker));
  await killed;
  return { results, sentWhileDead };
}

describe('Redis failure and recovery', () => {
  let flaky: RedisServer;
  beforeAll(async () => {
    flaky = await startRedis();
  });
  afterAll(async () => {
    await flaky?.stop();
  });

  it('Redis killed mid-stream: no 5xx, revoked tokens stay refused, limits per instance, logout 503 but held locally, /readyz degraded; back after restart', async () => {
    const [a, b] = await startReplicas(flaky.url);
    const valid = tokenFor();
    const revoked = tokenFor();
    expect((await adminRevoke(a, { jti: revoked.jti, exp: revoked.exp, issuer: 'idp' })).status).toBe(201);
    await revocationLatencyMs(b, revoked.token, performance.now());

    const requests = [
      { token: valid.token, target: '/api/x', expected: 200 },
      { token: revoked.token, target: '/api/x', expected: 401 },
      { token: valid.token, target: '/bulk/x', expected: 200 },
    ];
    const { results, sentWhileDead } = await streamThroughOutage(flaky, [a, b], requests, {
      killAfter: 30,
      afterDeath: 60,
      concurrency: 4,
      cap: 1_000,
    });
    expect(sentWhileDead).toBeGreaterThanOrEqual(60);
    expect(results.filter(({ sent }) => sent.res.status >= 500).map(({ sent }) => sent.res.body)).toEqual([]);
    for (const { options, sent } of results) {
      if (options.expected === 401) expectRevoked(sent);
      else expectForwarded(sent);
    }

    for (const gateway of [a, b]) {
      await expect.poll(() => readiness(gateway), { timeout: RECONNECT_DEADLINE_MS }).toEqual({ status: 503, store: 'degraded' });
    }

    // Each instance now counts on its own: a fresh user gets the whole limit on A and again on B.
    const { token } = tokenFor();
    for (const gateway of [a, b]) {
      for (let i = 0; i < PER_USER_LIMIT; i++) expectForwarded(await send(gateway, { token, target: '/limited/x' }));
      expectRateLimited(await send(gateway, { token, target: '/limited/x' }), PER_USER_LIMIT);
    }

    // Revoked on B while Redis is away: holds on B at once, reaches A only once Redis is back.
    const lateRevoked = tokenFor();
    expect((await adminRevoke(b, { jti: lateRevoked.jti, exp: lateRevoked.exp, issuer: 'idp' })).status).toBe(503);
    expectRevoked(await send(b, { token: lateRevoked.token }));
    expectForwarded(await send(a, { token: lateRevoked.token }));

    // A logout on B meets the same outage: 503 with Retry-After, never the upstream, and the token is refused on B.
    const loggedOut = tokenFor();
    const logout = await send(b, { token: loggedOut.token, method: 'POST', target: '/_authgate/logout' });
    expectRefused(logout, 503, 'service_unavailable');
    expect(logout.res.headers['retry-after']).toBe('5');
    expectRevoked(await send(b, { token: loggedOut.token }));

    await flaky.restart();
    for (const gateway of [a, b]) {
      await expect.poll(() => readiness(gateway), { timeout: RECONNECT_DEADLINE_MS }).toEqual({ status: 200, store: 'ok' });
    }
    await revocationLatencyMs(a, lateRevoked.token, performance.now());
    await revocationLatencyMs(a, loggedOut.token, performance.now());
    for (const gateway of [a, b]) {
      expectRevoked(await send(gateway, { token: lateRevoked.token }));
      expectRevoked(await send(gateway, { token: loggedOut.token }));
      // The restarted Redis came back empty; the instances wrote the earlier revocation back from their mirrors.
      expectRevoked(await send(gateway, { token: revoked.token }));
      expectForwarded(await send(gateway, { token: valid.token }));
    }
  });

  it('an instance cut off from Redis picks up, when it reconnects, a revocation another instance wrote meanwhile', async () => {
    const link = await startTcpProxy(redis.port);
    try {
      const prefix = freshPrefix();
      const cutOff = await startGateway(prefix, { redisUrl: `redis://127.0.0.1:${link.port}` });
      const connected = await startGateway(prefix, { redisUrl: redis.url });
      const { token, jti, exp } = tokenFor();

      link.cut();
      await expect.poll(() => readiness(cutOff), { timeout: RECONNECT_DEADLINE_MS }).toEqual({ status: 503, store: 'degraded' });
      expect((await adminRevoke(connected, { jti, exp, issuer: 'idp' })).status).toBe(201);
      // Missed the publish: the cut-off instance cannot know yet.
      expectForwarded(await send(cutOff, { token }));

      link.restore();
      await expect.poll(() => readiness(cutOff), { timeout: RECONNECT_DEADLINE_MS }).toEqual({ status: 200, store: 'ok' });
      // Ready again means resynced: no waiting for a publish that was sent while it was away.
      expectRevoked(await send(cutOff, { token }));
    } finally {
      await Promise.all(openGateways.splice(0).map((gateway) => gateway.close()));
      await link.close();
    }
  });
});

async function deniedFor(gateway: TestGateway, reason: string): Promise<number> {
  return (await gateway.metrics.authDenied.get()).values.find((value) => value.labels.reason === reason)?.value ?? 0;
}

describe('cold start and Redis restarts', () => {
  it('an instance started while Redis is down answers 503 to every token until it has loaded the revocations; auth: none routes keep working', async () => {
    const persistent = await startRedis({ persist: true });
    try {
      const prefix = freshPrefix();
      const first = await startGateway(prefix, { redisUrl: persistent.url });
      const revoked = tokenFor();
      const valid = tokenFor();
      expect((await adminRevoke(first, { jti: revoked.jti, exp: revoked.exp, issuer: 'idp' })).status).toBe(201);
      await persistent.stop();

      const fresh = await startGateway(prefix, { redisUrl: persistent.url });
      expect(await readiness(fresh)).toEqual({ status: 503, store: 'degraded' });
      for (const token of [revoked.token, valid.token]) {
        const sent = await send(fresh, { token });
        expectRefused(sent, 503, 'service_unavailable');
        expect(sent.res.headers['retry-after']).toBe('5');
      }
      expect(await deniedFor(fresh, 'store_not_synced')).toBe(2);
      expectForwarded(await send(fresh, { target: '/login' }));

      await persistent.restart();
      const back = performance.now();
      await expect.poll(() => readiness(fresh), { timeout: RECONNECT_DEADLINE_MS }).toEqual({ status: 200, store: 'ok' });
      console.log(`instance started during the outage synced ${(performance.now() - back).toFixed(0)} ms after Redis was back`);
      expectRevoked(await send(fresh, { token: revoked.token }));
      expectForwarded(await send(fresh, { token: valid.token }));
    } finally {
      await Promise.all(openGateways.splice(0).map((gateway) => gateway.close()));
      await persistent.close();
    }
  });

  it('Redis restarted without persistence gets the revocations back from the running instances: a fresh instance refuses all 30', async () => {
    const volatile = await startRedis();
    try {
      const [a, b] = await startReplicas(volatile.url);
      const revoked = Array.from({ length: 30 }, () => tokenFor());
      for (const [index, { jti, exp }] of revoked.entries()) {
        expect((await adminRevoke(index % 2 === 0 ? a : b, { jti, exp, issuer: 'idp' })).status).toBe(201);
      }
      await revocationLatencyMs(a, (revoked.at(-1) as { token: string }).token, performance.now());

      await volatile.stop();
      for (const gateway of [a, b]) {
        await expect.poll(() => readiness(gateway), { timeout: RECONNECT_DEADLINE_MS }).toEqual({ status: 503, store: 'degraded' });
      }
      await volatile.restart();
      const back = performance.now();
      for (const gateway of [a, b]) {
        await expect.poll(() => readiness(gateway), { timeout: RECONNECT_DEADLINE_MS }).toEqual({ status: 200, store: 'ok' });
      }
      const c = await startGateway(a.config.store.prefix, { redisUrl: volatile.url });
      expect(await readiness(c)).toEqual({ status: 200, store: 'ok' });
      const results = await Promise.all(revoked.map(({ token }) => send(c, { token })));
      console.log(`fresh instance refused all 30 revoked tokens ${(performance.now() - back).toFixed(0)} ms after Redis came back empty`);
      for (const sent of results) expectRevoked(sent);
      expectForwarded(await send(c, { token: tokenFor().token }));
    } finally {
      await Promise.all(openGateways.splice(0).map((gateway) => gateway.close()));
      await volatile.close();
    }
  });
});

describe('in-memory limits hold a bounded number of keys', () => {
  it.each([
    ['the memory store', undefined],
    ['the fallback limiter while Redis is unreachable', 'redis://127.0.0.1:1'],
  ])('%s: past max_keys new clients are admitted and the oldest forgotten, so only the newest keys are counted', async (_store, redisUrl) => {
    const gateway = await startGateway(freshPrefix(), { redisUrl });
    const client = (id: string): Promise<Sent> => send(gateway, { target: '/keyed', headers: [['X-Client', id]] });
    expectForwarded(await client('first'));
    expectRateLimited(await client('first'), 1);

    const flood = Array.from({ length: 200 }, (_, index) => `flood-${index}`);
    for (const id of flood) expectForwarded(await client(id));
    // Forgotten long ago: a fresh window. It takes the place of the oldest of the 3 counted keys.
    expectForwarded(await client('first'));
    const counted = flood.slice(-(KEYED_MAX_KEYS - 1));
    for (const id of counted) expectRateLimited(await client(id), 1);
    expectForwarded(await client(flood.at(-KEYED_MAX_KEYS) as string));
  });
});

/** Connections to `redis` opened by authgate stores (both of a store's clients are named `authgate`). */
async function authgateConnections(client: Redis): Promise<number> {
  const list = (await client.call('CLIENT', 'LIST')) as string;
  return list.split('\n').filter((line) => / name=authgate /.test(line)).length;
}

/** Rewrites the gateway's file with `shape` and reloads it, as SIGHUP would. */
async function reload(gateway: TestGateway, prefix: string, shape: GatewayShape): Promise<void> {
  await writeFile(gateway.file, gatewayYaml(idp, upstream.url, prefix, shape));
  const { config } = await loadConfig(gateway.file, shape.redisUrl === undefined ? {} : { REDIS_URL: shape.redisUrl });
  if (config === undefined) throw new Error('reloaded config is invalid');
  await gateway.gateway.reload(config);
}

describe('reload keeps the one store', () => {
  let probe: Redis;
  beforeAll(() => {
    probe = new Redis(redis.url);
  });
  afterAll(async () => {
    await probe?.quit();
  });

  it.each([
    ['a changed limit', { perUserLimit: PER_USER_LIMIT + 2 }, PER_USER_LIMIT + 2],
    ['a newly added limit', { burstLimit: 2, limitedRoute: ['per-user', 'burst'] }, 2],
  ])('after a reload with %s the new limit is enforced, on the same Redis connections and revocations', async (_case, reloaded: GatewayShape, limit) => {
    const baseline = await authgateConnections(probe);
    const prefix = freshPrefix();
    const gateway = await startGateway(prefix, { redisUrl: redis.url });
    await expect.poll(() => authgateConnections(probe)).toBe(baseline + 2);
    const revoked = tokenFor();
    expect((await adminRevoke(gateway, { jti: revoked.jti, exp: revoked.exp, issuer: 'idp' })).status).toBe(201);

    await reload(gateway, prefix, { ...reloaded, redisUrl: redis.url });

    const { token } = tokenFor();
    for (let i = 0; i < limit; i++) {
      const sent = await send(gateway, { token, target: '/limited/x' });
      expectForwarded(sent);
      expect(sent.res.headers['ratelimit-limit']).toBe(String(limit));
    }
    expectRateLimited(await send(gateway, { token, target: '/limited/x' }), limit);
    expectRevoked(await send(gateway, { token: revoked.token }));
    expect(await authgateConnections(probe)).toBe(baseline + 2);

    await gateway.close();
    await expect.poll(() => authgateConnections(probe)).toBe(baseline);
  });

  it('a reload that leaves a limit unchanged keeps its in-memory counters', async () => {
    const prefix = freshPrefix();
    const gateway = await startGateway(prefix);
    const { token } = tokenFor();
    for (let i = 0; i < PER_USER_LIMIT - 1; i++) expectForwarded(await send(gateway, { token, target: '/limited/x' }));

    await reload(gateway, prefix, { burstLimit: 2 });

    const last = await send(gateway, { token, target: '/limited/x' });
    expectForwarded(last);
    expect(last.res.headers['ratelimit-remaining']).toBe('0');
    expectRateLimited(await send(gateway, { token, target: '/limited/x' }), PER_USER_LIMIT);
  });
});
