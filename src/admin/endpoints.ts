import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Errors, sendError, writeJson } from '../http/responses.js';
import type { Logger } from '../observability/log.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** What differs between the admin listener of a gateway and the cluster primary's public one. */
export interface AdminEndpoints {
  readonly logger: Logger;
  /** Prometheus text exposition, and its content type. */
  collectMetrics(): Promise<string>;
  readonly metricsContentType: string;
  readonly readyz: Handler;
  /** Everything under `/revocations`. */
  readonly revocations: Handler;
  /** The public keys of the signed identity assertion. */
  readonly jwks: Handler;
}

/** SPEC §11 routing: /healthz, /readyz, /metrics, the revocation API, /jwks.json; a SPEC §7 404 for anything else. */
export function adminRequestHandler(endpoints: AdminEndpoints): Handler {
  return (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
    if (path === '/healthz') return writeJson(res, 200, { status: 'ok' });
    if (path === '/readyz') return endpoints.readyz(req, res);
    if (path === '/metrics') {
      endpoints.collectMetrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': endpoints.metricsContentType });
          res.end(text);
        },
        (err: unknown) => {
          endpoints.logger.error({ err }, 'metrics collection failed');
          sendError(res, Errors.internalError, randomUUID());
        },
      );
      return;
    }
    if (path === '/revocations' || path.startsWith('/revocations/')) return endpoints.revocations(req, res);
    if (path === '/jwks.json') return endpoints.jwks(req, res);
    sendError(res, Errors.adminNotFound, randomUUID());
  };
}
