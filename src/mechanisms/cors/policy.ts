import type { OutgoingHttpHeaders } from 'node:http';
import type { CorsPolicy } from '../../chain/kinds.js';
import type { CorsConfig } from '../../config/types.js';

/** Request headers a browser may send cross-origin without listing them (Fetch standard, CORS-safelisted). */
const SAFELISTED_HEADERS: ReadonlySet<string> = new Set(['accept', 'accept-language', 'content-language']);

const VARY_ORIGIN: OutgoingHttpHeaders = Object.freeze({ vary: 'Origin' });

/**
 * CORS for one route, compiled once per config: every header value is built here so the hot path only looks up
 * the request's Origin in a set and copies a few strings.
 */
export function compileCors(config: CorsConfig): CorsPolicy {
  const anyOrigin = config.origins.includes('*');
  const origins: ReadonlySet<string> = new Set(config.origins);
  const methods: ReadonlySet<string> = new Set(config.methods);
  const headers: ReadonlySet<string> = new Set(config.headers.map((name) => name.toLowerCase()));
  const allowMethods = config.methods.join(', ');
  const allowHeaders = config.headers.join(', ');
  const maxAge = String(Math.floor(config.maxAgeMs / 1000));

  // Origins compare case-insensitively on scheme and host; config origins are stored lower-cased.
  const allowed = (origin: string): boolean => anyOrigin || origins.has(origin.toLowerCase());
  // `*` is only ever sent without credentials (config refuses the combination); otherwise the origin is echoed.
  const allowOrigin = (origin: string): string => (anyOrigin && !config.credentials ? '*' : origin);
  const withCredentials = (target: OutgoingHttpHeaders): OutgoingHttpHeaders => {
    if (config.credentials) target['access-control-allow-credentials'] = 'true';
    return target;
  };

  return {
    responseHeaders(origin) {
      if (!allowed(origin)) return VARY_ORIGIN;
      return withCredentials({ 'access-control-allow-origin': allowOrigin(origin), vary: 'Origin' });
    },
    preflightHeaders(origin, method, requestedHeaders) {
      if (!allowed(origin) || !methods.has(method)) return undefined;
      if (requestedHeaders !== undefined) {
        for (const raw of requestedHeaders.split(',')) {
          const name = raw.trim().toLowerCase();
          if (name !== '' && !headers.has(name) && !SAFELISTED_HEADERS.has(name)) return undefined;
        }
      }
      return withCredentials({
        'access-control-allow-origin': allowOrigin(origin),
        'access-control-allow-methods': allowMethods,
        'access-control-allow-headers': allowHeaders,
        'access-control-max-age': maxAge,
        vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
      });
    },
  };
}
