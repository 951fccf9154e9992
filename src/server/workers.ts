import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry } from 'prom-client';
import { startClusterAdmin } from '../admin/cluster-admin.js';
import type { GatewayConfig, ListenAddress } from '../config/types.js';
import { exitOnceLogged, type Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';

/**
 * `server.workers` > 1 (SPEC §12): node:cluster workers share the gateway port; the primary forks them, starts a
 * new one when one dies, forwards SIGTERM/SIGINT/SIGHUP, and serves the public admin listener with metrics
 * aggregated over every worker. Each worker runs the whole gateway (its own config reloads, key sets and store
 * connection) with a private admin listener on a loopback port that only the primary talks to.
 */

export function workerCount(workers: GatewayConfig['server']['workers']): number {
  return workers === 'auto' ? availableParallelism() : workers;
}

/** Where a worker's admin listener goes: loopback, a port of its own (the listener is exclusive, not shared). */
export const WORKER_ADMIN_LISTEN: ListenAddress = { host: '127.0.0.1', port: 0 };

const ADMIN_URL_MESSAGE = 'authgate:worker-admin';
/** A worker that dies at once (bad certificate, port taken) is not restarted in a tight loop. */
const RESTART_DELAY_MS = 1_000;
/** Beyond shutdown_grace: time for workers to close stores and flush logs before they are killed. */
const EXIT_MARGIN_MS = 5_000;

interface AdminUrlMessage {
  readonly type: typeof ADMIN_URL_MESSAGE;
  readonly url: string;
}

function isAdminUrlMessage(message: unknown): message is AdminUrlMessage {
  return typeof message === 'object' && message !== null && (message as AdminUrlMessage).type === ADMIN_URL_MESSAGE;
}

/** In a worker: let the primary collect this registry and tell it where the private admin listener is. */
export function registerWorker(metrics: Metrics): void {
  new AggregatorRegistry(); // installs prom-client's IPC listener that answers the primary's metric requests
  AggregatorRegistry.setRegistries([metrics.registry]);
}

export function announceWorkerAdmin(url: string): void {
  process.send?.({ type: ADMIN_URL_MESSAGE, url } satisfies AdminUrlMessage);
}

/** Runs the primary until SIGTERM/SIGINT, then exits 0 once every worker drained (1 if one failed to). */
export async function runPrimary(config: GatewayConfig, logger: Logger): Promise<void> {
  const expected = workerCount(config.server.workers);
  const adminUrls = new Map<number, string>();
  let draining = false;
  let failedExit = false;

  const fork = (): Worker => {
    const worker = cluster.fork();
    worker.on('message', (message: unknown) => {
      if (isAdminUrlMessage(message)) adminUrls.set(worker.id, message.url);
    });
    return worker;
  };
  const live = (): Worker[] => Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);

  const admin = await startClusterAdmin(config.admin, {
    logger,
    expectedWorkers: () => expected,
    workerAdminUrls: () => [...adminUrls.values()],
    draining: () => draining,
  });

  const exitWhenAllStopped = (): void => {
    if (live().length > 0) return;
    void admin.close().then(() => {
      logger.info('stopped');
      exitOnceLogged(logger, failedExit ? 1 : 0);
    });
  };

  cluster.on('exit', (worker, code, signal) => {
    adminUrls.delete(worker.id);
    if (draining) {
      if (code !== 0) failedExit = true;
      exitWhenAllStopped();
      return;
    }
    logger.error({ pid: worker.process.pid, code, signal }, 'worker exited; starting another');
    setTimeout(() => {
      if (!draining) fork();
    }, RESTART_DELAY_MS).unref();
  });

  for (let i = 0; i < expected; i++) fork();
  logger.info({ admin: admin.url, workers: expected }, 'authgate primary started');

  process.on('SIGHUP', () => {
    for (const worker of live()) worker.process.kill('SIGHUP');
  });
  const stop = (signal: NodeJS.Signals): void => {
    if (draining) return;
    draining = true;
    logger.info({ signal }, 'draining workers');
    for (const worker of live()) worker.process.kill('SIGTERM');
    exitWhenAllStopped();
    setTimeout(() => {
      logger.error('workers did not stop in time; killing them');
      for (const worker of live()) worker.process.kill('SIGKILL');
      process.exit(1);
    }, config.server.shutdownGraceMs + EXIT_MARGIN_MS).unref();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
