import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest } from '../helpers/gateway.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import {
  expectSessionForwarded, expectSessionRefused, backchannelLogout, refusedWithin, RESERVED, sessionRequest, sessionsActive, signOut,
  startSessionGateways, type SessionGateways,
} from '../helpers/session-gateways.js';
import { closeOf, OPCODE, openWebSocket } from '../helpers/websocket.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/**
 * Two gateway instances on one real redis-server share their browser sessions: a session made on one opens the
 * other, and a sign-out or a back-channel logout on either holds on both within a second.
 */
let redis: RedisServer;
let upstream: RecordingUpstream;
let gateways: SessionGateways;

beforeAll(async () => {
  [redis, upstream] = await Promise.all([startRedis(), startRecordingUpstream()]);
  gateways = await startSessionGateways(`    ${redis.url}`, 'authgate:', upstream);
}, 60_000);

afterAll(async () => {
  await gateways?.close();
  await Promise.all([upstream?.close(), redis?.close()]);
});

describe('sessions shared through Redis', () => {
  it('a session made on one instance opens the other; a sign-out on one holds on the other within a second', async () => {
    const { a, b } = gateways;
    const cookie = await gateways.signIn('alice');
    expectSessionForwarded(await sessionRequest(upstream, a, cookie), 'alice');
    expectSessionForwarded(await sessionRequest(upstream, b, cookie), 'alice');
    await signOut(a, cookie);
    expectSessionRefused((await refusedWithin(upstream, b, cookie)).refused);
    expectSessionRefused(await sessionRequest(upstream, a, cookie));
  });

  it('a WebSocket opened with a session on one instance closes when the session is signed out on the other', async () => {
    const { a, b } = gateways;
    const cookie = await gateways.signIn('alice');
    const before = upstream.seen.length;
    const foreign: Record<string, string>[] = [{}, { Origin: 'https://evil.example' }];
    for (const origin of foreign) {
      const hijack = await openWebSocket(b.port, '/app/ws', { Cookie: cookie, ...origin });
      expect(hijack.status).toBe(403);
      hijack.socket.destroy();
    }
    expect(upstream.seen).toHaveLength(before);
    const ws = await openWebSocket(b.port, '/app/ws', { Cookie: cookie, Origin: `http://127.0.0.1:${b.port}` });
    expect(ws.status).toBe(101);
    await signOut(a, cookie);
    await ws.closed;
    expect(closeOf(ws.reader.frames.at(-1))).toMatchObject({ opcode: OPCODE.close, status: 1008 });
  });

  it('a back-channel logout received by one instance ends the session on both', async () => {
    const { a, b, provider } = gateways;
    const cookie = await gateways.signIn('alice');
    expectSessionForwarded(await sessionRequest(upstream, a, cookie), 'alice');
    expectSessionForwarded(await sessionRequest(upstream, b, cookie), 'alice');
    expect(await backchannelLogout(b, provider, { sub: 'alice' })).toBe(200);
    expectSessionRefused((await refusedWithin(upstream, a, cookie)).refused);
    expectSessionRefused(await sessionRequest(upstream, b, cookie));
  });

  it('every instance reports the live sessions of the whole store; a scrape still answers while Redis is down', async () => {
    const { a, b } = gateways;
    const before = (await sessionsActive(b)) as number;
    const cookie = await gateways.signIn('alice');
    expect([await sessionsActive(a), await sessionsActive(b)]).toEqual([before + 1, before + 1]);
    await signOut(b, cookie);
    expect([await sessionsActive(a), await sessionsActive(b)]).toEqual([before, before]);
    await gateways.signIn('alice');
    expect(await sessionsActive(a)).toBe(before + 1);
    await redis.stop();
    // The count cannot be had: the scrape answers with the last one.
    expect(await sessionsActive(a)).toBe(before + 1);
    await redis.restart();
    // A restarted Redis without persistence comes back empty: no session is live any more.
    await expect.poll(() => sessionsActive(a), { timeout: 5000 }).toBe(0);
  });

  it('after Redis restarted, a sign-out on one instance still holds on the other within a second', async () => {
    const { a, b } = gateways;
    // The previous test restarted Redis: each instance answers 503 for what needs the store until it reconnected.
    for (const gateway of [a, b]) {
      const startSignIn = () => rawRequest(gateway.port, { target: `${RESERVED}/sign_in?provider=corp&rd=/app/` }).then((answer) => answer.status);
      await expect.poll(startSignIn, { timeout: 5000 }).toBe(302);
    }
    const cookie = await gateways.signIn('alice');
    expectSessionForwarded(await sessionRequest(upstream, b, cookie), 'alice');
    await signOut(a, cookie);
    expectSessionRefused((await refusedWithin(upstream, b, cookie)).refused);
  });

  it('with Redis down, sign-in, sign-out and back-channel logout answer 503 with Retry-After, never a 500', async () => {
    const { a, b, provider } = gateways;
    const cookie = await gateways.signIn('alice');
    await redis.stop();
    try {
      const signIn = await rawRequest(a.port, { target: `${RESERVED}/sign_in?provider=corp&rd=/app/`, headers: [['Accept', 'text/html']] });
      const signOutAnswer = await rawRequest(a.port, { target: `${RESERVED}/sign_out`, headers: [['Cookie', cookie]] });
      // A navigation without a session on a login route starts a sign-in too: its record cannot be written either.
      const navigation = await rawRequest(a.port, { target: '/app/home', headers: [['Accept', 'text/html'], ['Sec-Fetch-Mode', 'navigate']] });
      for (const page of [signIn, signOutAnswer, navigation]) {
        expect(page.status).toBe(503);
        expect(page.headers['retry-after']).toBe('5');
        expect(page.headers['content-type']).toMatch(/^text\/html/);
        expect(page.headers['set-cookie']).toBeUndefined();
      }
      expect(await backchannelLogout(b, provider, { sub: 'alice' })).toBe(503);
      expect(a.logs.some((line) => line.includes('sign-in failed (the session store unreachable?)'))).toBe(true);
      expect(upstream.seen.filter((seen) => seen.url === '/app/home')).toEqual([]);
    } finally {
      await redis.restart();
    }
  });
});
