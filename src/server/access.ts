import { createHash } from 'node:crypto';
import type { RequestContext } from '../chain/kinds.js';
import type { Verdict } from '../chain/verdict.js';
import type { Identity } from '../identity/identity.js';
import { AccessLog, type Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';

/** Refusals counted by `authgate_auth_denied_total`: those about the credential and what it may do. */
const COUNTED_DENIALS: ReadonlySet<string> = new Set(['authenticate', 'revocation', 'authorize', 'inject']);

/** 48 bits of SHA-256 over the signed cookie: enough to tell sessions apart in a log, useless to replay. */
function sessionHash(cookie: string): string {
  return createHash('sha256').update(cookie).digest('base64url').slice(0, 8);
}

/** The access log line and the request metrics of every request, proxied or answered by the gateway. */
export class AccessRecorder {
  private readonly accessLog: AccessLog;
  /** A session's identity stays one object while the session is unchanged: its tag is hashed once, not per request. */
  private readonly sessionTags = new WeakMap<Identity, string>();

  constructor(
    logger: Logger,
    private readonly metrics: Metrics,
    /** `logging.access_log` of the running config, asked per request so a reload applies at once. */
    private readonly accessLogOn: () => boolean,
  ) {
    this.accessLog = new AccessLog(logger);
  }

  /**
   * `verdict` undefined: the chain failed. `interrupted`: why the gateway ended the request itself, whatever the
   * verdict was. A forward-auth check reports the original request (its route, method, path and identity); the
   * gateway's own endpoints report their target and identity only once they have done their work.
   */
  record(ctx: RequestContext, verdict: Verdict | undefined, status: number, started: number, interrupted?: string): void {
    const ms = performance.now() - started;
    const reported = ctx.reportAs ?? ctx;
    const plan = reported.plan;
    const route = plan?.name ?? '-';
    const ok = verdict?.ok === true;
    const own = plan !== undefined && plan.route === undefined;
    this.metrics.requests.labels(route, reported.method, status).inc();
    this.metrics.requestDuration.labels(route).observe(ms / 1000);
    if (verdict && !verdict.ok && !own && COUNTED_DENIALS.has(verdict.stage)) this.metrics.authDenied.inc({ reason: verdict.reason });
    if (!this.accessLogOn()) return;
    const identity = own && !ok ? undefined : reported.identity;
    this.accessLog.write({
      requestId: ctx.requestId,
      route,
      method: reported.method,
      // The path only: a sign-in callback's query holds the authorization code and state.
      path: own ? (ok ? reported.path || reported.target : undefined) : reported.path || undefined,
      status,
      decision: verdict && !interrupted ? (ok ? 'allow' : 'deny') : 'error',
      reason: interrupted ?? (verdict && !verdict.ok ? verdict.reason : undefined),
      detail: verdict && !verdict.ok ? verdict.detail : undefined,
      subject: identity?.subject,
      issuer: identity?.issuer.name,
      session: identity !== undefined && reported.credential?.scheme === 'session' ? this.sessionTag(identity, reported.credential.value) : undefined,
      upstream: ok ? plan?.upstream : undefined,
      ms: Math.round(ms * 1000) / 1000,
    });
  }

  private sessionTag(identity: Identity, cookie: string): string {
    let tag = this.sessionTags.get(identity);
    if (tag === undefined) this.sessionTags.set(identity, (tag = sessionHash(cookie)));
    return tag;
  }
}
