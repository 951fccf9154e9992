/** The bench's table and targets: every authgate row beside the bare proxy, the Node floor and HAProxy of the same run. */
import { cpus } from 'node:os';
import type { Measurement } from './load.js';

export type Target = 'authgate' | 'bare-proxy' | 'floor' | 'haproxy';

export interface Row {
  readonly scenario: string;
  readonly target: Target;
  readonly measurement: Measurement;
  readonly workers?: number;
  readonly rssMiB?: { readonly start: number; readonly end: number };
  /** Share of token verifications answered from the cache during the measured run. */
  readonly cacheHitRatio?: number;
  readonly note?: string;
}

export interface ReportSetup {
  readonly connections: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly pinning: string;
}

interface Ratio {
  readonly rps: number;
  readonly p99: number;
}

/** One-token with one thing changed (the assertion, a CEL rule, a DPoP proof, a session in the token's place): compared with one-token's own row. */
const ONE_TOKEN_VARIANTS = new Set(['assertion', 'cel', 'dpop', 'session']);
/** Scenarios that check a signature on every request: the bare proxy, which checks none, is no yardstick for their p99. */
const SIGNED_PER_REQUEST = new Set(['dpop']);

/** The rows an authgate row is compared with: the bare proxy on the same kind of request, the floor, HAProxy on the same tokens. */
function comparisons(rows: readonly Row[]) {
  const find = (target: Target, scenario: string) => rows.find((row) => row.target === target && row.scenario === scenario)?.measurement;
  const ratio = (row: Row, base: Measurement | undefined): Ratio | undefined =>
    base ? { rps: row.measurement.rps / base.rps, p99: row.measurement.p99Ms / base.p99Ms } : undefined;
  return (row: Row) =>
    row.target !== 'authgate'
      ? {}
      : {
          bare: ratio(row, find('bare-proxy', row.scenario === 'public' ? 'public' : 'token')),
          floor: ratio(row, find('floor', 'floor')),
          haproxy: ratio(row, find('haproxy', row.scenario)),
          unlimited: row.scenario.startsWith('rate-limit') ? ratio(row, find('authgate', 'many-tokens')) : undefined,
          // The same single token with one feature added (the assertion, a CEL rule, a DPoP proof), or a session in its place.
          oneToken: ONE_TOKEN_VARIANTS.has(row.scenario) ? ratio(row, find('authgate', 'one-token')) : undefined,
        };
}

const cell = (value: number | undefined, digits: number): string => (value === undefined ? '' : value.toFixed(digits));

function table(rows: readonly Row[], compare: ReturnType<typeof comparisons>): string {
  const header = ['scenario', 'target', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'CPU share', 'others', 'cache hits',
    '× bare req/s', '× bare p99', '× floor req/s', '× floor p99', '× haproxy req/s', '× haproxy p99', '× unlimited req/s', '× unlimited p99',
    '× one-token req/s', '× one-token p99', 'non-2xx', 'RSS MiB'];
  const lines = rows.map((row) => {
    const m = row.measurement;
    const { bare, floor, haproxy, unlimited, oneToken } = compare(row);
    return [row.scenario, row.target, cell(m.rps, 0), cell(m.p50Ms, 3), cell(m.p99Ms, 3), cell(m.cpuUsPerRequest, 1), cell(m.cpuShare, 2),
      cell(m.othersShare, 2), row.cacheHitRatio === undefined ? '' : `${(row.cacheHitRatio * 100).toFixed(0)}%`,
      cell(bare?.rps, 2), cell(bare?.p99, 2), cell(floor?.rps, 2), cell(floor?.p99, 2), cell(haproxy?.rps, 2), cell(haproxy?.p99, 2),
      cell(unlimited?.rps, 2), cell(unlimited?.p99, 2), cell(oneToken?.rps, 2), cell(oneToken?.p99, 2), String(m.non2xx + m.errors), row.rssMiB ? `${row.rssMiB.start.toFixed(0)} → ${row.rssMiB.end.toFixed(0)}` : ''];
  });
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => (line[column] as string).length)));
  const format = (cells: readonly string[]) => `| ${cells.map((text, column) => text.padEnd(widths[column] as number)).join(' | ')} |`;
  return [format(header), format(widths.map((width) => '-'.repeat(width))), ...lines.map(format)].join('\n');
}

interface TargetCheck {
  readonly name: string;
  readonly met: boolean;
  readonly value: number;
}

function targets(rows: readonly Row[], compare: ReturnType<typeof comparisons>): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const check = (name: string, value: number | undefined, holds: (value: number) => boolean) => {
    if (value !== undefined) checks.push({ name, met: holds(value), value });
  };
  const authgate = rows.filter((row) => row.target === 'authgate' && row.workers === undefined && row.scenario !== 'memory');
  const of = (scenario: string) => authgate.find((row) => row.scenario === scenario);
  for (const scenario of ['one-token', 'many-tokens']) {
    const row = of(scenario);
    check(`${scenario} req/s ≥ 0.95× HAProxy`, row && compare(row).haproxy?.rps, (ratio) => ratio >= 0.95);
  }
  const session = of('session');
  check('session req/s ≥ 0.9× one-token', session && compare(session).oneToken?.rps, (ratio) => ratio >= 0.9);
  const miss = of('miss');
  check('miss req/s ≥ 0.6× HAProxy', miss && compare(miss).haproxy?.rps, (ratio) => ratio >= 0.6);
  check('miss p99 ≤ 1.5× floor', miss && compare(miss).floor?.p99, (ratio) => ratio <= 1.5);
  for (const row of authgate) {
    if (!SIGNED_PER_REQUEST.has(row.scenario)) check(`${row.scenario} p99 ≤ 1.2× bare proxy`, compare(row).bare?.p99, (ratio) => ratio <= 1.2);
  }
  const limited = of('rate-limit');
  check('rate-limit req/s ≥ 0.95× the same tokens without limits', limited && compare(limited).unlimited?.rps, (ratio) => ratio >= 0.95);
  check('rate-limit p99 ≤ 1.2× the same tokens without limits', limited && compare(limited).unlimited?.p99, (ratio) => ratio <= 1.2);
  return checks;
}

export function buildReport(rows: readonly Row[], setup: ReportSetup): { text: string; json: object } {
  const compare = comparisons(rows);
  const checks = targets(rows, compare);
  const notes = rows.flatMap((row) => (row.note ? [`note: ${row.note}`] : []));
  const line = `node ${process.version}, ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, ${setup.connections} connections, ${
    setup.durationS
  } s (+${setup.warmupS} s warm-up), ${setup.pinning}`;
  const text = [line, '', table(rows, compare), '', ...checks.map((c) => `${c.met ? 'met   ' : 'MISSED'} ${c.name} (${c.value.toFixed(2)}×)`), ...notes, ''].join('\n');
  return { text, json: { date: new Date().toISOString(), setup: line, rows, targets: checks, notes } };
}
