import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { leaseSize, trustSize } from '../../src/store/leases.js';
import { dpopClient } from './dpop.js';
import { rawRequest, type TestGateway } from './gateway.js';
import { startIdp, type Idp } from './idp.js';
import {
  adminRevoke, EXACT_LIMIT, expectForwarded, expectRefused, LEASED_LIMIT, PROPAGATION_DEADLINE_MS, readiness,
  replicaYaml, send, startReplicas, type Sent,
} from './replicas.js';
import { waitUntil } from './redis-topologies.js';
import { expectTruthfulRemaining } from './remaining.js';
import { sharedSessionsSuite } from './topology-sessions.js';
import { startRecordingUpstream, type RecordingUpstream } from './upstream.js';

/** A Redis topology as the shared-store tests drive it. */
export interface TopologyUnderTest {
  /** The value of `store.redis`, indented four spaces. */
  readonly redisYaml: string;
  /** Fails over the primary that holds `key`; resolves once the topology has promoted a replica. */
  failover(key: string): Promise<string>;
  /** On a Cluster, where a subscription can sit on any node: fails the gateways' subscriber node, then revives it. */
  failSubscriberNode?(): Promise<string>;
  /** On a Cluster: fails a primary that holds neither `key` nor a subscription, then revives it. */
  failUnrelatedPrimary?(key: string): Promise<string>;
  /** Calls per command the data nodes served so far (`INFO commandstats`), replicas included. */
  commandCalls(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;
const FAILOVER_TEST_TIMEOUT_MS = 90_000;
/** Requests under load before the failover, and again after the gateways followed it. */
const LOAD_SAMPLE = 60;
const LOAD_WORKERS_PER_GATEWAY = 3;
const FOLLOW_DEADLINE_MS = 30_000;

/**
 * Two gateways on one topology: revocations and limits shared, the leased limit's bound, browser sessions, and a
 * failover under load. The failover runs last: the topology is started once per file and stays failed over.
 */
export function sharedStoreSuite(name: string, start: () => Promise<TopologyUnderTest>, options: { clusterNodesFail?: boolean } = {}): void {
  describe(`two gateways on ${name}`, () => {
    let idp: Idp;
    let upstream: RecordingUpstream;
    let topology: TopologyUnderTest;
    const open: TestGateway[] = [];
    let pairs = 0;

    beforeAll(async () => {
      [idp, upstream, topology] = await Promise.all([startIdp({ keys: ['rsa'] }), startRecordingUpstream(), start()]);
    }, START_TIMEOUT_MS);
    afterEach(async () => {
      await Promise.all(open.splice(0).map((gateway) => gateway.close()));
    });
    afterAll(async () => {
      await Promise.all([idp?.close(), upstream?.close(), topology?.close()]);
    });

    async function pair(): Promise<{ a: TestGateway; b: TestGateway; prefix: string }> {
      pairs += 1;
      const prefix = `${name}${pairs}:`;
      const [a, b] = await startReplicas(2, replicaYaml(idp, upstream, topology.redisYaml, prefix));
      open.push(a as TestGateway, b as TestGateway);
      return { a: a as TestGateway, b: b as TestGateway, prefix };
    }

    function tokenFor(subject = `user-${randomUUID()}`): { token: string; jti: string; exp: number; subject: string } {
      const jti = randomUUID();
      const exp = Math.floor(Date.now() / 1000) + 600;
      return { token: idp.sign({ sub: subject, jti, exp }), jti, exp, subject };
    }

    async function expectRevokedWithin(gateway: TestGateway, token: string, deadlineMs: number): Promise<void> {
      await expect.poll(async () => (await send(upstream, gateway, token, '/api/x')).res.status, { timeout: deadlineMs, interval: 10 }).toBe(401);
      const sent = await send(upstream, gateway, token, '/api/x');
      expectRefused(sent, 401, 'invalid_token');
      expect(sent.res.headers['www-authenticate']).toContain('The access token has been revoked');
    }

    it('a jti and a subject revoked through one gateway are refused by the other within 1 s, and by one started later', async () => {
      const { a, b, prefix } = await pair();
      expect(await readiness(a)).toEqual({ status: 200, store: 'ok' });
      const byJti = tokenFor();
      const bySubject = tokenFor();
      expectForwarded(await send(upstream, b, byJti.token, '/api/x'));
      expect((await adminRevoke(a, { jti: byJti.jti, exp: byJti.exp })).status).toBe(201);
      expect((await adminRevoke(b, { subject: bySubject.subject })).status).toBe(201);
      await expectRevokedWithin(b, byJti.token, PROPAGATION_DEADLINE_MS);
      await expectRevokedWithin(a, bySubject.token, PROPAGATION_DEADLINE_MS);
      // A gateway started afterwards loads both from the revocation set before it serves.
      const [late] = await startReplicas(1, replicaYaml(idp, upstream, topology.redisYaml, prefix));
      open.push(late as TestGateway);
      for (const { token } of [byJti, bySubject]) expectRefused(await send(upstream, late as TestGateway, token, '/api/x'), 401, 'invalid_token');
    });

    it(`an exact limit of ${EXACT_LIMIT} admits exactly ${EXACT_LIMIT} across both gateways, then 429 with RateLimit headers`, async () => {
      const { a, b } = await pair();
      const { token } = tokenFor();
      const results: Sent[] = [];
      for (let i = 0; i < 2 * EXACT_LIMIT; i++) results.push(await send(upstream, i % 2 === 0 ? a : b, token, '/exact/x'));
      const remaining = results.slice(0, EXACT_LIMIT).map((sent) => sent.res.headers['ratelimit-remaining']);
      expect(remaining).toEqual(Array.from({ length: EXACT_LIMIT }, (_, i) => String(EXACT_LIMIT - 1 - i)));
      for (const sent of results.slice(0, EXACT_LIMIT)) expectForwarded(sent);
      for (const sent of results.slice(EXACT_LIMIT)) {
        expectRefused(sent, 429, 'rate_limited');
        expect(sent.res.headers['ratelimit-remaining']).toBe('0');
      }
    });

    it(`a leased limit of ${LEASED_LIMIT} on two gateways admits exactly ${LEASED_LIMIT}, never more, and refuses none before the documented bound`, async () => {
      const { a, b } = await pair();
      const { token } = tokenFor();
      const lease = leaseSize(LEASED_LIMIT);
      // What one other instance may hold unspent: a lease, plus what was left when it asked for the next.
      const earlyRefusalBound = lease + Math.floor(lease / 2);
      const results: Sent[] = [];
      for (let i = 0; i < LEASED_LIMIT + 4 * earlyRefusalBound; i++) results.push(await send(upstream, i % 2 === 0 ? a : b, token, '/leased/x'));
      const admitted = results.filter((sent) => sent.res.status === 200);
      for (const sent of admitted) expectForwarded(sent);
      for (const sent of results.filter((sent) => sent.res.status !== 200)) expectRefused(sent, 429, 'rate_limited');
      // Each gateway ends up spending all it leased, so no point is lost and none is added.
      expect(admitted).toHaveLength(LEASED_LIMIT);
      const firstRefusal = results.findIndex((sent) => sent.res.status === 429);
      expect(firstRefusal).toBeGreaterThanOrEqual(LEASED_LIMIT - earlyRefusalBound);
      for (const parity of [0, 1]) {
        const own = results.filter((_, i) => i % 2 === parity);
        expectTruthfulRemaining(own.map((sent) => ({ remaining: Number(sent.res.headers['ratelimit-remaining']), admitted: sent.res.status === 200 })), LEASED_LIMIT);
      }
    });

    // On a Cluster a subscription sits on one node of many, and a primary can hold neither it nor the revocation
    // set: either can fail without a failover of the revocation set's primary.
    if (options.clusterNodesFail) {
      it('the node carrying the subscriptions fails: both gateways subscribe elsewhere, resync, and keep receiving revocations', async () => {
        const { a, b } = await pair();
        expect(topology.failSubscriberNode).toBeDefined();
        console.info(`${name}: ${await topology.failSubscriberNode?.()}`);
        const [viaA, viaB] = [tokenFor(), tokenFor()];
        await waitUntil('a revocation through A', async () => (await adminRevoke(a, { jti: viaA.jti, exp: viaA.exp })).status === 201, FOLLOW_DEADLINE_MS);
        await waitUntil('a revocation through B', async () => (await adminRevoke(b, { jti: viaB.jti, exp: viaB.exp })).status === 201, FOLLOW_DEADLINE_MS);
        await expectRevokedWithin(b, viaA.token, PROPAGATION_DEADLINE_MS);
        await expectRevokedWithin(a, viaB.token, PROPAGATION_DEADLINE_MS);
      }, FAILOVER_TEST_TIMEOUT_MS);

      it('a primary without the revocation set fails under load: no 5xx, and each gateway reports one outage at most, not one per reconnect', async () => {
        const { a, b, prefix } = await pair();
        expect(topology.failUnrelatedPrimary).toBeDefined();
        const load = startLoad(upstream, [a, b], () => tokenFor().token);
        await waitUntil('load before the failure', async () => load.total() >= LOAD_SAMPLE);
        console.info(`${name}: ${await topology.failUnrelatedPrimary?.(`${prefix}revocations`)}`);
        const atRevival = load.total();
        await waitUntil('load after the revival', async () => load.total() >= atRevival + LOAD_SAMPLE);
        const figures = await load.stop();
        expect(figures.statuses).toEqual({ 200: figures.total });
        // The client stalls while it refreshes its slot map, which a probe may see; the node's retries are not outages.
        for (const gateway of [a, b]) {
          expect(gateway.logs.filter((line) => line.includes('store: Redis unreachable')).length).toBeLessThanOrEqual(1);
          await waitUntil('the store to be ok again', async () => (await readiness(gateway)).status === 200, FOLLOW_DEADLINE_MS);
        }
      }, FAILOVER_TEST_TIMEOUT_MS);
    }

    it(`leased: a gateway that never saw the key admits at most its trust (${trustSize(LEASED_LIMIT)}) after the other spent the budget, then refuses`, async () => {
      const { a, b } = await pair();
      const { token } = tokenFor();
      const throughA: Sent[] = [];
      for (let i = 0; i < LEASED_LIMIT + 2; i++) throughA.push(await send(upstream, a, token, '/leased/x'));
      expect(throughA.filter((sent) => sent.res.status === 200)).toHaveLength(LEASED_LIMIT);
      const throughB: Sent[] = [];
      for (let i = 0; i < 5; i++) throughB.push(await send(upstream, b, token, '/leased/x'));
      const admitted = [...throughA, ...throughB].filter((sent) => sent.res.status === 200);
      const overshoot = admitted.length - LEASED_LIMIT;
      console.info(`${name}: leased limit ${LEASED_LIMIT} spent through one gateway, overshoot through the other: ${overshoot}`);
      expect(overshoot).toBeGreaterThanOrEqual(1);
      expect(overshoot).toBeLessThanOrEqual(trustSize(LEASED_LIMIT));
      for (const sent of throughB.slice(0, overshoot)) expectForwarded(sent);
      for (const sent of throughB.slice(overshoot)) expectRefused(sent, 429, 'rate_limited');
      // A's lease ran out first; refused keys stay refused from memory, with no trust in that window.
      for (const sent of throughA.slice(LEASED_LIMIT)) expectRefused(sent, 429, 'rate_limited');
    });

    it('a DPoP proof one gateway accepted is refused by the other: its jti was claimed in the store', async () => {
      const { a, b } = await pair();
      const client = await dpopClient();
      const token = idp.sign({ sub: `user-${randomUUID()}`, cnf: { jkt: client.jkt } });
      // One Host for both, so one htu names the request on either gateway.
      const proof = await client.proof({ htm: 'GET', htu: 'http://api.example.com/api/x', token });
      const probes = [randomUUID(), randomUUID()];
      const request = (probe: string) => ({ target: '/api/x', headers: [['Host', 'api.example.com'], ['Authorization', `DPoP ${token}`], ['DPoP', proof], ['X-Probe', probe]] as const });
      expect((await rawRequest(a.port, request(probes[0] as string))).status).toBe(200);
      const replayed = await rawRequest(b.port, request(probes[1] as string));
      expect({ status: replayed.status, error: replayed.json().error }).toEqual({ status: 401, error: 'invalid_dpop_proof' });
      expect(upstream.seen.map((seen) => seen.headers['x-probe'])).toContain(probes[0]);
      expect(upstream.seen.map((seen) => seen.headers['x-probe'])).not.toContain(probes[1]);
    });

    // Before the failover, which leaves the topology failed over.
    sharedSessionsSuite(name, () => topology, options);

    it('a failover under load: no 5xx, earlier revocations hold, both gateways follow the new primary without a restart', async () => {
      const { a, b, prefix } = await pair();
      const revokedBefore = tokenFor();
      expect((await adminRevoke(a, { jti: revokedBefore.jti, exp: revokedBefore.exp })).status).toBe(201);
      await expectRevokedWithin(b, revokedBefore.token, PROPAGATION_DEADLINE_MS);

      const load = startLoad(upstream, [a, b], () => tokenFor().token);
      const readyz = watchReadiness([a, b]);
      await waitUntil('load before the failover', async () => load.total() >= LOAD_SAMPLE);
      const started = performance.now();
      const what = await topology.failover(`${prefix}revocations`);
      const promotedMs = performance.now() - started;
      // A write on the new primary through each gateway (the revocation API answers 503 until the store takes it),
      // which the other gateway must then receive.
      const revokedAfter = [tokenFor(), tokenFor()];
      const firstWriteMs = await Promise.all(
        [a, b].map(async (gateway, i) => {
          const { jti, exp } = revokedAfter[i] as { jti: string; exp: number };
          await waitUntil('a revocation to be written', async () => (await adminRevoke(gateway, { jti, exp })).status === 201, FOLLOW_DEADLINE_MS);
          return performance.now() - started;
        }),
      );
      await waitUntil('both gateways ready', async () => (await Promise.all([a, b].map(readiness))).every((r) => r.status === 200), FOLLOW_DEADLINE_MS);
      const readyMs = performance.now() - started;
      const atFollow = load.total();
      await waitUntil('load after the failover', async () => load.total() >= atFollow + LOAD_SAMPLE);
      const figures = await load.stop();
      const seenReadiness = readyz.stop();

      const outages = [a, b].map((gateway) => gateway.logs.filter((line) => line.includes('store: Redis unreachable')).length);
      console.info(`${name} failover (${what}):`, { ...figures, promotedMs: Math.round(promotedMs), firstWriteMs: firstWriteMs.map(Math.round), readyMs: Math.round(readyMs), readiness: seenReadiness, outages });
      expect(figures.fiveHundreds).toEqual([]);
      expect(figures.statuses).toEqual({ 200: figures.total });
      for (const gateway of [a, b]) {
        await expectRevokedWithin(gateway, revokedBefore.token, PROPAGATION_DEADLINE_MS);
        for (const { token } of revokedAfter) await expectRevokedWithin(gateway, token, PROPAGATION_DEADLINE_MS);
        expect(await readiness(gateway)).toEqual({ status: 200, store: 'ok' });
      }
    }, FAILOVER_TEST_TIMEOUT_MS);
  });
}

interface LoadFigures {
  readonly total: number;
  readonly statuses: Record<number, number>;
  readonly fiveHundreds: string[];
  readonly maxLatencyMs: number;
}

/** Workers sending authenticated, rate-limited requests (both modes) through every gateway until stopped. */
function startLoad(upstream: RecordingUpstream, gateways: readonly TestGateway[], mint: () => string): { total(): number; stop(): Promise<LoadFigures> } {
  let running = true;
  const statuses: Record<number, number> = {};
  const fiveHundreds: string[] = [];
  let total = 0;
  let maxLatencyMs = 0;
  const worker = async (gateway: TestGateway, index: number): Promise<void> => {
    const token = mint();
    for (let i = 0; running; i++) {
      const sentAt = performance.now();
      const { res } = await send(upstream, gateway, token, i % 2 === 0 ? `/load/${index}` : `/api/${index}`);
      maxLatencyMs = Math.max(maxLatencyMs, performance.now() - sentAt);
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      total += 1;
      if (res.status >= 500) fiveHundreds.push(`${res.status} ${res.body}`);
    }
  };
  const workers = gateways.flatMap((gateway) => Array.from({ length: LOAD_WORKERS_PER_GATEWAY }, (_, i) => worker(gateway, i)));
  return {
    total: () => total,
    async stop() {
      running = false;
      await Promise.all(workers);
      return { total, statuses, fiveHundreds, maxLatencyMs: Math.round(maxLatencyMs) };
    },
  };
}

/** Polls every gateway's /readyz and keeps each change, as `gateway#: status store`. */
function watchReadiness(gateways: readonly TestGateway[]): { stop(): string[] } {
  const seen: string[] = [];
  const last = new Map<number, string>();
  const timer = setInterval(() => {
    gateways.forEach((gateway, index) => {
      void readiness(gateway).then(({ status, store }) => {
        const now = `${status} ${store}`;
        if (last.get(index) !== now) seen.push(`gateway ${index}: ${now}`);
        last.set(index, now);
      }, () => undefined);
    });
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return seen;
    },
  };
}
