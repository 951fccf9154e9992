import { randomUUID } from 'node:crypto';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { AggregatorRegistry } from 'prom-client';
import type { AdminConfig } from '../config/types.js';
import { Errors, sendError, writeJson } from '../http/responses.js';
import type { Logger } from '../observability/log.js';
import { adminRequestHandler } from './endpoints.js';
import { readBody, REVOCATION_TOO_LARGE } from './revocations.js';
import { closeServer, listen } from '../lib/listen.js';
import type { AdminServer } from './server.js';

export interface ClusterAdminDeps {
  readonly logger: Logger;
  /** How many workers should be running. */
  readonly expectedWorkers: () => number;
  /** Private admin URLs of the workers that are up, in worker order. */
  readonly workerAdminUrls: () => readonly string[];
  /** True once SIGTERM arrived: readiness turns 503 while the workers drain. */
  readonly draining: () => boolean;
}

const WORKER_TIMEOUT_MS = 2_000;

/**
 * The public admin listener of a `workers` > 1 gateway, in the primary process. `/metrics` aggregates every
 * worker's registry (prom-client over node:cluster IPC); `/readyz` is ready only when every expected worker is
 * up and ready; a revocation is relayed to every worker's private admin listener (each holds it at once, also
 * with Redis down or without Redis), a lookup to one.
 */
export async function startClusterAdmin(config: AdminConfig, deps: ClusterAdminDeps): Promise<AdminServer> {
  const aggregator = new AggregatorRegistry();
  const server = createServer(
    adminRequestHandler({
      logger: deps.logger,
      collectMetrics: () => aggregator.clusterMetrics(),
      metricsContentType: aggregator.contentType,
      readyz: (_req, res) => void readiness(deps).then(({ ready, body }) => writeJson(res, ready ? 200 : 503, body)),
      revocations: (req, res) => (req.method === 'POST' ? toEveryWorker(req, res, deps) : relay(req, res, deps)),
      // Every worker loads the same key files: any one of them publishes the same keys.
      jwks: (req, res) => relay(req, res, deps),
    }),
  );
  const url = await listen(server, config.listen, { setting: 'admin.listen' });
  return { url, close: () => closeServer(server) };
}

interface WorkerReadiness {
  readonly url: string;
  readonly ready: boolean;
  readonly report: { status?: string; checks?: Record<string, unknown> } | undefined;
}

/** Ready when every expected worker answers ready; the checks shown are those of the first worker that is not. */
async function readiness(deps: ClusterAdminDeps): Promise<{ ready: boolean; body: unknown }> {
  const urls = deps.workerAdminUrls();
  const workers = await Promise.all(urls.map((url) => workerReadiness(url)));
  const upReady = workers.filter((worker) => worker.ready).length;
  const ready = !deps.draining() && urls.length === deps.expectedWorkers() && upReady === urls.length;
  const shown = workers.find((worker) => !worker.ready) ?? workers[0];
  const checks = { ...shown?.report?.checks, ...(deps.draining() ? { config: 'draining' } : {}) };
  return {
    ready,
    body: { status: ready ? 'ready' : 'not_ready', checks: { ...checks, workers: { expected: deps.expectedWorkers(), ready: upReady } } },
  };
}

async function workerReadiness(url: string): Promise<WorkerReadiness> {
  try {
    const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(WORKER_TIMEOUT_MS) });
    return { url, ready: res.status === 200, report: (await res.json()) as WorkerReadiness['report'] };
  } catch {
    return { url, ready: false, report: undefined };
  }
}

function relay(req: IncomingMessage, res: ServerResponse, deps: ClusterAdminDeps): void {
  const target = deps.workerAdminUrls()[0];
  if (target === undefined) return sendError(res, Errors.noWorker, randomUUID());
  const upstream = request(`${target}${req.url ?? '/'}`, { method: req.method, headers: req.headers, timeout: WORKER_TIMEOUT_MS }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on('timeout', () => upstream.destroy(new Error('worker admin timed out')));
  upstream.on('error', (err) => {
    deps.logger.warn({ err }, 'relaying an admin request to a worker failed');
    sendError(res, Errors.workerUnreachable, randomUUID());
  });
  req.pipe(upstream);
}

interface WorkerAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** Headers of a worker's answer that describe its connection to the primary, not the answer. */
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date']);

/**
 * A revocation goes to every worker, so that none keeps admitting the token while the store is down (or absent).
 * The client hears the first worker's answer, or the first failure if any worker failed: a 201 means every worker
 * holds the revocation.
 */
function toEveryWorker(req: IncomingMessage, res: ServerResponse, deps: ClusterAdminDeps): void {
  // A client that resets mid-body rejects the read: that request is over, the primary must go on.
  fanOut(req, res, deps).catch((err: unknown) => {
    deps.logger.warn({ err }, 'a revocation request to the admin listener failed');
    if (!res.headersSent && !res.destroyed) sendError(res, Errors.malformedRequest, randomUUID());
  });
}

async function fanOut(req: IncomingMessage, res: ServerResponse, deps: ClusterAdminDeps): Promise<void> {
  const urls = deps.workerAdminUrls();
  if (urls.length === 0) return sendError(res, Errors.noWorker, randomUUID());
  const body = await readBody(req);
  if (body === 'too_large') {
    res.setHeader('connection', 'close');
    return sendError(res, REVOCATION_TOO_LARGE, randomUUID());
  }
  const answers = await Promise.all(urls.map((url) => askWorker(url, req, body, deps.logger)));
  if (answers.includes(undefined)) return sendError(res, Errors.workerUnreachable, randomUUID());
  const answer = (answers.find((each) => each !== undefined && each.status >= 300) ?? answers[0]) as WorkerAnswer;
  res.writeHead(answer.status, answer.headers).end(answer.body);
}

/** The worker's answer to the same request; undefined when it gave none in time. */
async function askWorker(url: string, req: IncomingMessage, body: string, logger: Logger): Promise<WorkerAnswer | undefined> {
  const headers = { 'content-type': 'application/json', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) };
  try {
    const answer = await fetch(`${url}${req.url ?? '/'}`, { method: 'POST', headers, body, signal: AbortSignal.timeout(WORKER_TIMEOUT_MS) });
    const relayed: Record<string, string> = {};
    answer.headers.forEach((value, name) => {
      if (!CONNECTION_HEADERS.has(name)) relayed[name] = value;
    });
    return { status: answer.status, headers: relayed, body: await answer.text() };
  } catch (err) {
    logger.warn({ err }, 'relaying a revocation to a worker failed');
    return undefined;
  }
}
