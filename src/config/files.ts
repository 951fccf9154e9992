import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Reader, Slot } from './reader.js';

/**
 * A file named in the config, resolved against the config file's directory; it must exist now, so a typo
 * fails `check` instead of the first TLS handshake. Synchronous: runs once per (re)load, never per request.
 */
export function existingFile(r: Reader, slot: Slot, baseDir: string): string | undefined {
  const name = r.string(slot);
  if (name === undefined) return undefined;
  const path = resolve(baseDir, name);
  if (statSync(path, { throwIfNoEntry: false })?.isFile()) return path;
  return r.problem(slot, `file not found: ${path}`);
}
