import type { GatewayConfig, RouteConfig } from '../../config/types.js';
import type { CorsPolicy, RequestContext, SyncStep } from '../../chain/kinds.js';
import { Errors, SECURITY_HEADERS } from '../../http/responses.js';
import { answered, refusal, type Trace, type Verdict } from '../../chain/verdict.js';
import { compileCors } from './policy.js';

/**
 * The policy of each route: its own `cors` mapping, the global one when it has none, nothing for `cors: false`.
 * Routes sharing the global settings share one compiled policy.
 */
export function compileRouteCors(config: GatewayConfig): (route: RouteConfig) => CorsPolicy | undefined {
  const global = config.cors ? compileCors(config.cors) : undefined;
  return (route) => {
    if (route.cors === false) return undefined;
    return route.cors === undefined ? global : compileCors(route.cors);
  };
}

const REFUSED = refusal('cors', Errors.corsRefused, 'cors_preflight');

/**
 * A preflight for a route with CORS is answered without authentication (browsers never send credentials on a
 * preflight): 204 with the allowed origin, methods and headers, or 403 when one of them is not allowed.
 */
export function preflightStep(cors: CorsPolicy): SyncStep {
  return {
    stage: 'cors',
    run(ctx: RequestContext, trace: Trace | undefined): Verdict {
      const method = (ctx.headers['access-control-request-method'] as string).toUpperCase();
      const headers = cors.preflightHeaders(ctx.headers.origin as string, method, ctx.headers['access-control-request-headers']);
      trace?.('cors', headers !== undefined, headers ? `preflight for ${method} allowed` : `preflight for ${method} refused`);
      return headers === undefined ? REFUSED : answered(204, { ...headers, ...SECURITY_HEADERS });
    },
  };
}
