import { mkdtemp, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { startRedis } from '../helpers/redis.js';
import { signRaw } from '../helpers/tokens.js';
import { startAuthgate, type AuthgateProcess } from './process.js';

/** SPEC §12: `server.workers` > 1 — workers share the port, the primary restarts them and aggregates metrics. */

let upstream: RecordingUpstream;
let gw: AuthgateProcess | undefined;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
});
afterAll(async () => {
  await gw?.kill();
  await upstream?.close();
});

function get(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sum of every `authgate_requests_total` sample for the route. */
async function requestsCounted(adminUrl: string, route: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith('authgate_requests_total{') && line.includes(`route="${route}"`))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** A config file for two workers in front of the recording upstream, one public route. */
async function twoWorkers(accessLog: boolean): Promise<string> {
  const file = join(await mkdtemp(join(tmpdir(), 'authgate-workers-')), 'gateway.yaml');
  await writeFile(
    file,
    `
version: 1
server: { listen: 127.0.0.1:0, workers: 2, shutdown_grace: 2s }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: ${accessLog} }
upstreams:
  api: { url: ${upstream.url} }
routes:
  - { name: public, match: { path: /public/** }, upstream: api, auth: none }
`,
  );
  return file;
}

it('runs two workers on one port, aggregates their metrics, replaces a crashed worker and drains on SIGTERM', async () => {
  gw = await startAuthgate(await twoWorkers(false));
  const running = gw;
  const primary = await running.waitForLog((line) => line.msg === 'authgate primary started');
  const adminUrl = String(primary.admin);
  const listening = (): Record<string, unknown>[] => running.logs.filter((line) => line.msg === 'authgate listening');
  await expect.poll(() => listening().length).toBe(2);
  await expect.poll(async () => (await fetch(`${adminUrl}/readyz`)).status, { timeout: 10_000 }).toBe(200);
  expect(await (await fetch(`${adminUrl}/readyz`)).json()).toMatchObject({ checks: { workers: { expected: 2, ready: 2 } } });
  const unknownEndpoint = await fetch(`${adminUrl}/nowhere`);
  expect(unknownEndpoint.status).toBe(404);
  expect(await unknownEndpoint.json()).toEqual({ error: 'not_found', error_description: 'No such admin endpoint', request_id: expect.any(String) });

  const workers = listening().map((line) => ({ pid: Number(line.pid), url: String(line.url), admin: String(line.admin) }));
  expect(new Set(workers.map((worker) => worker.url)).size).toBe(1);
  const url = workers[0]?.url as string;

  const statuses = await Promise.all(Array.from({ length: 40 }, (_, i) => get(`${url}/public/${i}`)));
  expect(statuses.every((status) => status === 200)).toBe(true);
  // Each worker served part of the load, and the primary's /metrics is their sum.
  const perWorker = await Promise.all(workers.map((worker) => requestsCounted(worker.admin, 'public')));
  expect(perWorker.every((count) => count > 0)).toBe(true);
  expect(perWorker.reduce((a, b) => a + b, 0)).toBe(40);
  expect(await requestsCounted(adminUrl, 'public')).toBe(40);

  // A worker killed outright is replaced; readiness is 503 until it is back.
  process.kill(workers[0]?.pid as number, 'SIGKILL');
  await running.waitForLog((line) => line.msg === 'worker exited; starting another');
  await expect.poll(() => listening().length, { timeout: 10_000 }).toBe(3);
  await expect.poll(async () => (await fetch(`${adminUrl}/readyz`)).status, { timeout: 10_000 }).toBe(200);
  expect(await get(`${url}/public/after`)).toBe(200);

  running.child.kill('SIGTERM');
  expect(await running.exited).toBe(0);
});

it('writes every access line of two busy workers whole to the stdout they share', async () => {
  const running = await startAuthgate(await twoWorkers(true));
  gw = running;
  const listening = (): Record<string, unknown>[] => running.logs.filter((line) => line.msg === 'authgate listening');
  await expect.poll(() => listening().length, { timeout: 10_000 }).toBe(2);
  const url = String(listening()[0]?.url);
  // Long paths make long lines, so both workers' batches are large and written at the same time.
  const path = `/public/${'x'.repeat(400)}`;
  const total = 4000;
  // Unread, the pipe fills up, and the workers' writes meet it full or nearly: what a slow log collector does.
  running.child.stdout?.pause();
  for (let sent = 0; sent < total; sent += 100) {
    const statuses = await Promise.all(Array.from({ length: 100 }, (_, i) => get(`${url}${path}?n=${sent + i}`)));
    expect(statuses.every((status) => status === 200)).toBe(true);
  }
  running.child.stdout?.resume();
  running.child.kill('SIGTERM');
  expect(await running.exited).toBe(0);
  const accessLines = running.logs.filter((line) => line.msg === 'request');
  expect(accessLines).toHaveLength(total);
  expect(running.unparsed).toEqual([]);
});

it('holds a revocation made through the primary on every worker, with Redis down', async () => {
  const secret = 'workers-test-secret-0123456789-abcdefghij';
  const adminToken = 'workers-test-admin-token-0123456789';
  const redis = await startRedis();
  const file = join(await mkdtemp(join(tmpdir(), 'authgate-workers-')), 'gateway.yaml');
  await writeFile(file, `
version: 1
server: { listen: 127.0.0.1:0, workers: 2, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0, token: ${adminToken} }
store: { redis: ${redis.url} }
issuers:
  local: { issuer: https://local.test, secret: ${secret}, algorithms: [HS256], audiences: [api] }
upstreams:
  api: { url: ${upstream.url} }
routes:
  - { name: api, match: { path: /api/** }, upstream: api }
`);
  const running = await startAuthgate(file);
  gw = running;
  try {
    const adminUrl = String((await running.waitForLog((line) => line.msg === 'authgate primary started')).admin);
    await expect.poll(async () => (await fetch(`${adminUrl}/readyz`)).status, { timeout: 10_000 }).toBe(200);
    const url = String(running.logs.find((line) => line.msg === 'authgate listening')?.url);
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'https://local.test', aud: 'api', sub: 'alice', jti: 'revoked-on-every-worker', iat: now, exp: now + 600 };
    const withToken = { authorization: `Bearer ${signRaw('HS256', secret, { alg: 'HS256', typ: 'JWT' }, claims)}` };
    const requests = (n: number): Promise<number[]> => Promise.all(Array.from({ length: n }, () => get(`${url}/api/x`, withToken)));
    expect(await requests(10)).toEqual(Array(10).fill(200));
    // A client that resets the connection in the middle of a revocation's body ends that request, not the primary.
    const admin = new URL(adminUrl);
    const cut = connect(Number(admin.port), admin.hostname);
    await once(cut, 'connect');
    cut.write(`POST /revocations HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"jti":`);
    cut.resetAndDestroy();
    await once(cut, 'close');
    expect((await fetch(`${adminUrl}/readyz`)).status).toBe(200);
    await redis.stop();
    const revoked = await fetch(`${adminUrl}/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jti: claims.jti, exp: claims.exp }),
    });
    // Not in the shared store: each worker holds it in its own mirror, and writes it back once Redis returns.
    expect(revoked.status).toBe(503);
    const forwardedBefore = upstream.seen.length;
    expect(await requests(20)).toEqual(Array(20).fill(401));
    expect(upstream.seen.length).toBe(forwardedBefore);
  } finally {
    await redis.close();
  }
});
