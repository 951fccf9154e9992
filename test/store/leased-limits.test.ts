import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RateLimitConfig, RateLimitMode } from '../../src/config/types.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import { createStore, type RateLimitDecision, type Store } from '../../src/store/index.js';
import { leaseSize } from '../../src/store/leases.js';
import { redisUrlConfig, startRedis, startTcpProxy, type RedisServer, type TcpProxy } from '../helpers/redis.js';

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

function limitOf(mode: RateLimitMode, limit = LIMIT): Map<string, RateLimitConfig> {
  return new Map([['api', { name: 'api', key: { kind: 'subject' }, limit, windowMs: 60_000, maxKeys: 1000, mode }]]);
}

async function storeOn(url: string, mode: RateLimitMode, prefix: string, limit = LIMIT): Promise<Store> {
  const store = createStore({ redis: redisUrlConfig(url), prefix }, limitOf(mode, limit), { logger: silent, metrics: new Metrics() });
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
    const before = await scriptCalls();
    expect((await consumeMany(leased, 'alice', 200)).every((decision) => decision.allowed)).toBe(true);
    const leasedCalls = (await scriptCalls()) - before;
    expect((await consumeMany(exact, 'alice', 200)).every((decision) => decision.allowed)).toBe(true);
    const exactCalls = (await scriptCalls()) - before - leasedCalls;
    // A lease of 50 is refilled when half spent: about 200 / 50 calls, plus the first.
    expect(leasedCalls).toBeLessThanOrEqual(Math.ceil(200 / leaseSize(limit)) + 2);
    expect(exactCalls).toBe(200);
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
