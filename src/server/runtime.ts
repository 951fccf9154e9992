import type { Head } from '../chain/head.js';
import type { CompileContext, IssuerStatus, Plan, RequestContext } from '../chain/kinds.js';
import { decide } from '../chain/run.js';
import type { GatewayConfig } from '../config/types.js';
import { compileTrustedProxies } from '../http/client-ip.js';
import { compileTokenExtractor } from '../mechanisms/credentials/search.js';
import { compileRouteCors } from '../mechanisms/cors/preflight.js';
import type { LoginService } from '../login/mechanism.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { compilePlan, createMechanisms, type Mechanisms, type PlanInputs } from '../plan/compile.js';
import { compileInternalRoutes } from '../plan/internal-routes.js';
import { registry as defaultRegistry, type Registry } from '../plan/registry.js';
import { Forwarder } from '../proxy/forwarder.js';
import { compileHostMatcher } from '../routing/hosts.js';
import { compileRoutes } from '../routing/route-table.js';
import type { Store } from '../store/types.js';

/**
 * Everything compiled from one config. A reload builds a new Runtime and swaps one reference; requests in
 * flight keep the Runtime they started with.
 */
export interface Runtime {
  readonly config: GatewayConfig;
  readonly head: Head;
  readonly forwarder: Forwarder;
  readonly mechanisms: Mechanisms;
  /** Browser sign-in, when the config has a `login` section. */
  readonly login: LoginService | undefined;
}

export interface RuntimeDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly store: Store;
}

/**
 * Compile a config. `previous` lets unchanged issuers keep their cached keys and unchanged upstreams their
 * connection pools across a reload; `registry` is the set of mechanisms (explain swaps in a dry-run one).
 */
export function buildRuntime(config: GatewayConfig, deps: RuntimeDeps, previous?: Runtime, registry: Registry = defaultRegistry): Runtime {
  const ctx: CompileContext = { config, ...deps };
  const corsOf = compileRouteCors(config);
  // The forwarder first: it reads CA files and may throw, and nothing has claimed shared key sets by then.
  const forwarder = new Forwarder(config.upstreams, deps.metrics, previous?.forwarder);
  const mechanisms = createMechanisms(registry, ctx, previous?.mechanisms);
  const findCredential = compileTokenExtractor(config.tokens, registry.credentials);
  const login = mechanisms.byName.get('authenticators.session') as LoginService | undefined;
  const plans = config.routes.map((route) => compilePlan(route, { ctx, mechanisms, findCredential, cors: corsOf(route), login }));
  const allowedHost = config.server.allowedHosts ? compileHostMatcher(config.server.allowedHosts) : undefined;
  const inputs: PlanInputs = { ctx, mechanisms, findCredential, cors: undefined, login };
  const head: Head = {
    allowedHost,
    trustedProxies: compileTrustedProxies(config.server.trustedProxies),
    routes: compileRoutes<Plan>(plans, config.server.pathCase),
    internal: compileInternalRoutes(inputs, allowedHost, (original: RequestContext) => decide(head, original)),
  };
  return { config, head, forwarder, mechanisms, login };
}

/** First load of what the mechanisms need (issuer keys); resolves when all settled, whether they worked or not. */
export async function startRuntime(runtime: Runtime): Promise<void> {
  await Promise.all([...runtime.mechanisms.byName.values()].map((mechanism) => mechanism.start?.()));
}

/** The key state of every issuer, for readiness. */
export function runtimeStatus(runtime: Runtime): ReadonlyMap<string, IssuerStatus> {
  const status = new Map<string, IssuerStatus>();
  for (const mechanism of runtime.mechanisms.byName.values()) {
    for (const [name, state] of mechanism.status?.() ?? []) status.set(name, state);
  }
  return status;
}

/**
 * `retire`: a reload replaced this runtime; upstream pools still in use close once their requests in flight have
 * finished. `shutdown`: the process is stopping; connections go now.
 */
export function closeRuntime(runtime: Runtime, mode: 'retire' | 'shutdown' = 'shutdown'): void {
  for (const mechanism of runtime.mechanisms.byName.values()) mechanism.close?.();
  if (mode === 'retire') runtime.forwarder.close();
  else runtime.forwarder.destroy();
}
