import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RateLimitConfig, RateLimitMode } from '../../src/config/types.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import { createStore, type RateLimitDecision, type Store } from '../../src/store/index.js';
import { leaseSize, trustSize } from '../../src/store/leases.js';
import { redisUrlConfig, startRedis, startTcpProxy, type RedisServer, type TcpProxy } from '../helpers/redis.js';
import { waitUntil } from '../helpers/redis-topologies.js';
import { expectTruthfulRemaining } from '../helpers/remaining.js';

/** Leased rate limits against a real redis-server: round trips per lease, the outage fallback, and switching modes. */

const LIMIT = 100;
const silent = createLogger('silent');

let redis: RedisServer;
let admin: Redis;
const open: { close(): Promise<void> }[] = [];
let prefixes = 0;

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  await admin.quit();
  await redis.close();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((resource) => resource.close()));
});

function limitOf(mode: RateLimitMode, limit: number, windowMs: number, maxKeys: number): Map<string, RateLimitConfig> {
  return new Map([['api', { name: 'api', key: { kind: 'subject' }, limit, windowMs, maxKeys, mode }]]);
}

async function storeOn(url: string, mode: RateLimitMode, prefix: string, limit = LIMIT, windowMs = 60_000, maxKeys = 1000): Promise<Store> {
  const store = createStore({ redis: redisUrlConfig(url), prefix }, limitOf(mode, limit, windowMs, maxKeys), { logger: silent, metrics: new Metrics() });
  open.push(store);
  await store.ready();
  return store;
}

/** Script calls Redis has served so far (EVALSHA, and EVAL when a script was not cached yet). */
async function scriptCalls(): Promise<number> {
  const stats = await admin.info('commandstats');
  const calls = (command: string): number => Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0);
  return calls('evalsha') + calls('eval');
}

async function consumeMany(store: Store, key: string, count: number): Promise<RateLimitDecision[]> {
  const decisions: RateLimitDecision[] = [];
  for (let i = 0; i < count; i++) decisions.push(await store.rateLimits.consume('api', key));
  return decisions;
}

describe('leased limits on Redis', () => {
  it('ask Redis once per lease of a key, not once per request as the exact mode does', async () => {
    prefixes += 1;
    const limit = 1000;
    const leased = await storeOn(redis.url, 'leased', `leased${prefixes}:`, limit);
    const exact = await storeOn(redis.url, 'exact', `exact${prefixes}:`, limit);
    // Exact first: each of its calls is answered before its request is, so none is still to come when it is counted.
    const before = await scriptCalls();
    expect((await consumeMany(exact, 'alice', 200)).every((decision) => decision.allowed)).toBe(true);
    const exactCalls = (await scriptCalls()) - before;
    expect((await consumeMany(leased, 'alice', 200)).every((decision) => decision.allowed)).toBe(true);
    const leasedCalls = (await scriptCalls()) - before - exactCalls;
    expect(exactCalls).toBe(200);
    // A lease of 50 is refilled when half spent: about 200 / 50 calls, plus the first.
    expect(leasedCalls).toBeLessThanOrEqual(Math.ceil(200 / leaseSize(limit)) + 2);
  });

  it('ask for the leases of many keys in one call to Redis', async () => {
    prefixes += 1;
    const store = await storeOn(redis.url, 'leased', `batch${prefixes}:`, 1000);
    const keys = Array.from({ length: 50 }, (_, i) => `client-${i}`);
    const before = await scriptCalls();
    const decisions = keys.map((key) => store.rateLimits.consume('api', key));
    expect(decisions.every((decision) => !(decision instanceof Promise) && decision.allowed)).toBe(true);
    await waitUntil('every key counted in Redis', async () => (await admin.exists(...keys.map((key) => `batch${prefixes}:rl:api:${key}`))) === keys.length);
    expect((await scriptCalls()) - before).toBe(1);
    // Each counter holds the request admitted on trust and the lease taken with it.
    expect(await admin.get(`batch${prefixes}:rl:api:client-7`)).toBe(String(1 + leaseSize(1000)));
  });

  it('share one counter with the exact mode: a reload that switches modes carries on where the other left off', async () => {
    prefixes += 1;
    const prefix = `switch${prefixes}:`;
    const exact = await storeOn(redis.url, 'exact', prefix);
    expect((await consumeMany(exact, 'bob', 30)).every((decision) => decision.allowed)).toBe(true);
    const leased = await storeOn(redis.url, 'leased', prefix);
    const decisions = await consumeMany(leased, 'bob', LIMIT);
    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(LIMIT - 30);
    // The first request is admitted before Redis answers; from the second on, Remaining is Redis's count.
    expect(decisions[1]?.remaining).toBe(LIMIT - 30 - 2);
    expect(decisions.at(-1)).toMatchObject({ allowed: false, limit: LIMIT, remaining: 0 });
  });

  it('with Redis unreachable, spend what they hold, then the in-memory limiter answers, per instance', async () => {
    prefixes += 1;
    const proxy: TcpProxy = await startTcpProxy(redis.port);
    open.push(proxy);
    const store = await storeOn(`redis://127.0.0.1:${proxy.port}`, 'leased', `outage${prefixes}:`);
    await consumeMany(store, 'carol', 3);
    proxy.cut();
    const decisions = await consumeMany(store, 'carol', 2 * LIMIT);
    const admitted = decisions.filter((decision) => decision.allowed).length;
    const lease = leaseSize(LIMIT);
    // What the instance still held of its lease, then a full window of the in-memory limiter.
    expect(admitted).toBeGreaterThanOrEqual(LIMIT);
    expect(admitted).toBeLessThanOrEqual(LIMIT + lease + Math.floor(lease / 2));
    expect(decisions.at(-1)).toMatchObject({ allowed: false, remaining: 0 });
  });
});

/** What several instances on one Redis may admit: the bounds docs/scaling.md states, measured. */
describe('leased limits on two instances', () => {
  it('a key spent through one instance: the other, which never saw it, admits at most its trust, then refuses', async () => {
    prefixes += 1;
    const limit = 1000;
    const [a, b] = [await storeOn(redis.url, 'leased', `two${prefixes}:`, limit), await storeOn(redis.url, 'leased', `two${prefixes}:`, limit)];
    const throughA = await consumeMany(a, 'dana', limit + 5);
    expect(throughA.filter((decision) => decision.allowed)).toHaveLength(limit);
    expect(throughA.slice(limit).every((decision) => !decision.allowed && decision.remaining === 0)).toBe(true);
    const throughB = await consumeMany(b, 'dana', 2 * trustSize(limit));
    const overshoot = throughB.filter((decision) => decision.allowed).length;
    console.info(`leased limit ${limit} spent through one instance; the other admitted ${overshoot} more (its trust: ${trustSize(limit)})`);
    expect(overshoot).toBeGreaterThanOrEqual(1);
    expect(overshoot).toBeLessThanOrEqual(trustSize(limit));
    expect(throughB.slice(overshoot).every((decision) => !decision.allowed && decision.remaining === 0)).toBe(true);
    // Redis counted what it admitted on trust.
    expect(Number(await admin.get(`two${prefixes}:rl:api:dana`))).toBe(limit + overshoot);
  });

  it('a spent key forgotten by an instance whose key table is full comes back without trust', async () => {
    prefixes += 1;
    const limit = 1000;
    const a = await storeOn(redis.url, 'leased', `full${prefixes}:`, limit);
    const b = await storeOn(redis.url, 'leased', `full${prefixes}:`, limit, 60_000, 2);
    await consumeMany(a, 'erin', limit);
    const first = (await consumeMany(b, 'erin', 2 * trustSize(limit))).filter((decision) => decision.allowed).length;
    // Two other clients fill B's table of two: erin is forgotten with what B knew of her.
    await consumeMany(b, 'other-1', 1);
    await consumeMany(b, 'other-2', 1);
    const again = await consumeMany(b, 'erin', 2 * trustSize(limit));
    expect(again.filter((decision) => decision.allowed)).toHaveLength(0);
    expect(Number(await admin.get(`full${prefixes}:rl:api:erin`))).toBe(limit + first);
  });

  it('a client alternating between two instances gets exactly the limit, its first refusal no earlier than the bound, and truthful RateLimit-Remaining from each', async () => {
    prefixes += 1;
    const limit = 200;
    const [a, b] = [await storeOn(redis.url, 'leased', `alt${prefixes}:`, limit), await storeOn(redis.url, 'leased', `alt${prefixes}:`, limit)];
    const lease = leaseSize(limit);
    const earlyRefusalBound = lease + Math.floor(lease / 2);
    const decisions: RateLimitDecision[] = [];
    for (let i = 0; i < limit + 2 * earlyRefusalBound; i++) decisions.push(await (i % 2 === 0 ? a : b).rateLimits.consume('api', 'erin'));
    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(limit);
    expect(decisions.findIndex((decision) => !decision.allowed)).toBeGreaterThanOrEqual(limit - earlyRefusalBound);
    for (const parity of [0, 1]) {
      const own = decisions.filter((_, i) => i % 2 === parity);
      expectTruthfulRemaining(own.map((decision) => ({ remaining: decision.remaining, admitted: decision.allowed })), limit);
    }
  });

  it('two instances under concurrent load on one key admit exactly the limit', async () => {
    prefixes += 1;
    const limit = 1000;
    const [a, b] = [await storeOn(redis.url, 'leased', `load${prefixes}:`, limit), await storeOn(redis.url, 'leased', `load${prefixes}:`, limit)];
    let admitted = 0;
    // Each of 10 clients per instance sends until it has been refused three times.
    const client = async (store: Store): Promise<void> => {
      for (let refused = 0; refused < 3; ) {
        if ((await store.rateLimits.consume('api', 'gina')).allowed) admitted += 1;
        else refused += 1;
      }
    };
    await Promise.all([a, b].flatMap((store) => Array.from({ length: 10 }, () => client(store))));
    expect(admitted).toBe(limit);
    expect(Number(await admin.get(`load${prefixes}:rl:api:gina`))).toBe(limit);
  });

  it('the first requests of a window are answered without waiting for Redis, unless the last window was spent', async () => {
    prefixes += 1;
    const [limit, windowMs] = [500, 1000];
    const key = `win${prefixes}:rl:api:fred`;
    const store = await storeOn(redis.url, 'leased', `win${prefixes}:`, limit, windowMs);
    await consumeMany(store, 'fred', 20);
    await waitUntil('the window to end in Redis', async () => (await admin.exists(key)) === 0, 2 * windowMs);
    // At once: a decision, not a promise of one, for as many requests as the trust covers.
    const atOnce = Array.from({ length: trustSize(limit) }, () => store.rateLimits.consume('api', 'fred'));
    expect(atOnce.every((decision) => !(decision instanceof Promise) && decision.allowed)).toBe(true);
    expect((await consumeMany(store, 'fred', limit)).filter((decision) => decision.allowed)).toHaveLength(limit - trustSize(limit));
    await waitUntil('the spent window to end in Redis', async () => (await admin.exists(key)) === 0, 2 * windowMs);
    // This instance last heard that the budget was spent: the next window's first request waits for Redis.
    const first = store.rateLimits.consume('api', 'fred');
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toMatchObject({ allowed: true, remaining: limit - 1 });
  });
});
