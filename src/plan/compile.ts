import type { RouteConfig } from '../config/types.js';
import type {
  Authenticator,
  Authorizer,
  CompileContext,
  Compiled,
  CorsPolicy,
  Credential,
  CredentialFinder,
  ErrorRenderer,
  Finalizer,
  Limiter,
  MechanismType,
  Plan,
  SenderConstraint,
  Step,
} from '../chain/kinds.js';
import { authenticateStep } from '../chain/steps/authenticate.js';
import { authorizeStep } from '../chain/steps/authorize.js';
import { credentialStep } from '../chain/steps/credentials.js';
import { finalizeStep } from '../chain/steps/finalize.js';
import { revocationStep } from '../chain/steps/revocation.js';
import { constrainStep } from '../chain/steps/constrain.js';
import { refusal, type Refusal } from '../chain/verdict.js';
import { DpopProofDescription, InvalidTokenDescription } from '../http/responses.js';
import { preflightStep } from '../mechanisms/cors/preflight.js';
import type { LoginService } from '../login/mechanism.js';
import type { Registry } from './registry.js';

/** Every mechanism of the registry, created for one config, in registry order. */
export interface Mechanisms {
  readonly authenticators: readonly Compiled<Authenticator>[];
  readonly constraints: readonly Compiled<SenderConstraint>[];
  readonly authorizers: readonly Compiled<Authorizer>[];
  readonly limiters: readonly Compiled<readonly Limiter[]>[];
  readonly finalizers: readonly Compiled<Finalizer>[];
  readonly errors: readonly { forRoute(route: RouteConfig): ErrorRenderer | undefined }[];
  /** `kind.name` → instance, for the next config to adopt (unchanged issuers keep their keys). */
  readonly byName: ReadonlyMap<string, Compiled<unknown>>;
}

/** Creates every registered mechanism once for `ctx.config`, handing each what it built for the previous config. */
export function createMechanisms(registry: Registry, ctx: CompileContext, previous: Mechanisms | undefined): Mechanisms {
  const byName = new Map<string, Compiled<unknown>>();
  const earlier = (name: string): Compiled<unknown> | undefined => byName.get(name);
  const create = <I>(kind: string, types: Readonly<Record<string, MechanismType<I>>>): Compiled<I>[] => {
    const created: Compiled<I>[] = [];
    for (const [name, type] of Object.entries(types)) {
      const instance = type.create(ctx, previous?.byName.get(`${kind}.${name}`) as Compiled<I> | undefined, earlier);
      if (instance === undefined) continue;
      byName.set(`${kind}.${name}`, instance as Compiled<unknown>);
      created.push(instance);
    }
    return created;
  };
  const errors = Object.values(registry.errors).flatMap((type) => type.create(ctx) ?? []);
  return {
    authenticators: create('authenticators', registry.authenticators),
    constraints: create('constraints', registry.constraints),
    authorizers: create('authorizers', registry.authorizers),
    limiters: create('limiters', registry.limiters),
    finalizers: create('finalizers', registry.finalizers),
    errors,
    byName,
  };
}

/** Each mechanism narrowed to `route`; those that do not apply there are left out. */
export function forRoute<I>(compiled: readonly Compiled<I>[], route: RouteConfig, errors: ErrorRenderer): I[] {
  const applied: I[] = [];
  for (const mechanism of compiled) {
    const instance = mechanism.forRoute(route, errors);
    if (instance !== undefined) applied.push(instance);
  }
  return applied;
}

export function errorsFor(mechanisms: Mechanisms, route: RouteConfig): ErrorRenderer {
  for (const candidate of mechanisms.errors) {
    const renderer = candidate.forRoute(route);
    if (renderer !== undefined) return renderer;
  }
  throw new Error(`route "${route.name}": no error renderer applies`);
}

/**
 * Every authenticator said "not mine": the credential is of a kind no configured mechanism reads. A DPoP one is a
 * token whose issuers here take no DPoP, refused as the DPoP constraint refuses it on a route that mixes issuers.
 */
export function unclaimed(errors: ErrorRenderer): (credential: Credential) => Refusal {
  const unread = refusal('authenticate', errors.invalidCredentials(InvalidTokenDescription.malformed), 'unclaimed_credential');
  const dpop = refusal('authenticate', errors.invalidCredentials(DpopProofDescription.notAccepted), 'dpop_not_accepted');
  return (credential) => (credential.scheme === 'dpop' ? dpop : unread);
}

/** What a plan is compiled from besides its route. */
export interface PlanInputs {
  readonly ctx: CompileContext;
  readonly mechanisms: Mechanisms;
  readonly findCredential: CredentialFinder;
  readonly cors: CorsPolicy | undefined;
  /** Browser sign-in, when the config has a `login` section. */
  readonly login: LoginService | undefined;
}

/**
 * One route's plan: client-keyed limits, then (unless `auth: none`) the credential, its authentication, the sender
 * constraints and the revocation check, the route's authorizers, identity-keyed limits, and the finalizers that build the upstream's
 * headers. Compiled once per config; a request only walks the array.
 */
export function compilePlan(route: RouteConfig, inputs: PlanInputs): Plan {
  const { ctx, mechanisms, cors } = inputs;
  const errors = errorsFor(mechanisms, route);
  const limiters = forRoute(mechanisms.limiters, route, errors).flat();
  const steps: Step[] = limiters.filter((limiter) => limiter.phase === 'client');
  if (route.auth !== 'none') {
    const options = { required: route.auth === 'required', query: true };
    const find = route.login !== undefined && inputs.login !== undefined ? inputs.login.sessionFinder(inputs.findCredential) : inputs.findCredential;
    steps.push(
      credentialStep(find, errors, options),
      authenticateStep(forRoute(mechanisms.authenticators, route, errors), unclaimed(errors)),
    );
    const constraints = forRoute(mechanisms.constraints, route, errors);
    if (constraints.length > 0) steps.push(constrainStep(constraints));
    steps.push(revocationStep(ctx.store.revocations, errors));
  }
  const authorizers = forRoute(mechanisms.authorizers, route, errors);
  if (authorizers.length > 0) steps.push(authorizeStep(authorizers, errors));
  steps.push(...limiters.filter((limiter) => limiter.phase === 'identity'));
  const { login } = inputs;
  const finalizers = forRoute(mechanisms.finalizers, route, errors);
  if (login !== undefined && route.login !== undefined && ctx.config.identity.forwardToken) finalizers.push(login.forwardAccessToken);
  steps.push(finalizeStep(finalizers));
  const providers = route.login;
  return {
    name: route.name,
    match: route.match,
    route,
    upstream: route.upstream,
    steps: login === undefined || providers === undefined ? steps : steps.map((step) => login.forBrowsers(step, providers)),
    preflight: cors === undefined ? undefined : preflightStep(cors),
    cors,
  };
}
