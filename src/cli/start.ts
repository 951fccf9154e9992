import cluster from 'node:cluster';
import { loadConfig, formatProblem } from '../config/load.js';
import { announceWorkerAdmin, registerWorker, runPrimary, workerCount, WORKER_ADMIN_LISTEN } from '../server/workers.js';
import { startGateway } from '../server/listener.js';
import { reloader, watchFile } from '../server/reload.js';
import { Metrics } from '../observability/metrics.js';
import { exitOnceLogged, loggerFor } from '../observability/log.js';
import type { Io } from './io.js';

/**
 * `authgate start`: serve until SIGTERM/SIGINT, reload on SIGHUP and when the file changes. A config that
 * fails to load is logged with every problem and the running one stays.
 */
export async function runStart(file: string, io: Io): Promise<number | undefined> {
  const loaded = await loadConfig(file);
  if (!loaded.config) {
    for (const problem of loaded.problems) io.stderr.write(`${formatProblem(problem)}\n`);
    return 1;
  }
  const logger = loggerFor(loaded.config.logging);
  if (cluster.isPrimary && workerCount(loaded.config.server.workers) > 1) {
    for (const warning of loaded.warnings) logger.warn({ warning: formatProblem(warning) }, 'config warning');
    await runPrimary(loaded.config, logger);
    return undefined;
  }
  const metrics = new Metrics({ defaultMetrics: true });
  if (cluster.isWorker) registerWorker(metrics);
  else for (const warning of loaded.warnings) logger.warn({ warning: formatProblem(warning) }, 'config warning');
  const gateway = await startGateway(loaded.config, {
    logger,
    metrics,
    ...(cluster.isWorker ? { adminListen: WORKER_ADMIN_LISTEN } : {}),
  });
  if (cluster.isWorker) announceWorkerAdmin(gateway.adminUrl);

  const reload = reloader(file, logger, (config) => gateway.reload(config));
  // A signal is the operator saying the file is ready: it reloads at once, without the watcher's settling.
  process.on('SIGHUP', () => reload(undefined));
  const watcher = watchFile(file, reload, logger);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    watcher?.close();
    gateway.close().then(
      () => {
        logger.info('stopped');
        exitOnceLogged(logger, 0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        exitOnceLogged(logger, 1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // A worker whose primary is gone (killed outright) has no one to restart or stop it: it drains and exits.
  if (cluster.isWorker) process.once('disconnect', () => stop('disconnect'));
  return undefined;
}
