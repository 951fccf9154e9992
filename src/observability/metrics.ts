import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LabeledCounter, LabeledHistogram } from './labeled.js';

/**
 * Every metric the admin listener's /metrics reports, in one registry that is passed to the stages that report to it.
 * Labels are bounded (route names, issuer names, fixed reasons), never paths or subjects. Those updated on every
 * request are labeled cells (./labeled.ts) rather than prom-client's own metrics.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly requests = new LabeledCounter({
    name: 'authgate_requests_total',
    help: 'Requests handled, by route name, method and status',
    labelNames: ['route', 'method', 'status'],
    registers: [this.registry],
  });

  readonly requestDuration = new LabeledHistogram({
    name: 'authgate_request_duration_seconds',
    help: 'Time from request until the response closes, by route name',
    labelNames: ['route'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly authDenied = new Counter({
    name: 'authgate_auth_denied_total',
    help: 'Requests denied by authentication or authorization, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly jwksRefresh = new Counter({
    name: 'authgate_jwks_refresh_total',
    help: 'JWKS fetches, by issuer and result (ok, error)',
    labelNames: ['issuer', 'result'] as const,
    registers: [this.registry],
  });

  readonly tokenCache = new LabeledCounter({
    name: 'authgate_token_cache_total',
    help: 'Verified-token cache lookups, by result (hit; miss: verified now; shared: joined a verification of the same token under way)',
    labelNames: ['result'],
    registers: [this.registry],
  });

  readonly introspection = new Counter({
    name: 'authgate_introspection_total',
    help: 'Token introspection requests, by issuer and result (active, inactive, expired, issuer, audience, type, claims, unavailable)',
    labelNames: ['issuer', 'result'] as const,
    registers: [this.registry],
  });

  readonly introspectionCache = new Counter({
    name: 'authgate_introspection_cache_total',
    help: 'Introspection cache lookups, by issuer and result (hit; miss: introspected now; shared: joined an introspection of the same token under way; shed: refused unasked, the endpoint busy)',
    labelNames: ['issuer', 'result'] as const,
    registers: [this.registry],
  });

  readonly rateLimited = new Counter({
    name: 'authgate_rate_limited_total',
    help: 'Requests refused by a rate limit, by limit name',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });

  readonly storeErrors = new Counter({
    name: 'authgate_store_errors_total',
    help: 'Errors talking to the shared store',
    registers: [this.registry],
  });

  readonly upstreamErrors = new Counter({
    name: 'authgate_upstream_errors_total',
    help: 'Upstream failures, by upstream and kind (refused, timeout, reset, tls, other, queue_timeout, upgrade_refused, bad_handshake)',
    labelNames: ['upstream', 'kind'] as const,
    registers: [this.registry],
  });

  readonly logins = new Counter({
    name: 'authgate_logins_total',
    help: 'Browser sign-in callbacks, by provider and result (success, or why it failed)',
    labelNames: ['provider', 'result'] as const,
    registers: [this.registry],
  });

  readonly sessionRefresh = new Counter({
    name: 'authgate_session_refresh_total',
    help: 'Session token refreshes, by provider and result (success, ended, unavailable)',
    labelNames: ['provider', 'result'] as const,
    registers: [this.registry],
  });

  /**
   * Read from the session store at each scrape. With Redis every instance reports the same store-wide count, so
   * the workers of one process are combined with max (and instances should be too), never summed.
   */
  readonly sessionsActive = new Gauge({
    name: 'authgate_sessions_active',
    help: 'Browser sessions live in the session store (with Redis: of every instance)',
    aggregator: 'max',
    registers: [this.registry],
    collect: () => this.countSessions(),
  });

  /** How to count the live sessions; undefined while the config has no browser sign-in. */
  private liveSessions: (() => Promise<number>) | undefined;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (!options.defaultMetrics) return;
    // Standard names (process_cpu_seconds_total, nodejs_heap_size_used_bytes…) so stock Node.js dashboards work.
    collectDefaultMetrics({ register: this.registry });
    // prom-client also reports these gauges with a `_total` suffix, which Prometheus reserves for counters
    // (`promtool check metrics` refuses them); each is the sum of its per-type twin (`nodejs_active_handles`…).
    for (const name of MISNAMED_DEFAULT_GAUGES) this.registry.removeSingleMetric(name);
  }

  /** Browser sign-in's session store, counted at each scrape from now on; undefined when sign-in is gone. */
  countSessionsIn(store: SessionCounter | undefined): void {
    this.liveSessions = store === undefined ? undefined : () => store.countLive();
  }

  private async countSessions(): Promise<void> {
    if (this.liveSessions === undefined) {
      this.sessionsActive.set(0);
      return;
    }
    try {
      this.sessionsActive.set(await this.liveSessions());
    } catch {
      // Redis is down: a scrape must still answer, with the last count it had.
      this.storeErrors.inc();
    }
  }
}

export interface SessionCounter {
  countLive(): Promise<number>;
}

const MISNAMED_DEFAULT_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];
