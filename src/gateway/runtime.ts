import type { GatewayConfig, RateLimitConfig, RouteConfig } from '../config/types.js';
import { Authenticator } from '../auth/authenticator.js';
import { compileTokenExtractor, compileTokenQueryStripper } from '../auth/extract.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { compileIdentityHeaders, type IdentityHeaderWriter } from '../policy/identity-headers.js';
import { Forwarder } from '../proxy/forwarder.js';
import { compileTrustedProxies, type TrustedProxies } from '../routing/client-ip.js';
import { compileHeaderPolicy, type HeaderPolicy } from '../routing/headers.js';
import { compileHostMatcher } from '../routing/hosts.js';
import { compileRoutes, type RouteTable } from '../routing/route-table.js';
import type { CorsPolicy } from '../policy/cors.js';
import { compileRouteCors } from './cors.js';

/** Per-route work that depends only on the config, split once so the hot path only iterates. */
export interface RoutePlan {
  readonly route: RouteConfig;
  /** Limits keyed by the client (ip, header): applied before authentication. */
  readonly clientLimits: readonly RateLimitConfig[];
  /** Limits keyed by the verified identity: applied after authorization. */
  readonly identityLimits: readonly RateLimitConfig[];
  /** The route's CORS policy (its own, else the global one); undefined = no CORS headers, no preflight answers. */
  readonly cors: CorsPolicy | undefined;
}

/** What the chain needs of token verification; `authgate explain --claims` substitutes a dry-run verifier. */
export type TokenVerifier = Pick<Authenticator, 'start' | 'verify' | 'issuerStatus' | 'close'>;

/**
 * Everything compiled from one config. A reload builds a new Runtime and swaps one reference; requests in
 * flight keep the Runtime they started with.
 */
export interface Runtime {
  readonly config: GatewayConfig;
  readonly routes: RouteTable;
  readonly plans: ReadonlyMap<RouteConfig, RoutePlan>;
  readonly headerPolicy: HeaderPolicy;
  readonly extractToken: ReturnType<typeof compileTokenExtractor>;
  /** The query string the upstream gets: without the token parameter unless the token is forwarded. */
  readonly stripTokenQuery: ReturnType<typeof compileTokenQueryStripper>;
  readonly trustedProxies: TrustedProxies;
  readonly allowedHost: ((host: string) => boolean) | undefined;
  readonly identityHeaders: IdentityHeaderWriter;
  readonly authenticator: TokenVerifier;
  readonly forwarder: Forwarder;
}

export interface RuntimeDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/**
 * Compile a config. `previous` lets unchanged issuers keep their cached keys and unchanged upstreams their
 * connection pools across a reload.
 */
export function buildRuntime(config: GatewayConfig, deps: RuntimeDeps, previous?: Runtime): Runtime {
  const plans = new Map<RouteConfig, RoutePlan>();
  const corsOf = compileRouteCors(config);
  for (const route of config.routes) plans.set(route, planRoute(route, config, corsOf(route)));
  // The forwarder first: it reads CA files and may throw, and nothing has claimed shared key sets by then.
  const forwarder = new Forwarder(config.upstreams, deps.metrics, previous?.forwarder);
  return {
    config,
    routes: compileRoutes(config.routes, config.server.pathCase),
    plans,
    headerPolicy: compileHeaderPolicy({ identity: config.identity, tokenSources: config.tokens }),
    extractToken: compileTokenExtractor(config.tokens),
    stripTokenQuery: compileTokenQueryStripper(config.tokens, config.identity.forwardToken),
    trustedProxies: compileTrustedProxies(config.server.trustedProxies),
    allowedHost: config.server.allowedHosts ? compileHostMatcher(config.server.allowedHosts) : undefined,
    identityHeaders: compileIdentityHeaders(config.identity),
    authenticator: new Authenticator(
      config.issuers,
      deps,
      previous?.authenticator instanceof Authenticator ? previous.authenticator : undefined,
    ),
    forwarder,
  };
}

function planRoute(route: RouteConfig, config: GatewayConfig, cors: CorsPolicy | undefined): RoutePlan {
  const clientLimits: RateLimitConfig[] = [];
  const identityLimits: RateLimitConfig[] = [];
  for (const name of route.rateLimit) {
    const limit = config.rateLimits.get(name);
    if (!limit) continue; // validated by config; a dangling name cannot get here
    if (limit.key.kind === 'ip' || limit.key.kind === 'header') clientLimits.push(limit);
    else identityLimits.push(limit);
  }
  return { route, clientLimits, identityLimits, cors };
}

/**
 * `retire`: a reload replaced this runtime; upstream pools still in use close once their requests in flight have
 * finished. `shutdown`: the process is stopping; connections go now.
 */
export function closeRuntime(runtime: Runtime, mode: 'retire' | 'shutdown' = 'shutdown'): void {
  runtime.authenticator.close();
  if (mode === 'retire') runtime.forwarder.close();
  else runtime.forwarder.destroy();
}
