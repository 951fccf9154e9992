import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RateLimitConfig } from '../../src/config/types.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import { boundInMemoryBlocks } from '../../src/store/memory-limiter.js';
import { createStore, JTI_RETENTION_GRACE_S, type RevocationSubject, type Store } from '../../src/store/index.js';
import { redisUrlConfig, startRedis, startTcpProxy, type RedisServer, type TcpProxy } from '../helpers/redis.js';

const HOUR = 3600;
const nowS = (): number => Math.floor(Date.now() / 1000);
const limits = new Map<string, RateLimitConfig>([
  ['login', { name: 'login', key: { kind: 'ip' }, limit: 3, windowMs: 60_000, maxKeys: 1000, mode: 'exact' }],
]);
const within = (timeout: number) => ({ timeout, interval: 10 });

interface Instance {
  readonly store: Store;
  readonly metrics: Metrics;
  readonly logs: { level: number; msg: string; err?: { message: string } }[];
}

let redis: RedisServer;
const stores: Store[] = [];
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

let prefixCounter = 0;
/** Each test gets its own key space on the shared redis-server. */
function freshPrefix(): string {
  prefixCounter += 1;
  return `t${prefixCounter}:`;
}

async function instance(prefix: string, url = redis.url, now?: () => number, revocationRereadMs?: number): Promise<Instance> {
  const logs: Instance['logs'] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(JSON.parse(chunk.toString()) as Instance['logs'][number]);
      done();
    },
  });
  const metrics = new Metrics();
  const store = createStore({ redis: redisUrlConfig(url), prefix }, limits, { logger: createLogger('info', sink), metrics, now, revocationRereadMs });
  stores.push(store);
  await store.ready();
  return { store, metrics, logs };
}

function rawClient(): Redis {
  const client = new Redis(redis.url);
  cleanups.push(async () => {
    await client.quit();
  });
  return client;
}

const token = (overrides: Partial<RevocationSubject>): RevocationSubject => ({
  issuer: 'auth0',
  jti: undefined,
  subject: undefined,
  iat: undefined,
  ...overrides,
});

async function storeErrors(metrics: Metrics): Promise<number> {
  return (await metrics.storeErrors.get()).values[0]?.value ?? 0;
}

describe('Redis store, connected', () => {
  it('is healthy once ready', async () => {
    const { store, logs } = await instance(freshPrefix());
    expect(store.health()).toEqual({ status: 'ok' });
    expect(logs.filter((line) => line.level >= 40)).toEqual([]);
  });

  it('shares a revocation made on one instance with another within a second', async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([instance(prefix), instance(prefix)]);
    await a.store.revocations.revokeJti('jti-1', nowS() + HOUR, 'auth0');
    expect(a.store.revocations.isRevoked(token({ jti: 'jti-1' }))).toBe(true);
    await vi.waitFor(() => expect(b.store.revocations.isRevoked(token({ jti: 'jti-1' }))).toBe(true), within(1000));

    await b.store.revocations.revokeSubject('alice', nowS(), 'auth0');
    await vi.waitFor(
      () => expect(a.store.revocations.isRevoked(token({ subject: 'alice', iat: nowS() - 60 }))).toBe(true),
      within(1000),
    );
    expect(a.store.revocations.isRevoked(token({ subject: 'alice', iat: nowS() + 60 }))).toBe(false);
    expect(a.store.revocations.isRevoked(token({ issuer: 'okta', subject: 'alice', iat: nowS() - 60 }))).toBe(false);
  });

  it('learns at its next periodic read a revocation whose publish never reached it', async () => {
    const prefix = freshPrefix();
    const { store } = await instance(prefix, redis.url, undefined, 300);
    // Written as an instance writes it, minus the PUBLISH: what a subscriber on a Cluster node sees when the bus
    // drops a message while its connection stays up.
    const entry = { kind: 'jti', issuer: 'auth0', jti: 'never-published', expiresAt: nowS() + HOUR };
    await rawClient().zadd(`${prefix}revocations`, entry.expiresAt, JSON.stringify(entry));
    expect(store.revocations.isRevoked(token({ jti: 'never-published' }))).toBe(false);
    await vi.waitFor(() => expect(store.revocations.isRevoked(token({ jti: 'never-published' }))).toBe(true), within(3000));
    expect(store.health()).toEqual({ status: 'ok' });
  });

  it('only reads at its periodic read: what it holds and Redis lost waits for a reconnect to be written back', async () => {
    const prefix = freshPrefix();
    const { store } = await instance(prefix, redis.url, undefined, 300);
    await store.revocations.revokeJti('held-here', nowS() + HOUR, 'auth0');
    const client = rawClient();
    await client.del(`${prefix}revocations`);
    const marker = { kind: 'jti', issuer: 'auth0', jti: 'marker', expiresAt: nowS() + HOUR };
    await client.zadd(`${prefix}revocations`, marker.expiresAt, JSON.stringify(marker));
    // Learning the marker shows a periodic read has run since the loss.
    await vi.waitFor(() => expect(store.revocations.isJtiRevoked('marker')).toBe(true), within(3000));
    expect(await client.zrange(`${prefix}revocations`, '0', '-1')).toEqual([JSON.stringify(marker)]);
    expect(store.revocations.isJtiRevoked('held-here')).toBe(true);
  });

  it('loads the revocations already in Redis when it starts', async () => {
    const prefix = freshPrefix();
    const first = await instance(prefix);
    await first.store.revocations.revokeJti('early', nowS() + HOUR);
    const late = await instance(prefix);
    expect(late.store.revocations.isJtiRevoked('early')).toBe(true);
  });

  it('keeps instances with different prefixes apart', async () => {
    const a = await instance(freshPrefix());
    const b = await instance(freshPrefix());
    await a.store.revocations.revokeJti('mine', nowS() + HOUR);
    await a.store.rateLimits.consume('login', '192.0.2.9');
    const c = await instance(freshPrefix());
    expect([b.store.revocations.isJtiRevoked('mine'), c.store.revocations.isJtiRevoked('mine')]).toEqual([false, false]);
    expect((await b.store.rateLimits.consume('login', '192.0.2.9')).remaining).toBe(2);
  });

  it('ignores malformed entries published on the channel', async () => {
    const prefix = freshPrefix();
    const { store, logs } = await instance(prefix);
    const publisher = rawClient();
    await publisher.publish(`${prefix}revocations`, '{"kind":"jti","jti":42}');
    await publisher.publish(
      `${prefix}revocations`,
      JSON.stringify({ kind: 'jti', issuer: null, jti: 'well-formed', expiresAt: nowS() + HOUR }),
    );
    await vi.waitFor(() => expect(store.revocations.isJtiRevoked('well-formed')).toBe(true), within(1000));
    expect(logs.filter((line) => line.msg.includes('malformed'))).toHaveLength(1);
  });

  it('reports degraded when Redis refuses the resync, and still revokes locally', async () => {
    const prefix = freshPrefix();
    await rawClient().set(`${prefix}revocations`, 'not a sorted set');
    const { store, metrics } = await instance(prefix);
    const health = store.health();
    expect(health.status === 'degraded' && health.error).toMatch(/WRONGTYPE/);
    await expect(store.revocations.revokeJti('local', nowS() + HOUR)).rejects.toThrow(/WRONGTYPE/);
    expect(store.revocations.isJtiRevoked('local')).toBe(true);
    expect(await storeErrors(metrics)).toBe(2);
  });

  it('shares rate limits between instances', async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([instance(prefix), instance(prefix)]);
    const order = [a, b, a, b].map((i) => i.store);
    const decisions = [];
    for (const store of order) decisions.push(await store.rateLimits.consume('login', '198.51.100.7'));
    expect(decisions.map((d) => [d.allowed, d.remaining])).toEqual([
      [true, 2],
      [true, 1],
      [true, 0],
      [false, 0],
    ]);
    expect(decisions[3]?.resetMs).toBeGreaterThan(0);
    expect(decisions[3]?.resetMs).toBeLessThanOrEqual(60_000);
    expect((await a.store.rateLimits.consume('login', '198.51.100.8')).allowed).toBe(true);
  });
});

describe('in-memory blocks of Redis-backed limits', () => {
  it('hold at most max_keys over-limit keys; a key whose block was forgotten is still refused, by Redis', async () => {
    const keyPrefix = `${freshPrefix()}rl`;
    const limiter = new RateLimiterRedis({ storeClient: rawClient(), points: 1, duration: 60, keyPrefix, inMemoryBlockOnConsumed: 2 });
    const blocks = boundInMemoryBlocks(limiter, 3);
    const keys = Array.from({ length: 10 }, (_, index) => `client-${index}`);
    for (const key of keys) {
      await limiter.consume(key);
      await expect(limiter.consume(key)).rejects.toBeInstanceOf(RateLimiterRes);
    }
    expect(blocks.size).toBe(3);
    expect(keys.filter((key) => blocks.get(`${keyPrefix}:${key}`) !== null)).toEqual(keys.slice(-3));
    const refused = await limiter.consume('client-0').catch((refusal: unknown) => refusal);
    expect(refused).toBeInstanceOf(RateLimiterRes);
    expect((refused as RateLimiterRes).consumedPoints).toBe(3);
  });
});

describe('Redis store, connection lost', () => {
  let proxy: TcpProxy;
  beforeAll(async () => {
    proxy = await startTcpProxy(redis.port);
  });
  afterAll(async () => {
    await proxy.close();
  });

  it('resyncs on reconnect what was revoked while it was cut off', async () => {
    const prefix = freshPrefix();
    const cutOff = await instance(prefix, `redis://127.0.0.1:${proxy.port}`);
    const other = await instance(prefix);
    expect(cutOff.store.health()).toEqual({ status: 'ok' });

    proxy.cut();
    await vi.waitFor(() => expect(cutOff.store.health().status).toBe('degraded'), within(2000));
    await other.store.revocations.revokeJti('while-away', nowS() + HOUR, 'auth0');
    await other.store.revocations.revokeSubject('mallory', nowS(), undefined);
    expect(cutOff.store.revocations.isJtiRevoked('while-away')).toBe(false);

    proxy.restore();
    await vi.waitFor(() => expect(cutOff.store.health()).toEqual({ status: 'ok' }), within(5000));
    expect(cutOff.store.revocations.isRevoked(token({ jti: 'while-away' }))).toBe(true);
    expect(cutOff.store.revocations.isRevoked(token({ issuer: 'okta', subject: 'mallory' }))).toBe(true);
  });

  it('a Redis that hangs (every connection up): a command that times out is counted, and the probe it sets off degrades the store until a resync works', async () => {
    const hung = await instance(freshPrefix(), `redis://127.0.0.1:${proxy.port}`);
    expect(hung.store.health()).toEqual({ status: 'ok' });
    const errorsBefore = await storeErrors(hung.metrics);
    proxy.stall();
    try {
      // The exact-mode limit: the in-memory limiter answers once the command has timed out.
      expect(await hung.store.rateLimits.consume('login', '203.0.113.7')).toMatchObject({ allowed: true, limit: 3 });
      // The failure has the link probed, and the probe hangs too.
      await vi.waitFor(() => expect(hung.store.health().status).toBe('degraded'), within(2000));
      expect(await storeErrors(hung.metrics)).toBeGreaterThan(errorsBefore);
      await expect(hung.store.revocations.revokeJti('while-hung', nowS() + HOUR, 'auth0')).rejects.toThrow(/until Redis is back/);
      expect(hung.logs.filter((line) => line.msg.startsWith('store: Redis unreachable'))).toHaveLength(1);
    } finally {
      proxy.flow();
    }
    await vi.waitFor(() => expect(hung.store.health()).toEqual({ status: 'ok' }), within(5000));
  });

  it('a revocation Redis refuses to write (out of memory, reads still fine) degrades the store, and is written back once Redis takes writes', async () => {
    const prefix = freshPrefix();
    const [refused, other] = [await instance(prefix), await instance(prefix)];
    const raw = rawClient();
    await raw.config('SET', 'maxmemory', '1');
    try {
      await expect(refused.store.revocations.revokeJti('refused-write', nowS() + HOUR, 'auth0')).rejects.toThrow(/until Redis is back/);
      expect(refused.store.health().status).toBe('degraded');
    } finally {
      await raw.config('SET', 'maxmemory', '0');
    }
    await vi.waitFor(() => expect(other.store.revocations.isJtiRevoked('refused-write')).toBe(true), within(5000));
  });

  it('an instance that starts cut off is not synced until its first resync has loaded the revocations', async () => {
    const prefix = freshPrefix();
    const other = await instance(prefix);
    await other.store.revocations.revokeJti('before-start', nowS() + HOUR, 'auth0');
    proxy.cut();
    const late = await instance(prefix, `redis://127.0.0.1:${proxy.port}`);
    expect(late.store.health().status).toBe('degraded');
    expect(late.store.revocations.synced()).toBe(false);
    expect(late.store.revocations.isJtiRevoked('before-start')).toBe(false);

    proxy.restore();
    await vi.waitFor(() => expect(late.store.revocations.synced()).toBe(true), within(5000));
    expect(late.store.revocations.isJtiRevoked('before-start')).toBe(true);
    expect(other.store.revocations.synced()).toBe(true);
  });

  it('when the in-memory fallback limiter itself fails, the request is allowed, the failure logged and counted', async () => {
    const cutOff = await instance(freshPrefix(), `redis://127.0.0.1:${proxy.port}`);
    proxy.cut();
    await vi.waitFor(() => expect(cutOff.store.health().status).toBe('degraded'), within(2000));
    const errorsBefore = await storeErrors(cutOff.metrics);
    const broken = vi.spyOn(RateLimiterMemory.prototype, 'consume').mockRejectedValueOnce(new Error('fallback limiter broke'));
    try {
      expect(await cutOff.store.rateLimits.consume('login', '203.0.113.9')).toEqual({ allowed: true, limit: 3, remaining: 3, resetMs: 0 });
      expect(broken).toHaveBeenCalledTimes(1);
    } finally {
      broken.mockRestore();
      proxy.restore();
    }
    // Two failures: the Redis command (Redis is gone), then the in-memory limiter that answers for it.
    expect(await storeErrors(cutOff.metrics)).toBe(errorsBefore + 2);
    const warning = cutOff.logs.find((line) => line.level === 40 && line.msg.includes('rate limiter failed'));
    expect(warning?.err?.message).toBe('fallback limiter broke');
  });
});

describe('Redis store, Redis down and back', () => {
  it('serves from the mirror and memory limits while down, then recovers', async () => {
    const prefix = freshPrefix();
    const [a, b] = await Promise.all([instance(prefix), instance(prefix)]);
    await a.store.revocations.revokeJti('before-outage', nowS() + HOUR);
    await vi.waitFor(() => expect(b.store.revocations.isJtiRevoked('before-outage')).toBe(true), within(1000));

    await redis.stop();
    await vi.waitFor(() => expect(a.store.health().status).toBe('degraded'), within(2000));
    const degraded = a.store.health();
    expect(degraded.status === 'degraded' && degraded.error.length > 0).toBe(true);
    expect(a.store.revocations.isRevoked(token({ jti: 'before-outage' }))).toBe(true);

    // The insurance limiter counts per instance: a's limit is its own now.
    const decisions = await Promise.all([1, 2, 3, 4].map(() => a.store.rateLimits.consume('login', '203.0.113.5')));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, false]);

    // A write while down holds locally at once and is replayed to Redis on reconnect.
    await expect(a.store.revocations.revokeJti('during-outage', nowS() + HOUR)).rejects.toThrow(/this instance only/);
    expect(a.store.revocations.isJtiRevoked('during-outage')).toBe(true);
    expect(await storeErrors(a.metrics)).toBeGreaterThan(0);

    await redis.restart();
    await vi.waitFor(() => expect([a.store.health(), b.store.health()]).toEqual([{ status: 'ok' }, { status: 'ok' }]), within(5000));
    // Whichever reconnected first may have resynced before a's replay; the replay's publish reaches it then.
    await vi.waitFor(() => expect(b.store.revocations.isJtiRevoked('during-outage')).toBe(true), within(1000));
    const late = await instance(prefix);
    expect(late.store.revocations.isJtiRevoked('during-outage')).toBe(true);

    for (const { logs } of [a, b]) {
      expect(logs.filter((line) => line.level === 40).map((line) => line.msg)).toEqual([
        expect.stringContaining('Redis unreachable'),
      ]);
      expect(logs.filter((line) => line.msg.includes('reachable again'))).toHaveLength(1);
    }
  });

  it('a Redis restarted empty gets back every live revocation the instances hold, expired ones not', async () => {
    const prefix = freshPrefix();
    const start = nowS();
    const clock = { nowS: start };
    const a = await instance(prefix, redis.url, () => clock.nowS * 1000);
    await a.store.revocations.revokeJti('short-lived', start + 10, 'auth0');
    await a.store.revocations.revokeJti('long-lived', start + HOUR);
    await a.store.revocations.revokeSubject('mallory', start, 'okta');
    // Past the short-lived entry's retention on a's clock: it is no longer in force there.
    clock.nowS = start + 10 + JTI_RETENTION_GRACE_S;

    await redis.restart();
    await vi.waitFor(() => expect(a.store.health()).toEqual({ status: 'ok' }), within(5000));
    const members = (await rawClient().zrange(`${prefix}revocations`, '0', '-1')).map((member) => JSON.parse(member) as Record<string, unknown>);
    expect(members).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'jti', jti: 'long-lived', issuer: null }),
        expect.objectContaining({ kind: 'subject', subject: 'mallory', issuer: 'okta', before: start }),
      ]),
    );
    expect(members).toHaveLength(2);
    const fresh = await instance(prefix);
    expect(fresh.store.revocations.isRevoked(token({ jti: 'long-lived' }))).toBe(true);
    expect(fresh.store.revocations.isRevoked(token({ issuer: 'okta', subject: 'mallory', iat: start }))).toBe(true);
    expect(fresh.store.revocations.isJtiRevoked('short-lived')).toBe(false);
  });
});
