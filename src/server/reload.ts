import { readFile } from 'node:fs/promises';
import type { GatewayConfig, ServerTlsConfig } from '../config/types.js';

/** The certificate and key, read afresh: a reload picks up renewed files, and a file that cannot be read refuses it. */
export async function readTlsContext(tls: ServerTlsConfig): Promise<{ cert: Buffer; key: Buffer; minVersion: ServerTlsConfig['minVersion'] }> {
  const [cert, key] = await Promise.all([readFile(tls.certFile), readFile(tls.keyFile)]);
  return { cert, key, minVersion: tls.minVersion };
}

/** Settings bound to the open listeners: a reload cannot apply them, so it says which need a restart. */
export function listenerChanges(before: GatewayConfig, after: GatewayConfig): string[] {
  const changed: string[] = [];
  const same = (a: { host: string; port: number }, b: { host: string; port: number }): boolean => a.host === b.host && a.port === b.port;
  if (!same(before.server.listen, after.server.listen)) changed.push('server.listen');
  if ((before.server.tls === undefined) !== (after.server.tls === undefined)) changed.push('server.tls');
  if (!same(before.admin.listen, after.admin.listen)) changed.push('admin.listen');
  if (before.server.workers !== after.server.workers) changed.push('server.workers');
  if (before.server.headerTimeoutMs !== after.server.headerTimeoutMs) changed.push('server.header_timeout');
  if (JSON.stringify(before.store) !== JSON.stringify(after.store)) changed.push('store');
  return changed;
}
