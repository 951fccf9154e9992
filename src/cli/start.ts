import cluster from 'node:cluster';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { loadConfig, formatProblem } from '../config/load.js';
import type { GatewayConfig } from '../config/types.js';
import { announceWorkerAdmin, registerWorker, runPrimary, workerCount, WORKER_ADMIN_LISTEN } from '../gateway/cluster.js';
import { startGateway } from '../gateway/gateway.js';
import { Metrics } from '../observability/metrics.js';
import { loggerFor, type Logger } from '../observability/log.js';
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
  process.on('SIGHUP', reload);
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
        logger.flush();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // A worker whose primary is gone (killed outright) has no one to restart or stop it: it drains and exits.
  if (cluster.isWorker) process.once('disconnect', () => stop('disconnect'));
  return undefined;
}

/** Serializes reloads so two quick file events cannot apply configs out of order. */
function reloader(file: string, logger: Logger, apply: (config: GatewayConfig) => Promise<void>): () => void {
  let running: Promise<void> = Promise.resolve();
  return () => {
    running = running.then(async () => {
      const loaded = await loadConfig(file);
      if (!loaded.config) {
        logger.error({ problems: loaded.problems.map(formatProblem) }, 'config reload refused; keeping the running config');
        return;
      }
      await apply(loaded.config);
    }).catch((err: unknown) => logger.error({ err }, 'config reload failed; keeping the running config'));
  };
}

/**
 * Watches the file's directory, not the file: editors replace files rather than write them in place, and a
 * Kubernetes ConfigMap volume swaps a `..data` symlink, so the event names another entry than the file. Any event
 * in the directory (debounced) re-reads the file, and only a changed text reloads.
 */
function watchFile(file: string, onChange: () => void, logger: Logger): FSWatcher | undefined {
  let timer: NodeJS.Timeout | undefined;
  let lastText: string | undefined;
  void readFile(file, 'utf8').then((text) => (lastText = text), () => undefined);
  const checkForChange = (): void => {
    readFile(file, 'utf8').then(
      (text) => {
        if (text === lastText) return;
        lastText = text;
        onChange();
      },
      (err: unknown) => logger.warn({ err }, 'config file unreadable; keeping the running config'),
    );
  };
  try {
    return watch(dirname(file), { persistent: false }, () => {
      clearTimeout(timer);
      timer = setTimeout(checkForChange, 200);
    });
  } catch (err) {
    logger.warn({ err }, 'cannot watch the config file; reload with SIGHUP');
    return undefined;
  }
}
