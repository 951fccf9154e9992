import { parseArgs, type ParseArgsConfig } from 'node:util';

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
    throw new UsageError((err as Error).message);
  }
}
