import type { IncomingHttpHeaders } from 'node:http';
import { resolveClientIp, type TrustedProxies } from '../http/client-ip.js';
import { headerValue } from '../http/headers.js';
import { Errors } from '../http/responses.js';
import { normalizeTarget } from '../http/target.js';
import { normalizeHost } from '../routing/hosts.js';
import type { RouteTable } from '../routing/route-table.js';
import type { Plan, RequestContext, SyncStep } from './kinds.js';
import { PASS, refusal, type Trace, type Verdict } from './verdict.js';

/** The gateway's own endpoints under `server.reserved_prefix`, ahead of every user route. */
export interface InternalRoutes {
  /** A plan read from the raw target, before normalization could fold the original path into it (Envoy's verify). */
  raw(target: string): Plan | undefined;
  /** The plan for a normalized path under the prefix; undefined when the path is not under it. */
  match(path: string): Plan | undefined;
}

/** What the head needs: compiled once per config. */
export interface Head {
  readonly allowedHost: ((host: string) => boolean) | undefined;
  readonly trustedProxies: TrustedProxies;
  readonly routes: RouteTable<Plan>;
  readonly internal: InternalRoutes;
}

const BAD_HOST = refusal('host', Errors.badTarget, 'bad_host');
const HOST_NOT_ALLOWED = refusal('host', Errors.misdirected, 'host_not_allowed');
const BAD_TARGET = refusal('normalize', Errors.badTarget, 'bad_target');
const NO_ROUTE = refusal('route', Errors.notFound, 'no_route');

/**
 * The head of the chain, the same for every transport: normalize the target once, put the gateway's own
 * endpoints ahead of the user's routes, check the host, answer a CORS preflight, match the route. On a pass,
 * `ctx.plan` holds the steps to run.
 */
export function enter(head: Head, ctx: RequestContext, trace: Trace | undefined): Verdict {
  // A forward-auth check's original request is never the gateway's own: its path is the user's.
  const own = ctx.transport !== 'forward_auth';
  const early = own ? head.internal.raw(ctx.target) : undefined;
  if (early !== undefined) return internal(ctx, early);
  const target = normalizeTarget(ctx.target);
  if (target.ok && own) {
    const plan = head.internal.match(target.path);
    if (plan !== undefined) {
      // The sign-in endpoints read their query (the callback's code and state, sign_out's rd).
      ctx.path = target.path;
      ctx.query = target.query;
      return internal(ctx, plan);
    }
  }
  // A Host that names no host (`api.example.com:`, `a..b`, none at all) matches no host-scoped route, so it would
  // fall through to a later, weaker one, while the upstream may well read it as the host that route protects.
  if (normalizeHost(ctx.host) === undefined) {
    trace?.('host', false, `Host ${JSON.stringify(ctx.host)} names no host`);
    return BAD_HOST;
  }
  if (head.allowedHost !== undefined && !head.allowedHost(ctx.host)) {
    trace?.('host', false, `host ${JSON.stringify(ctx.host)} is not in server.allowed_hosts`);
    return HOST_NOT_ALLOWED;
  }
  if (!target.ok) {
    trace?.('normalize', false, target.reason);
    return BAD_TARGET;
  }
  trace?.('normalize', true, `path ${target.path}`);
  ctx.path = target.path;
  ctx.query = target.query;
  // A browser's preflight carries no credentials, so it is answered here, never authenticated; for a forward-auth
  // check too, whose answer only Envoy relays (verify.ts refuses it for the proxies that would pass it on).
  if (ctx.transport !== 'upgrade') {
    const preflight = preflightPlan(head, ctx);
    if (preflight !== undefined) {
      ctx.plan = preflight;
      return preflight.preflight.run(ctx, trace);
    }
  }
  return route(head, ctx, trace);
}

function route(head: Head, ctx: RequestContext, trace: Trace | undefined): Verdict {
  const plan = head.routes.match(ctx.host, ctx.method, ctx.path);
  if (plan === undefined) {
    trace?.('route', false, `no route matches ${ctx.method} ${ctx.path}`);
    return NO_ROUTE;
  }
  trace?.('route', true, `${plan.name} → upstream ${plan.upstream} (auth: ${plan.route?.auth})`);
  ctx.plan = plan;
  ctx.clientIp = resolveClientIp(ctx.peerIp, headerValue(ctx.headers['x-forwarded-for']), head.trustedProxies);
  return PASS;
}

/** The gateway's own endpoints take no upgrade, and no route may take one under the reserved prefix either. */
function internal(ctx: RequestContext, plan: Plan): Verdict {
  if (ctx.upgrade) return NO_ROUTE;
  ctx.plan = plan;
  return PASS;
}

/**
 * A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) for a route with CORS: the route is the
 * one the announced method would match. Undefined otherwise; the request then goes on as any OPTIONS request.
 */
function preflightPlan(head: Head, ctx: RequestContext): (Plan & { readonly preflight: SyncStep }) | undefined {
  const method = preflightMethod(ctx.method, ctx.headers);
  if (method === undefined) return undefined;
  const plan = head.routes.match(ctx.host, method, ctx.path);
  return plan?.preflight === undefined ? undefined : (plan as Plan & { readonly preflight: SyncStep });
}

/** The method a CORS preflight announces (Fetch standard), upper-cased; undefined when it is no preflight. */
function preflightMethod(method: string, headers: IncomingHttpHeaders): string | undefined {
  if (method !== 'OPTIONS' || typeof headers.origin !== 'string') return undefined;
  const requested = headers['access-control-request-method'];
  return typeof requested === 'string' && requested !== '' ? requested.toUpperCase() : undefined;
}
