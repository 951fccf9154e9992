/**
 * Instructions per request of one authgate scenario, counted by valgrind's callgrind: unlike req/s or CPU time, the
 * count does not move when other processes share the machine, so it tells whether a change to the hot path made
 * it cheaper. authgate runs from dist/ under callgrind with counting off; after a warm-up (so the JIT has settled)
 * counting is switched on for a fixed number of requests, then the total is read and divided.
 *
 *   node --import tsx bench/instructions.ts [--scenario public|one-token|many-tokens|miss] [--requests N]
 *        [--warmup N] [--connections N] [--rounds R]
 *
 * Each round measures the same scenario again on the same process; the spread between rounds is the noise (the
 * JIT's background compiler and the garbage collector do not run at the same moments twice). Needs `valgrind`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { rotating, runAutocannon, type Load } from './lib/load.js';
import { spawnPinned } from './lib/proc.js';
import { announcedUrl, freePort, gatewayYaml, waitUntil } from './lib/servers.js';
import { createRsaIssuer } from './lib/tokens.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCENARIOS = ['public', 'one-token', 'many-tokens', 'miss'] as const;
type Scenario = (typeof SCENARIOS)[number];
const MANY_TOKENS = 2000;

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'one-token' },
    requests: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '10000' },
    connections: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '5' },
    floor: { type: 'boolean', default: false },
    'node-options': { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const scenario = values.scenario as Scenario;
if (!SCENARIOS.includes(scenario)) throw new Error(`unknown scenario ${scenario}; known: ${SCENARIOS.join(', ')}`);
const requests = Number(values.requests);
const warmup = Number(values.warmup);
const connections = Number(values.connections);
const rounds = Number(values.rounds);

/** The load: the miss scenario never repeats a token, so every measured request is a full verification. */
function loadFor(mint: (index: number) => string): Load {
  if (scenario === 'public') return { path: '/public/hello' };
  if (scenario === 'one-token') return { path: '/api/items', headers: { authorization: `Bearer ${mint(0)}` } };
  const count = scenario === 'many-tokens' ? MANY_TOKENS : warmup + requests * rounds;
  process.stderr.write(`minting ${count} tokens …\n`);
  return { path: '/api/items', setupRequest: rotating(Array.from({ length: count }, (_, index) => mint(index))) };
}

interface Counted {
  /** The event loop's thread: JavaScript, the HTTP parser, scavenges. */
  readonly main: number;
  /** Every thread: the JIT's background compiles and the collector's helpers too. */
  readonly all: number;
}

/** Instructions (Ir) in the dump files callgrind wrote since `seen`, one file per thread (`-01` the main one). */
async function dumpedInstructions(dir: string, seen: Set<string>): Promise<Counted> {
  let main = 0;
  let all = 0;
  for (const name of await readdir(dir)) {
    if (!name.startsWith('callgrind.out') || seen.has(name)) continue;
    seen.add(name);
    const count = Number(/^totals: (\d+)/m.exec(await readFile(join(dir, name), 'utf8'))?.[1] ?? 0);
    all += count;
    if (name.endsWith('-01')) main += count;
  }
  return { main, all };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.floor(sorted.length / 2)] as number);
}

/** What runs under callgrind, and the URL that says it is ready. */
interface Target {
  readonly argv: readonly string[];
  readonly cwd: string;
  readonly url: string;
  ready(): Promise<boolean>;
}

async function authgateTarget(dir: string, upstreamUrl: string): Promise<Target> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const config = join(dir, 'gateway.yaml');
  await writeFile(config, gatewayYaml({ root: ROOT, dir, upstreamPort: Number(new URL(upstreamUrl).port), workers: 1 }, port, adminPort));
  return {
    argv: [join(ROOT, 'bin/authgate.js'), 'start', '-c', config],
    cwd: dir,
    url: `http://127.0.0.1:${port}`,
    ready: async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).ok,
  };
}

/** The Node floor (node:http + undici, no auth), started on a port chosen here. */
async function floorTarget(upstreamUrl: string): Promise<Target> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  return {
    argv: ['--import', 'tsx', join(ROOT, 'bench/servers/floor.ts'), upstreamUrl, String(port)],
    // Where tsx is found.
    cwd: ROOT,
    url,
    ready: async () => (await fetch(url)).ok,
  };
}

/** Counting on for `requests` requests, then the dump: instructions per request of each round. */
async function measureRounds(pid: number, dir: string, url: string, load: Load): Promise<Counted[]> {
  const control = (option: string): void => void execFileSync('callgrind_control', [option, String(pid)], { stdio: 'ignore' });
  const seen = new Set(await readdir(dir));
  const perRequest: Counted[] = [];
  for (let round = 0; round < rounds; round++) {
    control('--instr=on');
    const run = await runAutocannon(url, load, connections, { amount: requests });
    control('--dump');
    control('--instr=off');
    if (run.non2xx > 0 || run.errors > 0) throw new Error(`${run.non2xx} non-2xx responses, ${run.errors} errors`);
    const counted = await dumpedInstructions(dir, seen);
    perRequest.push({ main: counted.main / run.requests, all: counted.all / run.requests });
    process.stderr.write(`round ${round + 1}: ${Math.round(counted.main / run.requests)} main thread, ${Math.round(counted.all / run.requests)} all threads\n`);
  }
  return perRequest;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-callgrind-'));
  const issuer = createRsaIssuer();
  await writeFile(join(dir, 'jwks.json'), JSON.stringify(issuer.jwks));
  const load = loadFor(issuer.mint);
  const upstream = spawnPinned(undefined, process.execPath, ['--import', 'tsx', join(ROOT, 'bench/servers/upstream.ts')], { announces: true });
  const upstreamUrl = await announcedUrl(upstream);
  const target = values.floor ? await floorTarget(upstreamUrl) : await authgateTarget(dir, upstreamUrl);
  const nodeOptions = values['node-options']?.split(' ').filter(Boolean) ?? [];
  const callgrind = [
    '--tool=callgrind',
    '--instr-atstart=no',
    // One file per thread and dump: callgrind's combined totals of several threads are not to be trusted.
    '--separate-threads=yes',
    // V8 writes and rewrites machine code at run time.
    '--smc-check=all-non-file',
    `--callgrind-out-file=${join(dir, 'callgrind.out.%p')}`,
    `--log-file=${join(dir, 'valgrind.log')}`,
  ];
  const measured = spawn('valgrind', [...callgrind, process.execPath, ...nodeOptions, ...target.argv], { cwd: target.cwd, stdio: 'ignore' });
  try {
    await waitUntil('the target under callgrind', target.ready, 300_000);
    process.stderr.write(`${values.floor ? 'floor, ' : ''}${scenario}: warm-up, ${warmup} requests …\n`);
    await runAutocannon(target.url, load, connections, { amount: warmup });
    const perRequest = await measureRounds(measured.pid as number, dir, target.url, load);
    const main = median(perRequest.map((counted) => counted.main));
    const all = median(perRequest.map((counted) => counted.all));
    const what = values.floor ? `floor (${scenario} load)` : scenario;
    process.stdout.write(`${what}: instructions per request, median of ${rounds} rounds of ${requests}: ${main} main thread, ${all} all threads\n`);
  } finally {
    measured.kill('SIGTERM');
    await upstream.stop();
    if (values.keep) process.stderr.write(`callgrind files kept in ${dir}\n`);
    else await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
