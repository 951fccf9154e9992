import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { formatProblem, loadConfig, parseConfig } from '../config/load.js';
import type { GatewayConfig, ServerTlsConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';

/** The certificate and key, read afresh: a reload picks up renewed files, and a file that cannot be read refuses it. */
export interface TlsContext {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly minVersion: ServerTlsConfig['minVersion'];
  /** The CAs client certificates must chain to, with `client_auth`. */
  readonly ca?: Buffer;
}

export async function readTlsContext(tls: ServerTlsConfig): Promise<TlsContext> {
  const clients = tls.clientCertificates;
  const [cert, key, ca] = await Promise.all([readFile(tls.certFile), readFile(tls.keyFile), clients && readFile(clients.caFile)]);
  return ca === undefined ? { cert, key, minVersion: tls.minVersion } : { cert, key, minVersion: tls.minVersion, ca };
}

/**
 * Whether the handshake asks for a client certificate, and fails without a valid one (`require`). With `optional`
 * a certificate nobody vouches for is admitted, and then simply does not count (see `connectionCertificate`).
 */
export function clientCertificateOptions(tls: ServerTlsConfig): { requestCert: boolean; rejectUnauthorized: boolean } {
  const mode = tls.clientCertificates?.mode;
  return { requestCert: mode !== undefined, rejectUnauthorized: mode === 'require' };
}

/** Settings bound to the open listeners: a reload cannot apply them, so it says which need a restart. */
export function listenerChanges(before: GatewayConfig, after: GatewayConfig): string[] {
  const changed: string[] = [];
  const same = (a: { host: string; port: number }, b: { host: string; port: number }): boolean => a.host === b.host && a.port === b.port;
  if (!same(before.server.listen, after.server.listen)) changed.push('server.listen');
  if ((before.server.tls === undefined) !== (after.server.tls === undefined)) changed.push('server.tls');
  if (before.server.tls?.clientCertificates?.mode !== after.server.tls?.clientCertificates?.mode) changed.push('server.tls.client_auth');
  if (!same(before.admin.listen, after.admin.listen)) changed.push('admin.listen');
  if (before.server.workers !== after.server.workers) changed.push('server.workers');
  if (before.server.headerTimeoutMs !== after.server.headerTimeoutMs) changed.push('server.header_timeout');
  if (JSON.stringify(before.store) !== JSON.stringify(after.store)) changed.push('store');
  return changed;
}

/**
 * Serializes reloads so two quick file events cannot apply configs out of order. `text`: the file's content as
 * the watcher saw it settle (undefined: read the file now).
 */
export function reloader(file: string, logger: Logger, apply: (config: GatewayConfig) => Promise<void>): (text: string | undefined) => void {
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
export function watchFile(file: string, onSettled: (text: string) => void, logger: Logger): FSWatcher | undefined {
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
