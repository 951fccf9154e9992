import { parseArgs, type ParseArgsConfig } from 'node:util';
import { closest, editDistance } from '../config/suggest.js';

/** Where a command writes: the process's streams, or a capture in tests. Commands only ever write text. */
export interface TextSink {
  write(text: string): unknown;
}

export interface Io {
  readonly stdout: TextSink;
  readonly stderr: TextSink;
}

/** Thrown for a command line that does not parse; main turns it into exit code 2 with the usage text. */
export class UsageError extends Error {}

/** As given, so `check` names the file the way the operator wrote it (SPEC §2: FILE:LINE:COL). */
export function configFile(explicit: string | undefined): string {
  return explicit ?? process.env.AUTHGATE_CONFIG ?? 'gateway.yaml';
}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError(withSuggestion((err as Error).message, Object.keys(options)));
  }
}

/**
 * parseArgs' "Unknown option '--onlin'" with the option it was probably meant to be: one edit away only, since a
 * flag two edits away may mean the opposite (`--offline` is no typo of `--online`).
 */
function withSuggestion(message: string, known: readonly string[]): string {
  const unknown = /^Unknown option '--([^'=]+)'/.exec(message)?.[1];
  const meant = unknown === undefined ? undefined : closest(unknown, known);
  if (unknown === undefined || meant === undefined || editDistance(unknown, meant) > 1) return message;
  return `Unknown option '--${unknown}', did you mean "--${meant}"?`;
}
