import cluster from 'node:cluster';
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LoggingConfig } from '../config/types.js';
import { jsonString } from '../lib/json.js';

export type { Logger };

/**
 * Log lines are written to stdout in batches of this many bytes, or after `LOG_FLUSH_MS` at the latest: one
 * write per line cost a tenth of a gateway's CPU per request at 10,000 requests a second, and each asynchronous
 * write is a hand-off to libuv's thread pool, so 16 KiB (about 50 access lines) cost ~3 µs less per request than
 * 4 KiB did. Pending lines are written out when the process exits (not after a SIGKILL).
 */
const LOG_BATCH_BYTES = 16384;
const LOG_FLUSH_MS = 100;
/**
 * Workers share the primary's stdout, usually a pipe, which takes a write whole only up to PIPE_BUF (4096 bytes on
 * Linux): a larger one meeting a nearly full pipe goes in parts, and another worker's lines land between them.
 */
const SHARED_PIPE_WRITE_BYTES = 4096;

/**
 * JSON logs on stdout. Redaction is a second line of defence: no stage should put a token, cookie or
 * Authorization header into a log call in the first place.
 */
export function createLogger(level: LoggingConfig['level'] = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      // pid tells cluster workers apart (server.workers > 1 share one stdout).
      base: { service: 'authgate', pid: process.pid },
      redact: {
        paths: [
          'token', '*.token', 'authorization', '*.authorization', 'cookie', '*.cookie', 'dpop', '*.dpop',
          'headers.authorization', 'headers.cookie', 'headers.dpop',
        ],
        censor: '[redacted]',
      },
    },
    destination ?? batchedStdout(),
  );
}

/**
 * Stdout through pino's own SonicBoom (flushed at exit), in its buffer mode: in text mode it flattens the pending
 * batch and measures its UTF-8 length again on every line, a cost that grows with the batch (in a loop of access
 * lines, twice that of building them). Lines are encoded once here instead, and the batch only adds up lengths.
 */
function batchedStdout(): pino.DestinationStream {
  // SonicBoom writes whole lines, at most maxWrite bytes at a time, and requires minLength below maxWrite.
  const maxWrite = cluster.isWorker ? SHARED_PIPE_WRITE_BYTES : 4 * LOG_BATCH_BYTES;
  const destination = pino.destination({
    sync: false,
    minLength: Math.min(LOG_BATCH_BYTES, maxWrite / 2),
    maxWrite,
    periodicFlush: LOG_FLUSH_MS,
    contentMode: 'buffer',
  });
  const writeBytes = destination.write.bind(destination) as unknown as (bytes: Buffer) => boolean;
  destination.write = (line: string) => writeBytes(Buffer.from(line));
  return destination;
}

/** The longest an exit waits for stdout to take the pending lines: a reader that stopped must not hold it up. */
const EXIT_FLUSH_MS = 2_000;

/**
 * Exits with `code` once the pending log lines are written. At exit SonicBoom writes what it holds, but not a batch
 * whose write is under way or waiting to be retried on a full pipe: those lines would be lost.
 */
export function exitOnceLogged(logger: Logger, code: number): void {
  setTimeout(() => process.exit(code), EXIT_FLUSH_MS);
  logger.flush(() => process.exit(code));
}

/**
 * The logger `logging` asks for. `pretty` formats the same JSON lines for a terminal (pino-pretty, colour when
 * stdout is one); the lines carry the same fields, so a switch between the two changes nothing else.
 */
export function loggerFor(logging: Pick<LoggingConfig, 'level' | 'format'>): Logger {
  if (logging.format === 'json') return createLogger(logging.level);
  return createLogger(logging.level, pretty({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'service,hostname' }));
}

/** One access line: fixed fields, none of which is a token, cookie or Authorization value. */
export interface AccessLine {
  readonly requestId: string;
  readonly route: string;
  readonly method: string;
  readonly path: string | undefined;
  readonly status: number;
  readonly decision: 'allow' | 'deny' | 'error';
  readonly reason: string | undefined;
  /** Why, for the operator (never sent to the client); only some refusals have one. */
  readonly detail?: string | undefined;
  readonly subject: string | undefined;
  readonly issuer: string | undefined;
  /** A browser session's short hash (of its signed cookie): follows one session through the log, never its ID. */
  readonly session?: string | undefined;
  readonly upstream: string | undefined;
  readonly ms: number;
}

/**
 * Writes access lines in pino's own line format (level, time, the logger's bindings, the fields, msg) straight to
 * its destination. pino's generic serializer (a key walk with a type check and stringify per value, and its
 * redaction pass) was the largest part of the gateway's own per-request CPU; these fields are known and fixed,
 * so each line is one template. It honours the logger's level as it is when the line is written (reloads change it).
 */
export class AccessLog {
  private readonly destination: { write(line: string): unknown };
  private readonly bindings: string;
  /** Quoted values of the fields that take few distinct values (route, method, issuer, upstream, reason). */
  private readonly quoted = new Map<string, string>();

  constructor(private readonly logger: Logger) {
    this.destination = (logger as unknown as Record<symbol, { write(line: string): unknown }>)[pino.symbols.streamSym] as {
      write(line: string): unknown;
    };
    this.bindings = (logger as unknown as Record<symbol, string>)[pino.symbols.chindingsSym] ?? '';
  }

  write(line: AccessLine): void {
    if (!this.logger.isLevelEnabled('info')) return;
    let out = `{"level":30,"time":${Date.now()}${this.bindings},"requestId":${jsonString(line.requestId)},"route":${this.few(line.route)},"method":${this.few(line.method)}`;
    if (line.path !== undefined) out += `,"path":${jsonString(line.path)}`;
    out += `,"status":${line.status},"decision":"${line.decision}"`;
    if (line.reason !== undefined) out += `,"reason":${this.few(line.reason)}`;
    if (line.detail !== undefined) out += `,"detail":${jsonString(line.detail)}`;
    if (line.subject !== undefined) out += `,"subject":${jsonString(line.subject)}`;
    if (line.issuer !== undefined) out += `,"issuer":${this.few(line.issuer)}`;
    if (line.session !== undefined) out += `,"session":"${line.session}"`;
    if (line.upstream !== undefined) out += `,"upstream":${this.few(line.upstream)}`;
    this.destination.write(`${out},"ms":${line.ms},"msg":"request"}\n`);
  }

  /** A value of a field with few distinct values, quoted once (the first QUOTED_VALUES values are kept). */
  private few(value: string): string {
    let quoted = this.quoted.get(value);
    if (quoted === undefined) {
      quoted = jsonString(value);
      if (this.quoted.size < QUOTED_VALUES) this.quoted.set(value, quoted);
    }
    return quoted;
  }
}

/** Route, method, issuer, upstream names and reasons: a config has far fewer. */
const QUOTED_VALUES = 1024;
