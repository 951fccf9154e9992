import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry } from 'prom-client';
import { startClusterAdmin } from '../admin/cluster-admin.js';
import type { AdminServer } from '../admin/server.js';
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
  await new Primary(config, logger).start();
}

class Primary {
  private readonly adminUrls = new Map<number, string>();
  private admin: AdminServer | undefined;
  private draining = false;
  private failedExit = false;

  constructor(
    private readonly config: GatewayConfig,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    const expected = workerCount(this.config.server.workers);
    this.admin = await startClusterAdmin(this.config.admin, {
      logger: this.logger,
      expectedWorkers: () => expected,
      workerAdminUrls: () => [...this.adminUrls.values()],
      draining: () => this.draining,
    });
    cluster.on('exit', (worker, code, signal) => this.exited(worker, code, signal));
    for (let i = 0; i < expected; i++) this.fork();
    this.logger.info({ admin: this.admin.url, workers: expected }, 'authgate primary started');
    process.on('SIGHUP', () => this.signalAll('SIGHUP'));
    process.once('SIGTERM', () => this.stop('SIGTERM'));
    process.once('SIGINT', () => this.stop('SIGINT'));
  }

  private fork(): void {
    const worker = cluster.fork();
    worker.on('message', (message: unknown) => {
      if (isAdminUrlMessage(message)) this.adminUrls.set(worker.id, message.url);
    });
  }

  private signalAll(signal: NodeJS.Signals): void {
    for (const worker of live()) worker.process.kill(signal);
  }

  private exited(worker: Worker, code: number, signal: string): void {
    this.adminUrls.delete(worker.id);
    if (this.draining) {
      if (code !== 0) this.failedExit = true;
      this.exitWhenAllStopped();
      return;
    }
    this.logger.error({ workerPid: worker.process.pid, code, signal }, 'worker exited; starting another');
    setTimeout(() => {
      if (!this.draining) this.fork();
    }, RESTART_DELAY_MS).unref();
  }

  private stop(signal: NodeJS.Signals): void {
    if (this.draining) return;
    this.draining = true;
    this.logger.info({ signal }, 'draining workers');
    this.signalAll('SIGTERM');
    this.exitWhenAllStopped();
    setTimeout(() => {
      this.logger.error('workers did not stop in time; killing them');
      this.signalAll('SIGKILL');
      process.exit(1);
    }, this.config.server.shutdownGraceMs + EXIT_MARGIN_MS).unref();
  }

  private exitWhenAllStopped(): void {
    if (live().length > 0) return;
    void (this.admin?.close() ?? Promise.resolve()).then(() => {
      this.logger.info('stopped');
      exitOnceLogged(this.logger, this.failedExit ? 1 : 0);
    });
  }
}

function live(): Worker[] {
  return Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
}
