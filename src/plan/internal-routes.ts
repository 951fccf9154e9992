import type { InternalRoutes } from '../chain/head.js';
import type { CompileContext, Plan, RequestContext, Step } from '../chain/kinds.js';
import { credentialStep } from '../chain/steps/credentials.js';
import { authenticateStep } from '../chain/steps/authenticate.js';
import { constrainStep } from '../chain/steps/constrain.js';
import { revocationStep } from '../chain/steps/revocation.js';
import { answered, PASS, refusal, type Refusal, type Verdict } from '../chain/verdict.js';
import type { RouteConfig } from '../config/types.js';
import { logoutStep, sameOriginStep } from '../endpoints/logout.js';
import { verifyStep, type VerifyDeps } from '../endpoints/verify.js';
import { envoyOriginalTarget } from '../endpoints/forward-auth-families.js';
import { Errors } from '../http/responses.js';
import type { LoginAnswer } from '../login/endpoints.js';
import { headerPolicyOf } from '../mechanisms/finalizers/header-hygiene.js';
import { compileIdentityHeaders } from '../mechanisms/finalizers/identity-headers.js';
import { errorsFor, forRoute, unclaimed, type Mechanisms, type PlanInputs } from './compile.js';

const SLASH = 0x2f;
const NOT_FOUND = refusal('route', Errors.notFound, 'no_route');
const METHOD_NOT_ALLOWED = refusal('endpoint', Errors.methodNotAllowed, 'method');
const HOST_NOT_ALLOWED = refusal('host', Errors.misdirected, 'host_not_allowed');

/** A step that always gives the same verdict. */
function fixed(verdict: Refusal): Step {
  return { stage: verdict.stage, run: () => verdict };
}

function methods(allowed: readonly string[]): Step {
  return { stage: 'endpoint', run: (ctx) => (allowed.includes(ctx.method) ? PASS : METHOD_NOT_ALLOWED) };
}

/** `server.allowed_hosts` holds for the gateway's own endpoints too (a verify check's own Host excepted). */
function host(allowedHost: ((host: string) => boolean) | undefined): readonly Step[] {
  if (allowedHost === undefined) return [];
  return [{ stage: 'host', run: (ctx) => (allowedHost(ctx.host) ? PASS : HOST_NOT_ALLOWED) }];
}

function internalPlan(path: string, steps: readonly Step[]): Plan {
  return { name: '-', match: { host: undefined, path, methods: undefined }, route: undefined, upstream: undefined, steps, preflight: undefined, cors: undefined };
}

/**
 * The gateway's own endpoints under `server.reserved_prefix`, ahead of every user route: logout, forward-auth
 * verify (when `server.forward_auth` names a proxy), the public keys of the signed assertion (`jwks.json`), and
 * 404 for anything else under the prefix. Suffixes are exact, so `/verify/` is a 404. The prefix is compared on the
 * normalized path (case-folded where routes are), so no spelling (`//_authgate`, `/%5Fauthgate`, `/x/../_authgate`)
 * can slip past it to a user route.
 */
export function compileInternalRoutes(inputs: PlanInputs, allowedHost: ((host: string) => boolean) | undefined, decide: VerifyDeps['decide']): InternalRoutes {
  const { server } = inputs.ctx.config;
  const folded = server.pathCase === 'insensitive';
  const prefix = folded ? server.reservedPrefix.toLowerCase() : server.reservedPrefix;
  const family = server.forwardAuth;
  const verify = family === 'off' ? undefined : verifyStep({ ...verifyDeps(inputs.ctx), family, reservedPrefix: server.reservedPrefix, folded, decide });
  const logout = internalPlan(`${server.reservedPrefix}/logout`, [...host(allowedHost), methods(['POST']), ...logoutSteps(inputs)]);
  const notFound = internalPlan(server.reservedPrefix, [...host(allowedHost), fixed(NOT_FOUND)]);
  const verifyPlan = verify && internalPlan(`${server.reservedPrefix}/verify`, family === 'envoy' ? [verify] : [methods(['GET', 'POST']), verify]);
  const envoy = family === 'envoy' ? verifyPlan : undefined;
  const byEndpoint = new Map<string, Plan>([['/logout', logout]]);
  const jwks = publishedKeys(inputs.mechanisms);
  if (jwks !== undefined) byEndpoint.set('/jwks.json', internalPlan(`${server.reservedPrefix}/jwks.json`, [...host(allowedHost), methods(['GET', 'HEAD']), jwksStep(jwks)]));
  for (const [suffix, endpoint] of inputs.login?.endpoints() ?? []) {
    const steps = [...host(allowedHost), methods(endpoint.methods), ...(endpoint.checks ?? []), loginStep(endpoint.run)];
    byEndpoint.set(suffix, internalPlan(`${server.reservedPrefix}${suffix}`, steps));
  }
  if (verifyPlan && family !== 'envoy') byEndpoint.set('/verify', verifyPlan);
  return {
    raw: (target) => (envoy !== undefined && envoyOriginalTarget(target, server.reservedPrefix, folded) !== undefined ? envoy : undefined),
    match(path) {
      const candidate = folded ? path.toLowerCase() : path;
      if (!candidate.startsWith(prefix) || (candidate.length > prefix.length && candidate.charCodeAt(prefix.length) !== SLASH)) return undefined;
      return byEndpoint.get(candidate.slice(prefix.length)) ?? notFound;
    },
  };
}

/** The JWKS of the keys the mechanisms sign with (the identity assertion's); undefined when none sign. */
export function publishedKeys(mechanisms: Mechanisms): (() => string | undefined) | undefined {
  const publishers = [...mechanisms.byName.values()].filter((mechanism) => mechanism.publishedKeys !== undefined);
  if (publishers.length === 0) return undefined;
  return () => publishers[0]?.publishedKeys?.();
}

/** Upstreams cache the keys for a few minutes: a rotation publishes the new key before it signs. */
export const JWKS_HEADERS = Object.freeze({ 'content-type': 'application/jwk-set+json', 'cache-control': 'public, max-age=300' });
const KEYS_NOT_LOADED = refusal('endpoint', Errors.unavailable, 'keys_not_loaded');

function jwksStep(jwks: () => string | undefined): Step {
  return {
    stage: 'endpoint',
    run() {
      const body = jwks();
      return body === undefined ? KEYS_NOT_LOADED : answered(200, JWKS_HEADERS, body);
    },
  };
}

/** A sign-in endpoint: its whole answer (a redirect, a small page) comes from the login module. */
function loginStep(run: (ctx: RequestContext) => Promise<LoginAnswer>): Step {
  return { stage: 'endpoint', run: async (ctx): Promise<Verdict> => ({ ok: true, answer: await run(ctx) }) };
}

function verifyDeps(ctx: CompileContext): Pick<VerifyDeps, 'identityHeaders' | 'headerPolicy' | 'identity' | 'assertionHeader'> {
  const { identity } = ctx.config;
  return {
    identityHeaders: compileIdentityHeaders(identity),
    headerPolicy: headerPolicyOf(ctx.config),
    identity,
    assertionHeader: identity.assertion?.header.toLowerCase(),
  };
}

/** Logout authenticates as a route that takes every issuer would, and refuses without a token. */
const EVERY_ISSUER: RouteConfig = Object.freeze({
  name: '-',
  match: { host: undefined, path: '/', methods: undefined },
  upstream: '',
  auth: 'required',
  issuers: undefined,
  require: undefined,
  rateLimit: [],
  cors: false,
  login: undefined,
});

function logoutSteps(inputs: PlanInputs): Step[] {
  const { ctx, mechanisms } = inputs;
  const errors = errorsFor(mechanisms, EVERY_ISSUER);
  return [
    credentialStep(inputs.findCredential, errors, { required: true, query: false }),
    sameOriginStep(ctx.config.cors?.origins ?? []),
    authenticateStep(forRoute(mechanisms.authenticators, EVERY_ISSUER, errors), unclaimed(errors)),
    // Only the holder of a sender-constrained token may end it: a DPoP token comes with its proof here too.
    constrainStep(forRoute(mechanisms.constraints, EVERY_ISSUER, errors)),
    revocationStep(ctx.store.revocations, errors),
    logoutStep(ctx.store.revocations, errors, ctx.logger),
  ];
}
