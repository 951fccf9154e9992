import cluster from 'node:cluster';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { loadConfig, formatProblem, parseConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/types.js';
import { announceWorkerAdmin, registerWorker, runPrimary, workerCount, WORKER_ADMIN_LISTEN } from '../server/workers.js';
import { startGateway } from '../server/listener.js';
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

/**
 * Serializes reloads so two quick file events cannot apply configs out of order. `text`: the file's content as
 * the watcher saw it settle (undefined: read the file now).
 */
function reloader(file: string, logger: Logger, apply: (config: GatewayConfig) => Promise<void>): (text: string | undefined) => void {
  let running: Promise<void> = Promise.resolve();
  return (text) => {
    running = running.then(async () => {
      const loaded = text === undefined ? await loadConfig(file) : parseConfig(text, file);
      if (!loaded.config) {
        logger.error({ problems: loaded.problems.map(formatProblem) }, 'config reload refused; keeping the running config');
        return;
      }
      await apply(loaded.config);
    }).catch((err: unknown) => logger.error({ err }, 'config reload failed; keeping the running config'));
  };
}

/**
 * How long the file must stay unchanged before it is loaded. A file rewritten in place in several writes passes
 * through prefixes that may well be valid configs (a route without its `require` rules): one is loaded only once
 * no change has been seen for this long and two reads this far apart found the same text.
 */
const SETTLE_MS = 1000;

/**
 * Watches the file's directory, not the file: editors replace files rather than write them in place, and a
 * Kubernetes ConfigMap volume swaps a `..data` symlink, so the event names another entry than the file. Any event
 * in the directory restarts the wait for the file to settle; only a changed text reloads, and the text that
 * settled is the one applied (a later read could catch the next write half done).
 */
function watchFile(file: string, onSettled: (text: string) => void, logger: Logger): FSWatcher | undefined {
  let timer: NodeJS.Timeout | undefined;
  let lastText: string | undefined;
  /** A changed text seen once, waiting to be read the same again. */
  let candidate: string | undefined;
  void readFile(file, 'utf8').then((text) => (lastText = text), () => undefined);
  const settle = (): void => {
    clearTimeout(timer);
    timer = setTimeout(checkForChange, SETTLE_MS);
  };
  const checkForChange = (): void => {
    readFile(file, 'utf8').then(
      (text) => {
        if (text === lastText) {
          candidate = undefined;
        } else if (text !== candidate) {
          candidate = text;
          settle();
        } else {
          lastText = text;
          candidate = undefined;
          onSettled(text);
        }
      },
      // A file mid-replacement or gone is an operator's matter, not a bug: the reason, no stack trace.
      (err: NodeJS.ErrnoException) => logger.warn({ file, reason: err.code ?? err.message }, 'config file unreadable; keeping the running config'),
    );
  };
  try {
    return watch(dirname(file), { persistent: false }, settle);
  } catch (err) {
    logger.warn({ err }, 'cannot watch the config file; reload with SIGHUP');
    return undefined;
  }
}
