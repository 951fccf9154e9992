import { pino, type Logger } from 'pino';
import type { LoggingConfig } from '../config/types.js';

export type { Logger };

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
        paths: ['token', '*.token', 'authorization', '*.authorization', 'cookie', '*.cookie', 'headers.authorization', 'headers.cookie'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ sync: false }),
  );
}

/**
 * The logger for access lines. Their fields are fixed and built by the gateway (ids, route, method, path, status,
 * subject, issuer, timings), and none of them is a redacted key, so the redaction walk pino would run on every
 * value of every line (the `*.token`-style wildcards make it visit each field) is skipped here: it was half of the
 * access log's cost per request.
 */
export function accessLogger(logger: Logger): Logger {
  return logger.child({}, { redact: [] });
}
