/**
 * `npm run bench`: authgate (built, from dist/, as its own process) against a bare http-proxy forwarder, both in
 * front of the same upstream, measured with autocannon. See docs/performance.md for the method.
 *
 *   --duration S      measured seconds per scenario (default 10)
 *   --warmup S        unmeasured seconds before each (default 3)
 *   --connections N   concurrent connections (default 50)
 *   --cpu N           core for the gateway and the bare proxy; the load generator, upstream and redis get another
 *                     one (default 0 when taskset exists; --cpu none disables pinning)
 *   --scenarios LIST  comma-separated subset of: public,one-token,many-tokens,rate-limit,workers,memory
 *   --memory-tokens N distinct tokens in the memory scenario (default 1000000)
 *   --profile DIR     run authgate under `node --cpu-prof`, one .cpuprofile per gateway process in DIR
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import autocannon, { type RequestTemplate } from 'autocannon';
import { LatencyRecorder } from './lib/latency.js';
import { coreBusySeconds, cpuSeconds, descendantCount, hasTaskset, rssBytes, spawnPinned, type Spawned } from './lib/proc.js';
import { AUDIENCE, createRsaIssuer, HS_ISSUER, HS_SECRET, mintHs256, RS_ISSUER } from './lib/tokens.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCENARIOS = ['public', 'one-token', 'many-tokens', 'rate-limit', 'workers', 'memory'] as const;
type ScenarioName = (typeof SCENARIOS)[number];
const DISTINCT_TOKENS = 2000;
const READY_DEADLINE_MS = 30_000;

interface Options {
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  /** Core for the proxies under test; undefined = no pinning. */
  readonly proxyCpu: number | undefined;
  readonly loadCpu: number | undefined;
  readonly scenarios: ReadonlySet<ScenarioName>;
  readonly memoryTokens: number;
  readonly profileDir: string | undefined;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      connections: { type: 'string', default: '50' },
      cpu: { type: 'string' },
      scenarios: { type: 'string', default: SCENARIOS.join(',') },
      'memory-tokens': { type: 'string', default: '1000000' },
      profile: { type: 'string' },
    },
  });
  const scenarios = new Set<ScenarioName>();
  for (const name of values.scenarios.split(',')) {
    if (!(SCENARIOS as readonly string[]).includes(name)) throw new Error(`unknown scenario ${name}; known: ${SCENARIOS.join(', ')}`);
    scenarios.add(name as ScenarioName);
  }
  const cores = availableParallelism();
  const pin = hasTaskset && cores > 1 && values.cpu !== 'none';
  const proxyCpu = pin ? Number(values.cpu ?? 0) : undefined;
  return {
    durationS: Number(values.duration),
    warmupS: Number(values.warmup),
    connections: Number(values.connections),
    proxyCpu,
    loadCpu: proxyCpu === undefined ? undefined : (proxyCpu + 1) % cores,
    scenarios,
    memoryTokens: Number(values['memory-tokens']),
    profileDir: values.profile,
  };
}

/** What autocannon sends: a path and either fixed headers or a function that rewrites each request. */
interface Load {
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly setupRequest?: RequestTemplate['setupRequest'];
}

interface Measurement {
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuUsPerRequest: number;
  /** CPU seconds per wall second: near 1.0 for one pinned process means the proxy, not the load, was the limit. */
  readonly cpuShare: number;
  /** Share of the proxy's core used by other processes meanwhile (the machine is shared): high means a noisy run. */
  readonly othersShare: number | undefined;
  readonly non2xx: number;
  readonly errors: number;
}

function runAutocannon(url: string, load: Load, connections: number, limit: { durationS: number } | { amount: number }) {
  const latency = new LatencyRecorder();
  let non2xx = 0;
  return new Promise<{ requests: number; seconds: number; latency: LatencyRecorder; non2xx: number; errors: number }>((resolve, reject) => {
    const started = performance.now();
    const instance = autocannon(
      {
        url: url + load.path,
        connections,
        ...('amount' in limit ? { amount: limit.amount } : { duration: limit.durationS }),
        headers: load.headers,
        requests: load.setupRequest ? [{ method: 'GET', path: load.path, setupRequest: load.setupRequest }] : undefined,
      },
      (error, result) => {
        if (error) reject(error);
        else resolve({ requests: latency.count, seconds: (performance.now() - started) / 1000, latency, non2xx, errors: result.errors });
      },
    );
    instance.on('response', (_client: unknown, status: number, _bytes: number, responseTimeMs: number) => {
      latency.record(responseTimeMs);
      if (status < 200 || status > 299) non2xx += 1;
    });
  });
}

/** Warm-up, then the measured run. `core`: the core `pid` is pinned to, if any. */
async function measure(url: string, pid: number, core: number | undefined, load: Load, options: Options): Promise<Measurement> {
  if (options.warmupS > 0) await runAutocannon(url, load, options.connections, { durationS: options.warmupS });
  return measured(pid, core, () => runAutocannon(url, load, options.connections, { durationS: options.durationS }));
}

/** Runs `load` and charges the CPU that `pid` (and the rest of its pinned `core`) used meanwhile. */
async function measured(pid: number, core: number | undefined, load: () => ReturnType<typeof runAutocannon>): Promise<Measurement> {
  const cpuBefore = cpuSeconds(pid);
  const coreBefore = core === undefined ? 0 : coreBusySeconds(core);
  const run = await load();
  const cpu = cpuSeconds(pid) - cpuBefore;
  const othersShare = core === undefined ? undefined : Math.max(0, coreBusySeconds(core) - coreBefore - cpu) / run.seconds;
  return {
    requests: run.requests,
    rps: run.requests / run.seconds,
    p50Ms: run.latency.percentile(0.5),
    p99Ms: run.latency.percentile(0.99),
    cpuUsPerRequest: run.requests > 0 ? (cpu * 1e6) / run.requests : 0,
    cpuShare: cpu / run.seconds,
    othersShare,
    non2xx: run.non2xx,
    errors: run.errors,
  };
}

/** Cycles through `tokens`, one per request, across all connections. */
function rotating(tokens: readonly string[]): RequestTemplate['setupRequest'] {
  let next = 0;
  return (request) => {
    const token = tokens[next] as string;
    next = (next + 1) % tokens.length;
    return { ...request, headers: { ...request.headers, authorization: `Bearer ${token}` } };
  };
}

/** A new HS256 token on every request: the gateway's token cache sees each one once. */
function freshTokens(): RequestTemplate['setupRequest'] {
  let next = 0;
  return (request) => ({ ...request, headers: { ...request.headers, authorization: `Bearer ${mintHs256(next++)}` } });
}

interface GatewaySetup {
  readonly dir: string;
  readonly upstreamPort: number;
  readonly redisUrl?: string;
  readonly workers: number;
}

function gatewayYaml(setup: GatewaySetup, port: number, adminPort: number): string {
  return `version: 1
server:
  listen: 127.0.0.1:${port}
  workers: ${setup.workers}
  shutdown_grace: 1s
admin:
  listen: 127.0.0.1:${adminPort}
${setup.redisUrl ? `store:\n  redis: ${setup.redisUrl}\n` : ''}logging: { level: info, access_log: true }
tokens:
  - header: Authorization
issuers:
  bench:
    issuer: ${RS_ISSUER}
    jwks_file: jwks.json
    audiences: [${AUDIENCE}]
    algorithms: [RS256]
    claims: { subject: sub, email: email, roles: roles }
  bench-hs:
    issuer: ${HS_ISSUER}
    secret: ${HS_SECRET}
    audiences: [${AUDIENCE}]
    algorithms: [HS256]
upstreams:
  app: { url: "http://127.0.0.1:${setup.upstreamPort}", timeout: 30s }
identity:
  headers: { X-User-Id: subject, X-User-Email: email, X-User-Roles: roles, X-Auth-Issuer: issuer }
  strip: ["X-User-*", "X-Auth-*"]
rate_limits:
  per-subject: { key: subject, limit: 1000000000, window: 1s }
routes:
  - { name: public, match: { path: /public/** }, upstream: app, auth: none }
  - { name: limited, match: { path: /limited/** }, upstream: app, issuers: [bench], require: { roles: [reader] }, rate_limit: [per-subject] }
  - { name: hs, match: { path: /hs/** }, upstream: app, issuers: [bench-hs] }
  - { name: api, match: { path: /api/** }, upstream: app, issuers: [bench], require: { roles: [reader] } }
`;
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function waitUntil(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + READY_DEADLINE_MS;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${READY_DEADLINE_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface RunningGateway {
  readonly url: string;
  readonly adminUrl: string;
  readonly process: Spawned;
}

/** `authgate start` from dist/, as production runs it; ready when /readyz says so. */
async function startAuthgate(setup: GatewaySetup, cpu: number | undefined, profileDir: string | undefined): Promise<RunningGateway> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = join(setup.dir, `gateway-${port}.yaml`);
  await writeFile(file, gatewayYaml(setup, port, adminPort));
  const profile = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const gateway = spawnPinned(cpu, process.execPath, [...profile, join(ROOT, 'bin/authgate.js'), 'start', '-c', file], { cwd: setup.dir });
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  await waitUntil('authgate', async () => {
    if (gateway.child.exitCode !== null) throw new Error(`authgate exited with ${gateway.child.exitCode}`);
    return (await fetch(`${adminUrl}/readyz`)).ok;
  });
  return { url: `http://127.0.0.1:${port}`, adminUrl, process: gateway };
}

async function announcedUrl(spawned: Spawned): Promise<string> {
  return `http://127.0.0.1:${String((await spawned.announcement).port)}`;
}

interface Row {
  readonly scenario: string;
  readonly target: 'authgate' | 'bare-proxy';
  readonly baseline?: string;
  readonly workers?: number;
  readonly measurement: Measurement;
  readonly rssMiB?: { readonly start: number; readonly end: number };
  readonly note?: string;
}

const MIB = 1024 * 1024;

async function main(): Promise<void> {
  const options = parseOptions();
  if (options.loadCpu !== undefined) {
    // The load generator (this process, all threads), the upstream and redis share the other core.
    execFileSync('taskset', ['-a', '-p', '-c', String(options.loadCpu), String(process.pid)], { stdio: 'ignore' });
  }
  const dir = await mkdtemp(join(tmpdir(), 'authgate-bench-'));
  const issuer = createRsaIssuer();
  await writeFile(join(dir, 'jwks.json'), JSON.stringify(issuer.jwks));
  const tokens = Array.from({ length: DISTINCT_TOKENS }, (_, index) => issuer.mint(index));
  const oneToken = { authorization: `Bearer ${tokens[0] as string}` };

  const stoppers: (() => Promise<void>)[] = [];
  const rows: Row[] = [];
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  try {
    const upstream = spawnPinned(options.loadCpu, process.execPath, ['--import', 'tsx', join(ROOT, 'bench/servers/upstream.ts')], { announces: true });
    stoppers.push(() => upstream.stop());
    const upstreamUrl = await announcedUrl(upstream);
    const upstreamPort = Number(new URL(upstreamUrl).port);
    const bare = spawnPinned(options.proxyCpu, process.execPath, ['--import', 'tsx', join(ROOT, 'bench/servers/bare-proxy.ts'), upstreamUrl], {
      announces: true,
    });
    stoppers.push(() => bare.stop());
    const bareUrl = await announcedUrl(bare);

    const loads = {
      public: { path: '/public/hello' },
      oneToken: { path: '/api/items', headers: oneToken },
      manyTokens: { path: '/api/items', setupRequest: rotating(tokens) },
      rateLimit: { path: '/limited/items', setupRequest: rotating(tokens) },
    } satisfies Record<string, Load>;

    const wanted = options.scenarios;
    if (wanted.has('public')) {
      log('bare proxy, public request …');
      rows.push({ scenario: 'public', target: 'bare-proxy', measurement: await measure(bareUrl, bare.pid, options.proxyCpu, loads.public, options) });
    }
    if (wanted.has('one-token') || wanted.has('many-tokens') || wanted.has('rate-limit')) {
      log('bare proxy, request with a token …');
      rows.push({ scenario: 'token', target: 'bare-proxy', measurement: await measure(bareUrl, bare.pid, options.proxyCpu, loads.oneToken, options) });
    }

    const single: GatewaySetup = { dir, upstreamPort, workers: 1 };
    const authgateScenarios: [ScenarioName, Load, string][] = [
      ['public', loads.public, 'public'],
      ['one-token', loads.oneToken, 'token'],
      ['many-tokens', loads.manyTokens, 'token'],
    ];
    for (const [scenario, load, baseline] of authgateScenarios) {
      if (!wanted.has(scenario)) continue;
      log(`authgate, ${scenario} …`);
      const gateway = await startAuthgate(single, options.proxyCpu, options.profileDir);
      try {
        rows.push({ scenario, target: 'authgate', baseline, measurement: await measure(gateway.url, gateway.process.pid, options.proxyCpu, load, options) });
      } finally {
        await gateway.process.stop();
      }
    }

    // One redis-server for the scenarios that need shared state, started on first use, on the load core.
    let redisUrl: string | undefined;
    const sharedStore = async (): Promise<string> => {
      if (redisUrl !== undefined) return redisUrl;
      const redisPort = await freePort();
      const redis = spawnPinned(options.loadCpu, 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
      stoppers.push(() => redis.stop());
      redisUrl = `redis://127.0.0.1:${redisPort}`;
      return redisUrl;
    };

    if (wanted.has('rate-limit')) {
      log('authgate, rate-limit (redis) …');
      const gateway = await startAuthgate({ ...single, redisUrl: await sharedStore() }, options.proxyCpu, options.profileDir);
      try {
        rows.push({
          scenario: 'rate-limit',
          target: 'authgate',
          baseline: 'token',
          measurement: await measure(gateway.url, gateway.process.pid, options.proxyCpu, loads.rateLimit, options),
        });
      } finally {
        await gateway.process.stop();
      }
    }

    if (wanted.has('workers')) {
      for (const workers of [1, 2]) {
        log(`authgate, one token, ${workers} worker(s), unpinned …`);
        // Unpinned: two workers on one core would measure nothing. The load generator still holds its core.
        // Workers are separate processes, so they share revocations through Redis (the config requires it).
        const gateway = await startAuthgate({ ...single, workers, redisUrl: await sharedStore() }, undefined, options.profileDir);
        try {
          const children = descendantCount(gateway.process.pid);
          const note =
            workers > 1 && children < workers ? `server.workers not implemented: ${children} worker processes for workers: ${workers}` : undefined;
          rows.push({
            scenario: `workers-${workers}`,
            target: 'authgate',
            baseline: 'token',
            workers,
            measurement: await measure(gateway.url, gateway.process.pid, undefined, loads.oneToken, options),
            note,
          });
        } finally {
          await gateway.process.stop();
        }
      }
    }

    if (wanted.has('memory')) {
      log(`authgate, ${options.memoryTokens} distinct HS256 tokens …`);
      const gateway = await startAuthgate(single, options.proxyCpu, options.profileDir);
      try {
        const rssStart = rssBytes(gateway.process.pid);
        const measurement = await measured(gateway.process.pid, options.proxyCpu, () =>
          runAutocannon(gateway.url, { path: '/hs/items', setupRequest: freshTokens() }, options.connections, { amount: options.memoryTokens }),
        );
        rows.push({
          scenario: 'memory',
          target: 'authgate',
          baseline: 'token',
          measurement,
          rssMiB: { start: rssStart / MIB, end: rssBytes(gateway.process.pid) / MIB },
        });
      } finally {
        await gateway.process.stop();
      }
    }
  } finally {
    for (const stop of stoppers.reverse()) await stop();
    await rm(dir, { recursive: true, force: true });
  }

  const report = buildReport(rows, options);
  process.stdout.write(report.text);
  await mkdir(join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(join(ROOT, 'bench/results/latest.json'), `${JSON.stringify(report.json, null, 2)}\n`);
}

function buildReport(rows: readonly Row[], options: Options): { text: string; json: object } {
  const baselines = new Map(rows.filter((row) => row.target === 'bare-proxy').map((row) => [row.scenario, row.measurement]));
  const ratios = (row: Row) => {
    const base = row.baseline ? baselines.get(row.baseline) : undefined;
    return base ? { rps: row.measurement.rps / base.rps, p99: row.measurement.p99Ms / base.p99Ms } : undefined;
  };
  const header = ['scenario', 'target', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'CPU share', 'others', '× bare req/s', '× bare p99', 'non-2xx', 'RSS MiB'];
  const lines = rows.map((row) => {
    const m = row.measurement;
    const ratio = ratios(row);
    return [
      row.scenario,
      row.target,
      m.rps.toFixed(0),
      m.p50Ms.toFixed(3),
      m.p99Ms.toFixed(3),
      m.cpuUsPerRequest.toFixed(1),
      m.cpuShare.toFixed(2),
      m.othersShare === undefined ? '' : m.othersShare.toFixed(2),
      ratio ? ratio.rps.toFixed(2) : '',
      ratio ? ratio.p99.toFixed(2) : '',
      String(m.non2xx + m.errors),
      row.rssMiB ? `${row.rssMiB.start.toFixed(0)} → ${row.rssMiB.end.toFixed(0)}` : '',
    ];
  });
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => (line[column] as string).length)));
  const format = (cells: readonly string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column] as number)).join(' | ')} |`;
  const table = [format(header), format(widths.map((width) => '-'.repeat(width))), ...lines.map(format)].join('\n');

  const byScenario = new Map(rows.map((row) => [row.scenario, row]));
  const targets = [
    target('one-token req/s ≥ 1.0× bare proxy', byScenario.get('one-token'), (r) => r.rps >= 1.0),
    target('many-tokens req/s ≥ 0.8× bare proxy', byScenario.get('many-tokens'), (r) => r.rps >= 0.8),
    target('one-token p99 ≤ 1.2× bare proxy', byScenario.get('one-token'), (r) => r.p99 <= 1.2),
    target('many-tokens p99 ≤ 1.2× bare proxy', byScenario.get('many-tokens'), (r) => r.p99 <= 1.2),
  ].filter((entry) => entry !== undefined);
  function target(name: string, row: Row | undefined, holds: (ratio: { rps: number; p99: number }) => boolean) {
    const ratio = row && ratios(row);
    return ratio ? { name, met: holds(ratio) } : undefined;
  }
  const notes = rows.flatMap((row) => (row.note ? [`note: ${row.note}`] : []));
  const setup = `node ${process.version}, ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, ${options.connections} connections, ${options.durationS} s (+${options.warmupS} s warm-up), ${
    options.proxyCpu === undefined ? 'unpinned' : `proxies on cpu ${options.proxyCpu}, load+upstream on cpu ${options.loadCpu}`
  }`;
  const text = [
    setup,
    '',
    table,
    '',
    ...targets.map((entry) => `${entry.met ? 'met   ' : 'MISSED'} ${entry.name}`),
    ...notes,
    '',
  ].join('\n');
  return {
    text,
    json: { date: new Date().toISOString(), setup, options: { ...options, scenarios: [...options.scenarios] }, rows, targets, notes },
  };
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
