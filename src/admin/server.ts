import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AdminConfig } from '../config/types.js';
import { randomUUID } from 'node:crypto';
import { Errors, sendError, writeJson } from '../http/responses.js';
import { JWKS_HEADERS } from '../plan/internal-routes.js';
import type { IssuerStatus } from '../chain/kinds.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import type { Store } from '../store/types.js';
import { adminRequestHandler } from './endpoints.js';
import { closeServer, listen } from '../lib/listen.js';
import { createRevocationApi } from './revocations.js';

export interface AdminServer {
  readonly url: string;
  close(): Promise<void>;
}

export interface ReadinessSource {
  /** `starting` until the gateway's own port is bound: an orchestrator must not send traffic before. */
  readonly listener: 'starting' | 'serving' | 'draining';
  /** The key state of every configured issuer, by name. */
  status(): ReadonlyMap<string, IssuerStatus>;
}

export interface AdminDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The gateway's store: readiness reports its health, the revocation API writes to it. */
  readonly store: Store;
  readiness(): ReadinessSource;
  /** `admin.token` of the running config, asked per request so a reload that rotates it applies at once. */
  adminToken(): string;
  /** The running config's issuers, name → `iss`: a revocation names one, and is kept under its `iss`. */
  issuers(): ReadonlyMap<string, string>;
  /** The running config's assertion keys as a JWKS document; undefined without `identity.assertion`. */
  publishedKeys(): string | undefined;
}

interface ReadinessReport {
  readonly status: 'ready' | 'not_ready';
  readonly checks: {
    readonly config: 'starting' | 'ok' | 'draining';
    readonly issuers: Record<string, { state: string; last_refresh?: string; error?: string }>;
    readonly store: { status: string; error?: string };
  };
}

/**
 * Ready when the gateway serves on its port (started, not draining), every issuer has usable keys (fresh or within stale_if_error) and the
 * store is not degraded. A degraded store still serves traffic (SPEC §8) but is reported so operators see it.
 */
function readinessReport(source: ReadinessSource, gatewayStore: Store): ReadinessReport {
  const issuers: ReadinessReport['checks']['issuers'] = {};
  let issuersOk = true;
  for (const [name, status] of source.status()) {
    if (status.state !== 'ok' && status.state !== 'stale') issuersOk = false;
    issuers[name] = {
      state: status.state,
      ...(status.lastRefresh !== undefined ? { last_refresh: new Date(status.lastRefresh).toISOString() } : {}),
      ...(status.error !== undefined ? { error: status.error } : {}),
    };
  }
  const health = gatewayStore.health();
  const store = health.status === 'degraded' ? { status: 'degraded', error: health.error } : { status: health.status };
  const ready = source.listener === 'serving' && issuersOk && health.status !== 'degraded';
  return {
    status: ready ? 'ready' : 'not_ready',
    checks: { config: source.listener === 'serving' ? 'ok' : source.listener, issuers, store },
  };
}

/** The admin listener (SPEC §11): health, readiness, metrics and the revocation API, on its own address. */
export async function startAdminServer(config: AdminConfig, deps: AdminDeps): Promise<AdminServer> {
  let revocations: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  let revocationToken: string | undefined;
  const server = createServer(
    adminRequestHandler({
      logger: deps.logger,
      collectMetrics: () => deps.metrics.registry.metrics(),
      metricsContentType: deps.metrics.registry.contentType,
      readyz: (_req, res) => {
        const report = readinessReport(deps.readiness(), deps.store);
        writeJson(res, report.status === 'ready' ? 200 : 503, report);
      },
      revocations: (req, res) => {
        const adminToken = deps.adminToken();
        if (revocations === undefined || adminToken !== revocationToken) {
          revocationToken = adminToken;
          revocations = createRevocationApi({ store: deps.store, adminToken, logger: deps.logger, issuers: deps.issuers });
        }
        revocations(req, res);
      },
      jwks: (_req, res) => {
        const body = deps.publishedKeys();
        if (body === undefined) return sendError(res, Errors.adminNotFound, randomUUID());
        res.writeHead(200, JWKS_HEADERS).end(body);
      },
    }),
  );
  // exclusive: in a cluster worker this is the worker's private listener, never one shared through the primary.
  const url = await listen(server, config.listen, { exclusive: true, setting: 'admin.listen' });
  return { url, close: () => closeServer(server) };
}
