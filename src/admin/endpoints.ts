import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Errors, methodNotAllowed, sendError, writeJson } from '../http/responses.js';
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

const READ_METHODS = ['GET', 'HEAD'];
const READ_ONLY = methodNotAllowed(READ_METHODS);

/** SPEC §11 routing: /healthz, /readyz, /metrics, /jwks.json (read only), the revocation API; a SPEC §7 404 for anything else. */
export function adminRequestHandler(endpoints: AdminEndpoints): Handler {
  const reads = new Map<string, Handler>([
    ['/healthz', (_req, res) => writeJson(res, 200, { status: 'ok' })],
    ['/readyz', endpoints.readyz],
    ['/metrics', (_req, res) => sendMetrics(endpoints, res)],
    ['/jwks.json', endpoints.jwks],
  ]);
  return (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
    if (path === '/revocations' || path.startsWith('/revocations/')) return endpoints.revocations(req, res);
    const read = reads.get(path);
    if (read === undefined) return sendError(res, Errors.adminNotFound, randomUUID());
    if (!READ_METHODS.includes(req.method ?? '')) return sendError(res, READ_ONLY, randomUUID());
    read(req, res);
  };
}

function sendMetrics(endpoints: AdminEndpoints, res: ServerResponse): void {
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
}
