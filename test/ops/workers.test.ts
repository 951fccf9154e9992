import { mkdtemp, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
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

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
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
