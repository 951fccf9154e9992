import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { loadConfig, formatProblem } from '../config/load.js';
import type { GatewayConfig } from '../config/types.js';
import { startGateway } from '../gateway/gateway.js';
import { createLogger, type Logger } from '../observability/log.js';

interface Io {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

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
  const logger = createLogger(loaded.config.logging.level);
  for (const warning of loaded.warnings) logger.warn({ warning: formatProblem(warning) }, 'config warning');
  const gateway = await startGateway(loaded.config, { logger });

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

/** Editors replace files rather than write them in place, so watch the directory entry and debounce. */
function watchFile(file: string, onChange: () => void, logger: Logger): FSWatcher | undefined {
  let timer: NodeJS.Timeout | undefined;
  try {
    const name = basename(file);
    return watch(dirname(file), { persistent: false }, (_event, changed) => {
      if (changed !== name) return;
      clearTimeout(timer);
      timer = setTimeout(onChange, 200);
    });
  } catch (err) {
    logger.warn({ err }, 'cannot watch the config file; reload with SIGHUP');
    return undefined;
  }
}
