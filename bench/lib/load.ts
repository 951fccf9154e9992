/** Load generation (autocannon) and what one measured run yields: throughput, latency and the target's CPU. */
import autocannon, { type RequestTemplate } from 'autocannon';
import { LatencyRecorder } from './latency.js';
import { coreBusySeconds, cpuSeconds } from './proc.js';
import { mintHs256 } from './tokens.js';

/** What autocannon sends: a path and either fixed headers or a function that rewrites each request. */
export interface Load {
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly setupRequest?: RequestTemplate['setupRequest'];
}

export interface Measurement {
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuUsPerRequest: number;
  /** CPU seconds per wall second: near 1.0 for one pinned process means the proxy, not the load, was the limit. */
  readonly cpuShare: number;
  /** Share of the proxy's core used by other processes meanwhile: high means a noisy run. */
  readonly othersShare: number | undefined;
  readonly non2xx: number;
  readonly errors: number;
}

export interface LoadOptions {
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
}

interface Run {
  readonly requests: number;
  readonly seconds: number;
  readonly latency: LatencyRecorder;
  readonly non2xx: number;
  readonly errors: number;
}

export function runAutocannon(url: string, load: Load, connections: number, limit: { durationS: number } | { amount: number }): Promise<Run> {
  const latency = new LatencyRecorder();
  let non2xx = 0;
  return new Promise<Run>((resolve, reject) => {
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
export async function measure(url: string, pid: number, core: number | undefined, load: Load, options: LoadOptions): Promise<Measurement> {
  if (options.warmupS > 0) await runAutocannon(url, load, options.connections, { durationS: options.warmupS });
  return measured(pid, core, () => runAutocannon(url, load, options.connections, { durationS: options.durationS }));
}

/** Runs `load` and charges the CPU that `pid` (and the rest of its pinned `core`) used meanwhile. */
export async function measured(pid: number, core: number | undefined, load: () => Promise<Run>): Promise<Measurement> {
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
export function rotating(tokens: readonly string[]): RequestTemplate['setupRequest'] {
  let next = 0;
  return (request) => {
    const token = tokens[next] as string;
    next = (next + 1) % tokens.length;
    return { ...request, headers: { ...request.headers, authorization: `Bearer ${token}` } };
  };
}

/** A new HS256 token on every request: the gateway's token cache sees each one once. */
export function freshTokens(): RequestTemplate['setupRequest'] {
  let next = 0;
  return (request) => ({ ...request, headers: { ...request.headers, authorization: `Bearer ${mintHs256(next++)}` } });
}
