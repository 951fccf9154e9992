/**
 * `npm run bench`: authgate (built, from dist/, as its own process) beside the yardsticks of the same run, all in
 * front of one upstream and measured with autocannon: a bare http-proxy forwarder, the Node floor (node:http +
 * undici, no auth) and, when `haproxy` is installed, HAProxy verifying every token with `jwt_verify`. See
 * docs/performance.md for the method.
 *
 * Options: USAGE below, or `npm run bench -- --help`.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { parseArgs } from 'node:util';
import { hasHaproxy, startHaproxy } from './lib/haproxy.js';
import { freshTokens, measure, measured, rotating, runAutocannon, type Load, type LoadOptions, type Measurement } from './lib/load.js';
import { cpuSecondsByProcess, hasTaskset, rssBytes, spawnPinned, type Spawned } from './lib/proc.js';
import { buildReport, type Row } from './lib/report.js';
import { announcedUrl, freePort, introspectionCalls, OPAQUE_ISSUER, startAuthgate, tokenCacheCounts, type GatewaySetup, type RunningAuthgate } from './lib/servers.js';
import { signedInCookie } from './lib/sign-in.js';
import { AUDIENCE, createDpopSigner, createRsaIssuer, type RsaIssuer } from './lib/tokens.js';
import { startDevIssuer } from '../src/testing/dev-issuer.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCENARIOS = ['public', 'one-token', 'assertion', 'cel', 'dpop', 'session', 'many-tokens', 'miss', 'rate-limit', 'rate-limit-exact', 'workers', 'memory', 'introspection'] as const;
const USAGE = `usage: npm run bench -- [options]

  --duration S      measured seconds per scenario (default 10)
  --warmup S        unmeasured seconds before each (default 3)
  --connections N   concurrent connections (default 50)
  --cpu N           core for the proxies under test; the load generator, upstream and redis get another one
                    (default 0 when taskset exists; --cpu none disables pinning)
  --scenarios LIST  comma-separated subset of: public,one-token,assertion,cel,dpop,session,many-tokens,miss,
                    rate-limit,rate-limit-exact,workers,memory,introspection (assertion: one-token with the signed
                    identity assertion on; cel: one-token on a route with a CEL rule; dpop: one DPoP-bound token with
                    a fresh ES256 proof on every request, memory replay store; session: a signed-in browser session
                    on a login route with one-token's rule; introspection: 2,000 opaque tokens, cache warm)
  --miss-tokens N   distinct tokens in the miss scenario, more than the token cache holds (default 20000)
  --memory-tokens N distinct tokens in the memory scenario (default 1000000)
  --profile DIR     run authgate under node --cpu-prof, one .cpuprofile per gateway process in DIR
`;
type ScenarioName = (typeof SCENARIOS)[number];
/** Distinct tokens that all stay in the token cache. */
const CACHED_TOKENS = 2000;
const MIB = 1024 * 1024;

interface Options extends LoadOptions {
  /** Core for the proxies under test; undefined = no pinning. */
  readonly proxyCpu: number | undefined;
  readonly loadCpu: number | undefined;
  readonly scenarios: ReadonlySet<ScenarioName>;
  readonly missTokens: number;
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
      'miss-tokens': { type: 'string', default: '20000' },
      'memory-tokens': { type: 'string', default: '1000000' },
      profile: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
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
    missTokens: Number(values['miss-tokens']),
    memoryTokens: Number(values['memory-tokens']),
    profileDir: values.profile,
  };
}

/** What every scenario shares: the options, the rows so far, the running yardsticks and the tokens. */
interface Bench {
  readonly options: Options;
  readonly rows: Row[];
  readonly dir: string;
  readonly upstreamUrl: string;
  readonly setup: GatewaySetup;
  readonly issuer: RsaIssuer;
  readonly loads: Readonly<Record<'public' | 'oneToken' | 'cel' | 'manyTokens' | 'rateLimit', Load>>;
  readonly stoppers: (() => Promise<void>)[];
  missLoad(): Load;
  sharedStore(): Promise<string>;
}

const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** Starts `spawned`'s stop on the way out and returns its announced URL. */
async function started(bench: Bench, spawned: Spawned): Promise<string> {
  bench.stoppers.push(() => spawned.stop());
  return announcedUrl(spawned);
}

/** The bare proxy and the Node floor on a public request and a request with a token. */
async function yardsticks(bench: Bench): Promise<void> {
  const { options, rows, loads } = bench;
  const node = (script: string) =>
    spawnPinned(options.proxyCpu, process.execPath, ['--import', 'tsx', join(ROOT, script), bench.upstreamUrl], { announces: true });
  const bare = node('bench/servers/bare-proxy.ts');
  const bareUrl = await started(bench, bare);
  log('bare proxy, public request …');
  rows.push({ scenario: 'public', target: 'bare-proxy', measurement: await measure(bareUrl, bare.pid, options.proxyCpu, loads.public, options) });
  log('bare proxy, request with a token …');
  rows.push({ scenario: 'token', target: 'bare-proxy', measurement: await measure(bareUrl, bare.pid, options.proxyCpu, loads.oneToken, options) });
  const floor = node('bench/servers/floor.ts');
  const floorUrl = await started(bench, floor);
  log('Node floor (node:http + undici, no auth) …');
  rows.push({ scenario: 'floor', target: 'floor', measurement: await measure(floorUrl, floor.pid, options.proxyCpu, loads.oneToken, options) });
}

/** HAProxy with `jwt_verify` on the same tokens as authgate's token scenarios. */
async function haproxy(bench: Bench, scenarios: readonly [ScenarioName, () => Load][]): Promise<void> {
  const { options } = bench;
  const port = await freePort();
  const spawned = await startHaproxy(
    { dir: bench.dir, port, upstreamPort: bench.setup.upstreamPort, publicKeyPem: bench.issuer.publicKeyPem },
    options.proxyCpu,
  );
  bench.stoppers.push(() => spawned.stop());
  const url = `http://127.0.0.1:${port}`;
  for (const [scenario, load] of scenarios) {
    log(`HAProxy jwt_verify, ${scenario} …`);
    bench.rows.push({ scenario, target: 'haproxy', measurement: await measure(url, spawned.pid, options.proxyCpu, load(), options) });
  }
}

/** A load that needs the running gateway first (a session signed in through it). */
type LoadFor = (gateway: RunningAuthgate) => Promise<Load>;

/** One fresh authgate per scenario, measured with the token cache's hit ratio of the measured run. */
async function authgate(bench: Bench, scenario: string, loadOrPrepare: Load | LoadFor, setup: GatewaySetup): Promise<void> {
  const { options } = bench;
  const cpu = options.proxyCpu;
  log(`authgate, ${scenario} …`);
  const gateway = await startAuthgate(setup, cpu, options.profileDir);
  try {
    const load = typeof loadOrPrepare === 'function' ? await loadOrPrepare(gateway) : loadOrPrepare;
    if (options.warmupS > 0) await runAutocannon(gateway.url, load, options.connections, { durationS: options.warmupS });
    const before = await tokenCacheCounts(gateway.adminUrl);
    const cpuBefore = cpuSecondsByProcess(gateway.process.pid);
    const measurement = await measure(gateway.url, gateway.process.pid, cpu, load, { ...options, warmupS: 0 });
    const note = setup.workers > 1 ? workersNote(scenario, gateway, setup.workers, cpuBefore, measurement) : undefined;
    const after = await tokenCacheCounts(gateway.adminUrl);
    const lookups = after.hit - before.hit + (after.miss - before.miss);
    const workers = scenario.startsWith('workers-') ? setup.workers : undefined;
    bench.rows.push({ scenario, target: 'authgate', measurement, workers, cacheHitRatio: lookups > 0 ? (after.hit - before.hit) / lookups : undefined, note });
  } finally {
    await gateway.process.stop();
  }
}

/** Each process's CPU per wall second during the measured run: shows how the workers split the load. */
function workersNote(scenario: string, gateway: RunningAuthgate, workers: number, cpuBefore: ReadonlyMap<number, number>, measurement: Measurement): string {
  const spent = [...cpuSecondsByProcess(gateway.process.pid)].map(([pid, seconds]) => ({ pid, seconds: seconds - (cpuBefore.get(pid) ?? 0) }));
  const children = spent.length - 1;
  if (children < workers) return `server.workers not implemented: ${children} worker processes for workers: ${workers}`;
  const seconds = measurement.requests / measurement.rps;
  const shares = spent.map(({ pid, seconds: cpu }) => `${pid === gateway.process.pid ? 'primary' : `worker ${pid}`} ${(cpu / seconds).toFixed(2)}`);
  return `${scenario}: CPU seconds per second by process: ${shares.join(', ')}`;
}

async function memory(bench: Bench): Promise<void> {
  const { options } = bench;
  log(`authgate, ${options.memoryTokens} distinct HS256 tokens …`);
  const gateway = await startAuthgate(bench.setup, options.proxyCpu, options.profileDir);
  try {
    const rssStart = rssBytes(gateway.process.pid);
    const measurement = await measured(gateway.process.pid, options.proxyCpu, () =>
      runAutocannon(gateway.url, { path: '/hs/items', setupRequest: freshTokens() }, options.connections, { amount: options.memoryTokens }),
    );
    bench.rows.push({ scenario: 'memory', target: 'authgate', measurement, rssMiB: { start: rssStart / MIB, end: rssBytes(gateway.process.pid) / MIB } });
  } finally {
    await gateway.process.stop();
  }
}

/**
 * 2,000 opaque tokens, each introspected once in the warm-up: the measured run should ask the endpoint (almost)
 * never. The note gives the endpoint calls per 1,000 measured requests.
 */
async function introspection(bench: Bench): Promise<void> {
  const { options } = bench;
  const endpoint = spawnPinned(options.loadCpu, process.execPath, ['--import', 'tsx', join(ROOT, 'bench/servers/introspection.ts'), OPAQUE_ISSUER], { announces: true });
  const introspectionUrl = await started(bench, endpoint);
  const tokens = Array.from({ length: CACHED_TOKENS }, (_, index) => `opaque-bench-token-${String(index).padStart(6, '0')}-abcdefghijklmnop`);
  const load: Load = { path: '/opaque/items', setupRequest: rotating(tokens) };
  log('authgate, introspection (2,000 opaque tokens, cache warm) …');
  const gateway = await startAuthgate({ ...bench.setup, introspectionUrl }, options.proxyCpu, options.profileDir);
  try {
    await runAutocannon(gateway.url, load, options.connections, { amount: tokens.length * 2 });
    const before = await introspectionCalls(gateway.adminUrl);
    const measurement = await measure(gateway.url, gateway.process.pid, options.proxyCpu, load, { ...options, warmupS: 0 });
    const calls = (await introspectionCalls(gateway.adminUrl)) - before;
    const perThousand = measurement.requests > 0 ? (calls * 1000) / measurement.requests : 0;
    bench.rows.push({ scenario: 'introspection', target: 'authgate', measurement, note: `introspection: ${calls} endpoint calls in ${measurement.requests} requests (${perThousand.toFixed(2)} per 1,000)` });
  } finally {
    await gateway.process.stop();
  }
}

async function scenarios(bench: Bench): Promise<void> {
  const wanted = bench.options.scenarios;
  const { loads, setup } = bench;
  await yardsticks(bench);
  const tokenScenarios: [ScenarioName, () => Load][] = [
    ['one-token', () => loads.oneToken],
    ['many-tokens', () => loads.manyTokens],
    ['miss', () => bench.missLoad()],
  ];
  const measuredTokens = tokenScenarios.filter(([name]) => wanted.has(name));
  if (hasHaproxy && measuredTokens.length > 0) await haproxy(bench, measuredTokens);
  else if (measuredTokens.length > 0) log('haproxy not installed (Debian package haproxy): no HAProxy rows');
  if (wanted.has('public')) await authgate(bench, 'public', loads.public, setup);
  for (const [name, load] of measuredTokens) await authgate(bench, name, load(), setup);
  if (wanted.has('assertion')) await authgate(bench, 'assertion', loads.oneToken, { ...setup, assertionKeyFile: await assertionKey(bench.dir) });
  if (wanted.has('cel')) await authgate(bench, 'cel', loads.cel, setup);
  if (wanted.has('dpop')) await authgate(bench, 'dpop', dpopLoad(bench.issuer, bench.options), setup);
  if (wanted.has('session')) await session(bench);
  // Leased: Redis is asked once per lease of a key; exact: once per request.
  if (wanted.has('rate-limit')) await authgate(bench, 'rate-limit', loads.rateLimit, { ...setup, redisUrl: await bench.sharedStore() });
  if (wanted.has('rate-limit-exact')) {
    await authgate(bench, 'rate-limit-exact', loads.rateLimit, { ...setup, redisUrl: await bench.sharedStore(), rateLimitMode: 'exact' });
  }
  // Pinned like every other row: the gateway's core holds every worker, the load generator keeps the other, so
  // CPU µs/request compares one worker with several (on more cores, `--cpu` and taskset lists would widen it).
  // Workers share revocations through Redis.
  if (wanted.has('workers')) {
    for (const workers of [1, 2]) await authgate(bench, `workers-${workers}`, loads.oneToken, { ...setup, workers, redisUrl: await bench.sharedStore() });
  }
  if (wanted.has('memory')) await memory(bench);
  if (wanted.has('introspection')) await introspection(bench);
}

/** Proofs signed before the run, per second of it: more than a gateway on one core checks, so the load keeps up. */
const DPOP_PROOFS_PER_SECOND = 4000;

/**
 * One DPoP-bound token and a new proof for every request. The proofs are signed just before the run (signing them
 * while it goes would make the load generator the bottleneck), then on the fly should they run out. The Host is
 * fixed, so the proofs' `htu` does not depend on the port each fresh gateway listens on.
 */
function dpopLoad(issuer: RsaIssuer, options: LoadOptions): Load {
  const signer = createDpopSigner();
  const token = issuer.mintBound(0, signer.jkt);
  const path = '/dpop/items';
  const htu = `http://bench.invalid${path}`;
  log(`signing DPoP proofs for ${options.warmupS + options.durationS} s …`);
  const proofs = Array.from({ length: DPOP_PROOFS_PER_SECOND * (options.warmupS + options.durationS) }, () => signer.proof('GET', htu, token));
  let next = 0;
  return {
    path,
    setupRequest: (request) => ({
      ...request,
      headers: { ...request.headers, host: 'bench.invalid', authorization: `DPoP ${token}`, dpop: proofs[next++] ?? signer.proof('GET', htu, token) },
    }),
  };
}

/**
 * One browser session on a login route with one-token's rule: signed in through the gateway's real flow against a
 * dev issuer in this process (it serves the sign-in and the keys, then idles), then the same cookie every request.
 */
async function session(bench: Bench): Promise<void> {
  const user = 'bench-user';
  const issuer = await startDevIssuer({ audience: AUDIENCE, users: { [user]: { email: 'bench-user@bench.invalid', roles: ['reader'] } } });
  bench.stoppers.push(() => issuer.close());
  const path = '/app/items';
  const load: LoadFor = async (gateway) => ({ path, headers: { cookie: await signedInCookie(gateway.url, issuer, user, path) } });
  await authgate(bench, 'session', load, { ...bench.setup, signInIssuer: issuer.issuer });
}

/** A P-256 key for the assertion scenario (ES256, the usual choice). */
async function assertionKey(dir: string): Promise<string> {
  const file = join(dir, 'assertion.pem');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await writeFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return file;
}

async function prepare(options: Options, dir: string, stoppers: (() => Promise<void>)[]): Promise<Bench> {
  const issuer = createRsaIssuer();
  await writeFile(join(dir, 'jwks.json'), JSON.stringify(issuer.jwks));
  const tokens = Array.from({ length: CACHED_TOKENS }, (_, index) => issuer.mint(index));
  const upstream = spawnPinned(options.loadCpu, process.execPath, ['--import', 'tsx', join(ROOT, 'bench/servers/upstream.ts')], { announces: true });
  stoppers.push(() => upstream.stop());
  const upstreamUrl = await announcedUrl(upstream);
  let missTokens: readonly string[] | undefined;
  let redisUrl: string | undefined;
  return {
    options,
    rows: [],
    dir,
    upstreamUrl,
    setup: { root: ROOT, dir, upstreamPort: Number(new URL(upstreamUrl).port), workers: 1 },
    issuer,
    stoppers,
    loads: {
      public: { path: '/public/hello' },
      oneToken: { path: '/api/items', headers: { authorization: `Bearer ${tokens[0] as string}` } },
      cel: { path: '/cel/t1/items', headers: { authorization: `Bearer ${tokens[0] as string}` } },
      manyTokens: { path: '/api/items', setupRequest: rotating(tokens) },
      rateLimit: { path: '/limited/items', setupRequest: rotating(tokens) },
    },
    missLoad() {
      if (!missTokens) {
        log(`minting ${options.missTokens} RS256 tokens for the miss scenario …`);
        missTokens = Array.from({ length: options.missTokens }, (_, index) => issuer.mint(CACHED_TOKENS + index));
      }
      return { path: '/api/items', setupRequest: rotating(missTokens) };
    },
    async sharedStore() {
      if (redisUrl !== undefined) return redisUrl;
      const port = await freePort();
      const redis = spawnPinned(options.loadCpu, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
      stoppers.push(() => redis.stop());
      redisUrl = `redis://127.0.0.1:${port}`;
      return redisUrl;
    },
  };
}

async function main(): Promise<void> {
  const options = parseOptions();
  if (options.loadCpu !== undefined) {
    // The load generator (this process, all threads), the upstream and redis share the other core.
    execFileSync('taskset', ['-a', '-p', '-c', String(options.loadCpu), String(process.pid)], { stdio: 'ignore' });
  }
  const dir = await mkdtemp(join(tmpdir(), 'authgate-bench-'));
  const stoppers: (() => Promise<void>)[] = [];
  let rows: Row[] = [];
  try {
    const bench = await prepare(options, dir, stoppers);
    rows = bench.rows;
    await scenarios(bench);
  } finally {
    for (const stop of stoppers.reverse()) await stop();
    await rm(dir, { recursive: true, force: true });
  }
  const pinning = options.proxyCpu === undefined ? 'unpinned' : `proxies on cpu ${options.proxyCpu}, load+upstream on cpu ${options.loadCpu}`;
  const report = buildReport(rows, { ...options, pinning });
  process.stdout.write(report.text);
  await mkdir(join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(join(ROOT, 'bench/results/latest.json'), `${JSON.stringify(report.json, null, 2)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
