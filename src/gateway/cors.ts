import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { GatewayConfig, RouteConfig } from '../config/types.js';
import { compileCors, type CorsPolicy } from '../mechanisms/cors/policy.js';
import { normalizeTarget } from '../http/target.js';
import type { RequestFacts } from './pipeline.js';
import type { Runtime } from './runtime.js';

/** runtime.ts still imports the type from here. */

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

/** A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method (Fetch standard). */
function preflightMethod(method: string, headers: IncomingHttpHeaders): string | undefined {
  if (method !== 'OPTIONS' || typeof headers.origin !== 'string') return undefined;
  const requested = headers['access-control-request-method'];
  return typeof requested === 'string' && requested !== '' ? requested.toUpperCase() : undefined;
}

export interface PreflightAnswer {
  readonly route: RouteConfig;
  readonly path: string;
  /** Headers of the 204 answer; undefined = refused (origin, method or a requested header not allowed). */
  readonly headers: OutgoingHttpHeaders | undefined;
}

/**
 * SPEC §1 step 2: a preflight for a route with CORS is answered at the route stage, without authentication
 * (browsers never send credentials on a preflight). The route is the one the announced method would match.
 * Undefined when the request is not a preflight or its route has no CORS: the chain then handles it as any
 * OPTIONS request. Host checks and target normalization hold exactly as in the chain.
 */
export function answerPreflight(facts: RequestFacts, runtime: Runtime): PreflightAnswer | undefined {
  const method = preflightMethod(facts.method, facts.headers);
  if (method === undefined) return undefined;
  if (runtime.allowedHost && !runtime.allowedHost(facts.host)) return undefined;
  const target = normalizeTarget(facts.target);
  if (!target.ok) return undefined;
  const route = runtime.routes.match(facts.host, method, target.path);
  const cors = route ? runtime.plans.get(route)?.cors : undefined;
  if (!route || !cors) return undefined;
  const requestedHeaders = facts.headers['access-control-request-headers'];
  return { route, path: target.path, headers: cors.preflightHeaders(facts.headers.origin as string, method, requestedHeaders) };
}
