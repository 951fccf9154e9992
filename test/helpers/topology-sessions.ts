import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestGateway } from './gateway.js';
import {
  backchannelLogout, expectSessionForwarded, expectSessionRefused, refusedWithin, sessionRequest, sessionsActive, signOut,
  startSessionGateways, type SessionGateways, type SessionSent,
} from './session-gateways.js';
import type { TopologyUnderTest } from './topology-suite.js';
import { startRecordingUpstream, type RecordingUpstream } from './upstream.js';

const START_TIMEOUT_MS = 60_000;
const NODE_FAILURE_TEST_TIMEOUT_MS = 90_000;
/** Session requests counted against the commands the data nodes served. */
const HELD_REQUESTS = 100;
const CONCURRENT_REFRESHES = 8;
/** What the session store may send (every background command of ioredis, the sentinels and replication is left out). */
const SESSION_COMMANDS = [
  'hgetall', 'hget', 'hset', 'del', 'eval', 'evalsha', 'multi', 'exec', 'get', 'set', 'getdel', 'zadd', 'zrem',
  'zremrangebyscore', 'zcard', 'sadd', 'srem', 'smembers', 'pexpire',
];

/**
 * Browser sessions on two gateways sharing one topology: made on one, honoured by the other; a sign-out and a
 * back-channel logout hold on both within a second; a due refresh runs once; the gauge counts the whole store; and a
 * session request an instance holds costs no Redis command. One pair of gateways serves every case of the file.
 */
export function sharedSessionsSuite(name: string, topology: () => TopologyUnderTest, options: { clusterNodesFail?: boolean } = {}): void {
  describe(`browser sessions on two gateways on ${name}`, () => {
    let upstream: RecordingUpstream;
    let gateways: SessionGateways;

    beforeAll(async () => {
      upstream = await startRecordingUpstream();
      gateways = await startSessionGateways(topology().redisYaml, `${name}-sessions:`, upstream);
    }, START_TIMEOUT_MS);
    afterAll(async () => {
      await gateways?.close();
      await upstream?.close();
    });

    const request = (gateway: TestGateway, cookie: string): Promise<SessionSent> => sessionRequest(upstream, gateway, cookie);

    async function expectSignedOutOn(gateway: TestGateway, cookie: string, what: string): Promise<void> {
      const { elapsedMs, refused } = await refusedWithin(upstream, gateway, cookie);
      expectSessionRefused(refused);
      console.info(`${name}: ${what} held on the other gateway after ${Math.round(elapsedMs)} ms`);
    }

    it('a session made through one gateway opens the other; a sign-out through one holds on the other within 1 s', async () => {
      const { a, b } = gateways;
      const cookie = await gateways.signIn('alice');
      expectSessionForwarded(await request(a, cookie), 'alice');
      expectSessionForwarded(await request(b, cookie), 'alice');
      await signOut(a, cookie);
      await expectSignedOutOn(b, cookie, 'a sign-out');
      expectSessionRefused(await request(a, cookie));
    });

    it('a back-channel logout through either gateway ends what it names on both: one provider session, then a subject', async () => {
      const { a, b, provider } = gateways;
      const [bobFirst, bobSecond, alice] = [await gateways.signIn('bob'), await gateways.signIn('bob'), await gateways.signIn('alice')];
      const first = await request(a, bobFirst);
      expectSessionForwarded(first, 'bob');
      const sid = first.seen?.headers['x-idp-sid'] as string;
      for (const [cookie, user] of [[bobFirst, 'bob'], [bobSecond, 'bob'], [alice, 'alice']] as const) {
        for (const gateway of [a, b]) expectSessionForwarded(await request(gateway, cookie), user);
      }
      expect(await backchannelLogout(a, provider, { sid })).toBe(200);
      await expectSignedOutOn(b, bobFirst, 'a back-channel logout by sid');
      expectSessionRefused(await request(a, bobFirst));
      for (const gateway of [a, b]) expectSessionForwarded(await request(gateway, bobSecond), 'bob');
      expect(await backchannelLogout(b, provider, { sub: 'bob' })).toBe(200);
      await expectSignedOutOn(a, bobSecond, 'a back-channel logout by sub');
      expectSessionRefused(await request(b, bobSecond));
      for (const gateway of [a, b]) expectSessionForwarded(await request(gateway, alice), 'alice');
    });

    it(`${CONCURRENT_REFRESHES} requests through both gateways with a refresh due refresh once; both then forward the new token`, async () => {
      const { a, b, provider } = gateways;
      // The sign-in's access token lives 30 s: within `refresh_before` (1 m), so the next request refreshes it.
      provider.tamperTokenResponse((body) => ({ ...body, expires_in: 30 }));
      const cookie = await gateways.signIn('alice').finally(() => provider.tamperTokenResponse(undefined));
      const before = provider.tokenRequests;
      const burst = await Promise.all(Array.from({ length: CONCURRENT_REFRESHES }, (_, i) => request(i % 2 === 0 ? a : b, cookie)));
      for (const sent of burst) expectSessionForwarded(sent, 'alice');
      expect(provider.tokenRequests).toBe(before + 1);
      const forwarded = new Set(burst.map((sent) => sent.seen?.headers.authorization));
      const [viaA, viaB] = [await request(a, cookie), await request(b, cookie)];
      expect(viaA.seen?.headers.authorization).toBe(viaB.seen?.headers.authorization);
      // The refreshed token is no longer due: nothing more is refreshed.
      expect(provider.tokenRequests).toBe(before + 1);
      console.info(`${name}: ${CONCURRENT_REFRESHES} concurrent requests forwarded ${forwarded.size} distinct access tokens, one refresh`);
    });

    it('both gateways count the live sessions of the whole store', async () => {
      const { a, b } = gateways;
      const before = (await sessionsActive(a)) as number;
      const cookie = await gateways.signIn('bob');
      expect([await sessionsActive(a), await sessionsActive(b)]).toEqual([before + 1, before + 1]);
      await signOut(b, cookie);
      expect([await sessionsActive(a), await sessionsActive(b)]).toEqual([before, before]);
    });

    it(`a session request a gateway holds costs no Redis command (${HELD_REQUESTS} requests); its first one there costs one read`, async () => {
      const { a, b } = gateways;
      const cookie = await gateways.signIn('alice');
      expectSessionForwarded(await request(a, cookie), 'alice');
      const beforeFirst = await topology().commandCalls();
      expectSessionForwarded(await request(b, cookie), 'alice');
      const beforeHeld = await topology().commandCalls();
      for (let i = 0; i < HELD_REQUESTS; i++) expectSessionForwarded(await request(i % 2 === 0 ? a : b, cookie), 'alice');
      const after = await topology().commandCalls();
      console.info(`${name}: commands for a session's first request on a gateway:`, sessionCommands(beforeFirst, beforeHeld), `for ${HELD_REQUESTS} held ones:`, sessionCommands(beforeHeld, after));
      expect(sessionCommands(beforeFirst, beforeHeld)).toEqual({ hgetall: 1 });
      expect(sessionCommands(beforeHeld, after)).toEqual({});
    });

    // On a Cluster the announcements' subscription sits on one node of many, which can fail without the rest.
    if (options.clusterNodesFail) {
      it('the node carrying the announcements fails: both gateways subscribe elsewhere, and a sign-out still holds on both within 1 s', async () => {
        const { a, b } = gateways;
        const cookie = await gateways.signIn('bob');
        expectSessionForwarded(await request(b, cookie), 'bob');
        console.info(`${name}: ${await (topology().failSubscriberNode as () => Promise<string>)()}`);
        expectSessionForwarded(await request(b, cookie), 'bob');
        await signOut(a, cookie);
        await expectSignedOutOn(b, cookie, 'a sign-out after the subscriber node failed');
      }, NODE_FAILURE_TEST_TIMEOUT_MS);
    }
  });
}

/** The session store's commands the nodes served between two `commandCalls`, those served at all. */
function sessionCommands(from: Record<string, number>, to: Record<string, number>): Record<string, number> {
  const served: Record<string, number> = {};
  for (const command of SESSION_COMMANDS) {
    const calls = (to[command] ?? 0) - (from[command] ?? 0);
    if (calls !== 0) served[command] = calls;
  }
  return served;
}
