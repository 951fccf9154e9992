import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { signRaw } from '../helpers/tokens.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { startAuthgate, type AuthgateProcess } from './process.js';
import { promtool } from './promtool.js';

/**
 * What a real gateway (and a cluster primary) serves on /metrics passes `promtool check metrics`, the linter
 * Prometheus ships: counter/gauge naming, units, help text. Stock dashboards depend on the standard names.
 */

const SECRET = 'a-metrics-lint-secret-that-is-long-enough-for-hs256';
let upstream: RecordingUpstream;
let redis: RedisServer;
const running: AuthgateProcess[] = [];

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  redis = await startRedis();
});
afterAll(async () => {
  for (const gw of running) await gw.kill();
  await upstream?.close();
  await redis?.stop();
});

async function gatewayWith(server: string): Promise<AuthgateProcess> {
  const file = join(await mkdtemp(join(tmpdir(), 'authgate-metrics-')), 'gateway.yaml');
  await writeFile(
    file,
    `
version: 1
server: ${server}
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: false }
store: { redis: "${redis.url}", prefix: "lint-${running.length}:" }
issuers:
  local: { issuer: urn:metrics-lint, audiences: [api], secret: ${SECRET}, algorithms: [HS256] }
upstreams:
  api: { url: ${upstream.url} }
  dead: { url: http://127.0.0.1:1 }
rate_limits:
  tight: { key: ip, limit: 1, window: 1m }
routes:
  - { name: limited, match: { path: /limited }, upstream: api, auth: none, rate_limit: [tight] }
  - { name: dead, match: { path: /dead }, upstream: dead, auth: none }
  - { name: api, match: { path: /** }, upstream: api }
`,
  );
  const gw = await startAuthgate(file);
  running.push(gw);
  return gw;
}

/** Traffic that fills every authgate_* family: allowed, denied, rate limited, upstream down, cache hits. */
async function exercise(url: string): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const token = signRaw('HS256', SECRET, { alg: 'HS256', typ: 'JWT' }, { iss: 'urn:metrics-lint', aud: 'api', sub: 'u1', iat: now, exp: now + 600 });
  const statuses = [];
  for (const [path, headers] of [
    ['/a', { authorization: `Bearer ${token}` }],
    ['/a', { authorization: `Bearer ${token}` }],
    ['/a', {}],
    ['/limited', {}],
    ['/limited', {}],
    ['/dead', {}],
  ] as const) {
    statuses.push((await fetch(`${url}${path}`, { headers })).status);
  }
  expect(statuses).toEqual([200, 200, 401, 200, 429, 502]);
}

describe('promtool check metrics', () => {
  it("passes on a gateway's /metrics after real traffic, with the standard process and Node.js names", async () => {
    const gw = await gatewayWith('{ listen: 127.0.0.1:0 }');
    await exercise(gw.url);
    const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    for (const name of ['authgate_requests_total', 'authgate_auth_denied_total', 'authgate_rate_limited_total', 'authgate_upstream_errors_total']) {
      expect(text).toContain(`\n${name}{`);
    }
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    expect(text).not.toContain('authgate_process_');
    expect(await promtool(['check', 'metrics'], text)).toEqual({ code: 0, output: '' });
  });

  it("passes on a cluster primary's aggregated /metrics", async () => {
    const gw = await gatewayWith('{ listen: 127.0.0.1:0, workers: 2, shutdown_grace: 1s }');
    const primary = await gw.waitForLog((line) => line.msg === 'authgate primary started');
    const adminUrl = String(primary.admin);
    await expect.poll(async () => (await fetch(`${adminUrl}/readyz`)).status, { timeout: 15_000 }).toBe(200);
    await exercise(gw.url);
    const text = await (await fetch(`${adminUrl}/metrics`)).text();
    expect(text).toContain('\nauthgate_requests_total{');
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(await promtool(['check', 'metrics'], text)).toEqual({ code: 0, output: '' });
  });
});
