import { once } from 'node:events';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomId } from '../../src/login/cookies.js';
import { MemorySessionStore } from '../../src/login/sessions/memory.js';
import type { RedisSessionStore } from '../../src/login/sessions/redis.js';
import { PRE_LOGIN_TTL_MS, type PreLogin, type Session, type SessionStore } from '../../src/login/sessions/types.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { RedisSessionStores } from '../helpers/session-stores.js';

const TIMEOUTS = { idleMs: 30 * 60_000, absoluteMs: 12 * 3_600_000 };
const T0 = Date.UTC(2026, 0, 1);

class Clock {
  ms = T0;
  readonly now = (): number => this.ms;
}

function preLogin(provider = 'corp'): PreLogin {
  return { provider, state: randomId(), nonce: randomId(), codeVerifier: randomId(), returnTo: '/app' };
}

function session(clock: Clock, overrides: Partial<Session> = {}): Session {
  return {
    id: randomId(),
    provider: 'corp',
    subject: 'alice',
    idpSid: 'idp-sid-1',
    claims: { sub: 'alice', roles: ['staff'] },
    tokens: { idToken: 'id.token.x', accessToken: 'access-1', accessTokenExpiresAt: clock.ms + 60_000, refreshToken: 'refresh-1' },
    createdAt: clock.ms,
    lastSeenAt: clock.ms,
    ...overrides,
  };
}

/** Resolves with the ended session IDs `store` hears of, once `count` arrived; rejects after `deadlineMs`. */
function endsHeard(store: SessionStore, count: number, deadlineMs = 1000): Promise<string[]> {
  const heard: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`heard ${heard.length} of ${count} session ends within ${deadlineMs} ms`));
    }, deadlineMs);
    const stop = store.onEnd((id) => {
      heard.push(id);
      if (heard.length < count) return;
      clearTimeout(timer);
      stop();
      resolve(heard);
    });
  });
}

let redis: RedisServer;
let stores: RedisSessionStores;
beforeAll(async () => {
  redis = await startRedis();
  stores = new RedisSessionStores(redis.url);
});
afterAll(async () => {
  stores.close();
  await redis.close();
});

function redisStore(clock: Clock, prefix = 'ag:'): Promise<RedisSessionStore> {
  return stores.open(prefix, TIMEOUTS, clock.now);
}

describe.each([
  ['memory', async (clock: Clock) => new MemorySessionStore(TIMEOUTS, clock.now)],
  ['redis', async (clock: Clock) => redisStore(clock, `ag${randomId().slice(0, 6)}:`)],
])('%s session store', (_kind, makeStore) => {
  it('hands a pre-login record out exactly once', async () => {
    const store = await makeStore(new Clock());
    const record = preLogin();
    const flow = randomId();
    await store.savePreLogin(flow, record, PRE_LOGIN_TTL_MS);
    expect(await store.takePreLogin(randomId())).toBeUndefined();
    const taken = await Promise.all([store.takePreLogin(flow), store.takePreLogin(flow)]);
    expect(taken.filter((r) => r !== undefined)).toEqual([record]);
    expect(await store.takePreLogin(flow)).toBeUndefined();
  });

  it('keeps sessions apart and serves them until they end', async () => {
    const clock = new Clock();
    const store = await makeStore(clock);
    const a = session(clock);
    const b = session(clock, { subject: 'bob', idpSid: undefined });
    await store.create(a);
    await store.create(b);
    expect(await store.get(a.id)).toEqual(a);
    expect(store.cached(b.id)).toEqual(b);
    expect(await store.get(randomId())).toBeUndefined();
    const ended = endsHeard(store, 1);
    await store.end(a.id);
    expect(await ended).toEqual([a.id]);
    expect(store.cached(a.id)).toBeUndefined();
    expect(await store.get(a.id)).toBeUndefined();
    expect(await store.get(b.id)).toEqual(b);
  });

  it('ends a session after the idle timeout unless used, and after the absolute timeout regardless', async () => {
    const clock = new Clock();
    const store = await makeStore(clock);
    const s = session(clock);
    await store.create(s);
    clock.ms += TIMEOUTS.idleMs - 1;
    const live = await store.get(s.id);
    expect(live).toBeDefined();
    store.touch(live as Session);
    clock.ms += TIMEOUTS.idleMs - 1;
    expect(await store.get(s.id)).toBeDefined();
    clock.ms += TIMEOUTS.idleMs;
    expect(store.cached(s.id)).toBeUndefined();
    expect(await store.get(s.id)).toBeUndefined();

    const busy = session(clock);
    await store.create(busy);
    for (let used = 0; used < TIMEOUTS.absoluteMs; used += TIMEOUTS.idleMs / 2) {
      clock.ms += TIMEOUTS.idleMs / 2;
      const current = await store.get(busy.id);
      if (current !== undefined) store.touch(current);
    }
    expect(clock.ms - busy.createdAt).toBeGreaterThanOrEqual(TIMEOUTS.absoluteMs);
    expect(await store.get(busy.id)).toBeUndefined();
  });

  it('counts the live sessions: not the ended ones, nor those past a timeout', async () => {
    const clock = new Clock();
    const store = await makeStore(clock);
    expect(await store.countLive()).toBe(0);
    const [kept, ended, idle] = [session(clock), session(clock), session(clock)];
    for (const s of [kept, ended, idle]) await store.create(s);
    expect(await store.countLive()).toBe(3);
    await store.end(ended.id);
    expect(await store.countLive()).toBe(2);
    clock.ms += TIMEOUTS.idleMs / 2;
    store.touch((await store.get(kept.id)) as Session);
    clock.ms += TIMEOUTS.idleMs / 2;
    expect(await store.countLive()).toBe(1);
    clock.ms += TIMEOUTS.idleMs;
    expect(await store.countLive()).toBe(0);
  });

  it('ends every session of a subject, or of a provider session, and only those', async () => {
    const clock = new Clock();
    const store = await makeStore(clock);
    const alice1 = session(clock, { idpSid: 'sid-a' });
    const alice2 = session(clock, { idpSid: 'sid-b' });
    const aliceElsewhere = session(clock, { provider: 'partner', idpSid: 'sid-a' });
    const bob = session(clock, { subject: 'bob', idpSid: 'sid-c' });
    for (const s of [alice1, alice2, aliceElsewhere, bob]) await store.create(s);
    expect(await store.endByIdpSession('corp', 'sid-b')).toBe(1);
    expect(await store.get(alice2.id)).toBeUndefined();
    expect(await store.endBySubject('corp', 'alice')).toBe(1);
    expect(await store.get(alice1.id)).toBeUndefined();
    expect(await store.get(aliceElsewhere.id)).toBeDefined();
    expect(await store.get(bob.id)).toBeDefined();
    expect(await store.endBySubject('corp', 'nobody')).toBe(0);
  });

  it('lets one refresher at a time hold a session, and commits its rotated tokens in one write', async () => {
    const clock = new Clock();
    const store = await makeStore(clock);
    const s = session(clock);
    await store.create(s);
    const lock = await store.lockRefresh(s.id, 10_000);
    expect(lock?.current).toEqual(s);
    expect(await store.lockRefresh(s.id, 10_000)).toBeUndefined();
    const rotated = { idToken: 'id.token.y', accessToken: 'access-2', accessTokenExpiresAt: clock.ms + 120_000, refreshToken: 'refresh-2' };
    expect(await lock?.commit(rotated, { sub: 'alice', roles: ['staff', 'admin'] })).toBe(true);
    await lock?.release();
    const after = await store.get(s.id);
    expect(after?.tokens).toEqual(rotated);
    expect(after?.claims).toEqual({ sub: 'alice', roles: ['staff', 'admin'] });
    const next = await store.lockRefresh(s.id, 10_000);
    expect(next?.current?.tokens.refreshToken).toBe('refresh-2');
    await next?.release();
  });

  it('refuses a commit once the lock expired and another refresher took it', async () => {
    const clock = new Clock();
    const store = await makeStore(clock);
    const s = session(clock);
    await store.create(s);
    const slow = await store.lockRefresh(s.id, 50);
    expect(slow).toBeDefined();
    // Redis expires the lock in real time; the memory store by its clock.
    clock.ms += 51;
    const deadline = Date.now() + 2000;
    let fast = await store.lockRefresh(s.id, 10_000);
    while (fast === undefined && Date.now() < deadline) fast = await store.lockRefresh(s.id, 10_000);
    expect(fast).toBeDefined();
    const tokens = { ...s.tokens, refreshToken: 'from-the-slow-one' };
    expect(await slow?.commit(tokens, s.claims)).toBe(false);
    expect((await store.get(s.id))?.tokens.refreshToken).toBe('refresh-1');
    await slow?.release();
    expect(await store.lockRefresh(s.id, 10_000)).toBeUndefined();
  });

  it('accepts a logout token jti once', async () => {
    const store = await makeStore(new Clock());
    expect(await store.firstUseOfJti('corp', 'jti-1', 60_000)).toBe(true);
    expect(await store.firstUseOfJti('corp', 'jti-1', 60_000)).toBe(false);
    expect(await store.firstUseOfJti('partner', 'jti-1', 60_000)).toBe(true);
  });
});

describe('memory session store', () => {
  it('forgets a pre-login record after 10 minutes', async () => {
    const clock = new Clock();
    const store = new MemorySessionStore(TIMEOUTS, clock.now);
    const flow = randomId();
    await store.savePreLogin(flow, preLogin(), PRE_LOGIN_TTL_MS);
    clock.ms += PRE_LOGIN_TTL_MS;
    expect(await store.takePreLogin(flow)).toBeUndefined();
  });

  it('holds a bounded number of sign-ins under way: anyone may start one, so the oldest goes first', async () => {
    const store = new MemorySessionStore(TIMEOUTS, new Clock().now, 3);
    const flows = [randomId(), randomId(), randomId(), randomId()];
    for (const flow of flows) await store.savePreLogin(flow, preLogin(), PRE_LOGIN_TTL_MS);
    expect(await store.takePreLogin(flows[0] as string)).toBeUndefined();
    for (const flow of flows.slice(1)) expect(await store.takePreLogin(flow)).toBeDefined();
  });
});

/** Two gateway instances on one Redis, sharing a clock. */
async function twoInstances(): Promise<{ clock: Clock; one: RedisSessionStore; two: RedisSessionStore }> {
  const clock = new Clock();
  const prefix = `two${randomId().slice(0, 6)}:`;
  return { clock, one: await redisStore(clock, prefix), two: await redisStore(clock, prefix) };
}

describe('redis session store across instances', () => {
  it('keeps pre-login records for 10 minutes in Redis', async () => {
    const store = await redisStore(new Clock(), 'ttl:');
    const flow = randomId();
    await store.savePreLogin(flow, preLogin(), PRE_LOGIN_TTL_MS);
    const probe = new Redis(redis.url);
    const ttl = await probe.pttl(`ttl:login-flow:${flow}`);
    expect(ttl).toBeGreaterThan(PRE_LOGIN_TTL_MS - 5_000);
    expect(ttl).toBeLessThanOrEqual(PRE_LOGIN_TTL_MS);
    probe.disconnect();
  });

  it('a sign-out on one instance holds on another within 1 s, though the other held a copy', async () => {
    const { clock, one, two } = await twoInstances();
    const s = session(clock);
    await one.create(s);
    expect(two.cached(s.id)).toBeUndefined();
    expect(await two.get(s.id)).toEqual(s);
    expect(two.cached(s.id)).toEqual(s);
    const heard = endsHeard(two, 1, 1000);
    await one.end(s.id);
    expect(await heard).toEqual([s.id]);
    expect(two.cached(s.id)).toBeUndefined();
    expect(await two.get(s.id)).toBeUndefined();
  });

  it('a back-channel logout handled by one instance ends the copies on the other', async () => {
    const { clock, one, two } = await twoInstances();
    const a = session(clock, { idpSid: 'sid-9' });
    const b = session(clock, { idpSid: 'sid-9' });
    await one.create(a);
    await one.create(b);
    await two.get(a.id);
    await two.get(b.id);
    const heard = endsHeard(two, 2, 1000);
    expect(await one.endByIdpSession('corp', 'sid-9')).toBe(2);
    expect((await heard).sort()).toEqual([a.id, b.id].sort());
    expect(two.cached(a.id)).toBeUndefined();
    expect(await two.get(b.id)).toBeUndefined();
  });

  it('a refresh on one instance replaces the other instance copy, and only one instance refreshes', async () => {
    const { clock, one, two } = await twoInstances();
    const s = session(clock);
    await one.create(s);
    await two.get(s.id);
    const locks = await Promise.all([one.lockRefresh(s.id, 10_000), two.lockRefresh(s.id, 10_000)]);
    const held = locks.filter((lock) => lock !== undefined);
    expect(held).toHaveLength(1);
    const rotated = { ...s.tokens, accessToken: 'access-2', refreshToken: 'refresh-2' };
    expect(await held[0]?.commit(rotated, s.claims)).toBe(true);
    await held[0]?.release();
    const deadline = Date.now() + 1000;
    while (two.cached(s.id) !== undefined && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
    expect((await two.get(s.id))?.tokens).toEqual(rotated);
    expect((await one.get(s.id))?.tokens).toEqual(rotated);
  });

  it('counts the sessions of every instance alike on each', async () => {
    const { clock, one, two } = await twoInstances();
    const [a, b, c] = [session(clock), session(clock, { subject: 'bob' }), session(clock, { subject: 'carol', idpSid: 'sid-c' })];
    await one.create(a);
    await two.create(b);
    await two.create(c);
    expect([await one.countLive(), await two.countLive()]).toEqual([3, 3]);
    await one.end(b.id);
    expect(await one.endByIdpSession('corp', 'sid-c')).toBe(1);
    expect([await one.countLive(), await two.countLive()]).toEqual([1, 1]);
  });

  it('a logout token jti seen by one instance is a replay on the other', async () => {
    const { one, two } = await twoInstances();
    expect(await one.firstUseOfJti('corp', 'jti-x', 60_000)).toBe(true);
    expect(await two.firstUseOfJti('corp', 'jti-x', 60_000)).toBe(false);
  });

  it('an instance whose subscription dropped subscribes again and forgets its copies: an end it missed holds there', async () => {
    const clock = new Clock();
    const prefix = `cut${randomId().slice(0, 6)}:`;
    const one = await redisStore(clock, prefix);
    const { store: two, subscriber } = await stores.openFollowing(prefix, TIMEOUTS, clock.now);
    const [missed, heard] = [session(clock), session(clock)];
    for (const s of [missed, heard]) {
      await one.create(s);
      await two.get(s.id);
    }
    const cut = once(subscriber, 'end');
    subscriber.disconnect();
    await cut;
    await one.end(missed.id);
    expect(two.cached(missed.id)).toEqual(missed);
    await subscriber.connect();
    await expect.poll(() => two.cached(missed.id), { timeout: 1000, interval: 5 }).toBeUndefined();
    expect(await two.get(missed.id)).toBeUndefined();
    const ends = endsHeard(two, 1, 1000);
    await one.end(heard.id);
    expect(await ends).toEqual([heard.id]);
  });

  it('the subscription remade while commands still fail (a failover): the copies held keep serving, and a session read as gone never comes back', async () => {
    const clock = new Clock();
    const prefix = `failover${randomId().slice(0, 6)}:`;
    const one = await redisStore(clock, prefix);
    const { store: two, subscriber, commands } = await stores.openFollowing(prefix, TIMEOUTS, clock.now);
    const [held, gone, unknown] = [session(clock), session(clock), session(clock)];
    for (const s of [held, gone]) {
      await one.create(s);
      await two.get(s.id);
    }
    await one.create(unknown);
    const resubscribe = async (): Promise<void> => {
      const cut = once(subscriber, 'end');
      subscriber.disconnect();
      await cut;
      await subscriber.connect();
      await expect.poll(() => two.cached(held.id) ?? two.cached(gone.id), { timeout: 1000, interval: 5 }).toBeUndefined();
    };
    // First a failover that commands live through: the ended session is read as gone.
    await one.end(gone.id);
    await resubscribe();
    expect(await two.get(gone.id)).toBeUndefined();
    await two.get(held.id);
    // Then one where they fail while the subscription is remade.
    const commandsDown = once(commands, 'end');
    commands.disconnect();
    await commandsDown;
    await resubscribe();
    // Every request of the session at once, as a browser loads a page: each one served by the copy.
    expect(await Promise.all([two.get(held.id), two.get(held.id), two.get(held.id)])).toEqual([held, held, held]);
    await expect(two.get(gone.id)).rejects.toThrow();
    // A session this instance never held has nothing to stand for it.
    await expect(two.get(unknown.id)).rejects.toThrow();
    await commands.connect();
    expect(await two.get(held.id)).toEqual(held);
  });

  it('a use noted with tokens older than the copy held does not set the copy back to them', async () => {
    const clock = new Clock();
    const store = await redisStore(clock, `stale${randomId().slice(0, 6)}:`);
    const s = session(clock);
    await store.create(s);
    // A request read the session, then another refreshed it meanwhile; this instance reads the new tokens.
    const held = await store.get(s.id);
    const lock = await store.lockRefresh(s.id, 10_000);
    const rotated = { idToken: 'id.token.y', accessToken: 'access-2', accessTokenExpiresAt: clock.ms + 120_000, refreshToken: 'refresh-2' };
    expect(await lock?.commit(rotated, s.claims)).toBe(true);
    await lock?.release();
    expect((await store.get(s.id))?.tokens.accessToken).toBe('access-2');
    clock.ms += 60_000;
    store.touch(held as Session);
    expect(store.cached(s.id)?.tokens.accessToken).toBe('access-2');
  });

  it('a use noted after the session ended brings nothing of it back', async () => {
    const clock = new Clock();
    const prefix = `touch${randomId().slice(0, 6)}:`;
    const store = await redisStore(clock, prefix);
    const s = session(clock);
    await store.create(s);
    await store.end(s.id);
    // A request that held the session before it ended, a touch interval later.
    clock.ms += 60_000;
    store.touch(s);
    // Later commands on the same connection: the touch has been served by then.
    expect(await store.countLive()).toBe(0);
    expect(await store.get(s.id)).toBeUndefined();
    const probe = new Redis(redis.url);
    expect(await probe.keys(`${prefix}*`)).toEqual([]);
    probe.disconnect();
  });

  it('a session gone from Redis without an announcement ends here at its next touch (a lost publish)', async () => {
    const clock = new Clock();
    const prefix = `lost${randomId().slice(0, 6)}:`;
    const store = await redisStore(clock, prefix);
    const s = session(clock);
    await store.create(s);
    expect(store.cached(s.id)).toEqual(s);
    // Another instance's sign-out whose publish this instance never got.
    const probe = new Redis(redis.url);
    expect(await probe.del(`${prefix}session:{${s.id}}`)).toBe(1);
    probe.disconnect();
    expect(store.cached(s.id)).toEqual(s);
    const heard = endsHeard(store, 1, 1000);
    clock.ms += 60_000;
    store.touch(s);
    expect(await heard).toEqual([s.id]);
    expect(store.cached(s.id)).toBeUndefined();
    expect(await store.get(s.id)).toBeUndefined();
  });

  it('bounds its local copies', async () => {
    const clock = new Clock();
    const store = await redisStore(clock, 'x5:');
    const sessions = Array.from({ length: 101 }, () => session(clock));
    for (const s of sessions) await store.create(s);
    expect(store.cached(sessions[0]?.id as string)).toBeUndefined();
    expect(store.cached(sessions[100]?.id as string)).toBeDefined();
    expect(await store.get(sessions[0]?.id as string)).toBeDefined();
  });
});
