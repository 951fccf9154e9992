import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { RateLimitConfig, RouteConfig } from '../config/types.js';
import type { TokenExtraction } from '../auth/extract.js';
import { InvalidTokenDescription, type Identity } from '../auth/types.js';
import { claimAsString, readClaim } from '../policy/claim-path.js';
import { evaluateRules } from '../policy/rules.js';
import { resolveClientIp } from '../routing/client-ip.js';
import { buildUpstreamHeaders, headerValue } from '../routing/headers.js';
import { normalizeTarget } from '../routing/normalize.js';
import type { RateLimitDecision, Store } from '../store/types.js';
import type { Metrics } from '../observability/metrics.js';
import {
  Errors,
  insufficientScope,
  rateLimited,
  invalidRequest,
  invalidToken,
  keysUnavailable,
  missingToken,
  type GatewayError,
} from './errors.js';
import type { RoutePlan, Runtime } from './runtime.js';

/** The facts of one request the chain decides on: a proxied request, an upgrade, or a forward-auth check. */
export interface RequestFacts {
  readonly method: string;
  /** The raw request target, before normalization. */
  readonly target: string;
  readonly host: string;
  readonly headers: IncomingHttpHeaders;
  readonly headersDistinct: NodeJS.Dict<string[]>;
  readonly peerIp: string;
  readonly trustedPeer: boolean;
  readonly proto: 'http' | 'https';
  readonly upgrade: boolean;
  readonly requestId: string;
}

export type Stage = 'host' | 'normalize' | 'route' | 'rate_limit' | 'authenticate' | 'revocation' | 'authorize';

export interface Denied {
  readonly allow: false;
  readonly stage: Stage;
  readonly error: GatewayError;
  /** Short machine reason for the access log and `authgate_auth_denied_total`. */
  readonly reason: string;
  /** For the access log only: what was compared (e.g. an unknown `iss` and the nearest configured issuer). */
  readonly detail?: string;
  readonly route: RouteConfig | undefined;
  readonly identity: Identity | undefined;
  readonly path: string | undefined;
}

export interface Allowed {
  readonly allow: true;
  readonly route: RouteConfig;
  readonly identity: Identity | undefined;
  /** Normalized path: what the policy checked and what is forwarded. */
  readonly path: string;
  readonly query: string;
  /** The complete header set for the upstream, identity headers included. */
  readonly upstreamHeaders: OutgoingHttpHeaders;
  /** RateLimit-* headers for the client, when the route has limits. */
  readonly rateLimitHeaders: OutgoingHttpHeaders | undefined;
}

export type Decision = Allowed | Denied;

/** What the access log and metrics need to know of any handled request, proxied or answered here. */
export interface Outcome {
  readonly allow: boolean;
  readonly stage?: Stage;
  readonly reason?: string;
  readonly detail?: string;
  readonly route: RouteConfig | undefined;
  readonly identity: Identity | undefined;
  readonly path: string | undefined;
  /** The method to record when it is not the request's own: a forward-auth check records the original's. */
  readonly method?: string;
}

export interface PipelineDeps {
  readonly store: Store;
  readonly metrics: Metrics;
}

/**
 * Receives every step's verdict, for `authgate explain`. Called with optional chaining so that on the proxy path,
 * where no trace is given, not even the detail strings are built.
 */
export type Trace = (stage: Stage | 'inject', ok: boolean, detail: string) => void;

/** `server.allowed_hosts`: the one host check, for routes and the reserved endpoints alike. */
export function hostAllowed(host: string, runtime: Runtime): boolean {
  return runtime.allowedHost === undefined || runtime.allowedHost(host);
}

/**
 * The filter chain of SPEC §1, steps 1–8 short of forwarding: a function of the request facts, the compiled
 * config and the store. Every transport (HTTP, WebSocket, forward-auth, logout) runs the same chain.
 */
export async function decide(facts: RequestFacts, runtime: Runtime, deps: PipelineDeps, trace?: Trace): Promise<Decision> {
  if (!hostAllowed(facts.host, runtime)) {
    trace?.('host', false, `host ${JSON.stringify(facts.host)} is not in server.allowed_hosts`);
    return deny('host', Errors.misdirected, 'host_not_allowed');
  }
  const target = normalizeTarget(facts.target);
  if (!target.ok) {
    trace?.('normalize', false, target.reason);
    return deny('normalize', Errors.badTarget, 'bad_target');
  }
  trace?.('normalize', true, `path ${target.path}`);

  const route = runtime.routes.match(facts.host, facts.method, target.path);
  if (!route) {
    trace?.('route', false, `no route matches ${facts.method} ${target.path}`);
    return deny('route', Errors.notFound, 'no_route', undefined, undefined, target.path);
  }
  trace?.('route', true, `${route.name} → upstream ${route.upstream} (auth: ${route.auth})`);
  const plan = runtime.plans.get(route) as RoutePlan;

  const clientIp = resolveClientIp(facts.peerIp, headerValue(facts.headers['x-forwarded-for']), runtime.trustedProxies);
  let limitState: RateLimitDecision | undefined;
  if (plan.clientLimits.length > 0) {
    const limited = await consumeLimits(plan.clientLimits, facts, clientIp, undefined, deps);
    if (limited.denied) {
      trace?.('rate_limit', false, `limit ${limited.limit.name} exhausted`);
      return denyLimited(limited.decision, limited.limit, route, undefined, target.path);
    }
    limitState = limited.decision;
    trace?.('rate_limit', true, `client limits [${plan.clientLimits.map((l) => l.name).join(', ')}] have room`);
  }

  let identity: Identity | undefined;
  if (route.auth !== 'none') {
    const extracted = runtime.extractToken(facts.headersDistinct, target.query, facts.upgrade);
    const authenticated = await authenticate(extracted, route.auth === 'required', route.issuers, runtime, deps.store, trace);
    if (!authenticated.ok) {
      const denied = deny(authenticated.stage, authenticated.error, authenticated.reason, route, authenticated.identity, target.path);
      return authenticated.detail === undefined ? denied : { ...denied, detail: authenticated.detail };
    }
    identity = authenticated.identity;
  }

  if (route.require) {
    // Rules need a verified identity: an anonymous request on an `auth: optional` route with rules is refused.
    if (!identity) {
      trace?.('authorize', false, 'rules need a token');
      return deny('authenticate', missingToken, 'no_token', route, undefined, target.path);
    }
    const outcome = evaluateRules(route.require, identity);
    if (!outcome.ok) {
      trace?.('authorize', false, outcome.reason);
      return deny('authorize', insufficientScope(outcome.requiredScopes), `rule_${outcome.rule}`, route, identity, target.path);
    }
    trace?.('authorize', true, 'every rule holds');
  }

  if (plan.identityLimits.length > 0) {
    const limited = await consumeLimits(plan.identityLimits, facts, clientIp, identity, deps);
    if (limited.denied) {
      trace?.('rate_limit', false, `limit ${limited.limit.name} exhausted`);
      return denyLimited(limited.decision, limited.limit, route, identity, target.path);
    }
    if (!limitState || limited.decision.remaining < limitState.remaining) limitState = limited.decision;
    trace?.('rate_limit', true, `identity limits [${plan.identityLimits.map((l) => l.name).join(', ')}] have room`);
  }

  // Like the token header and cookie, a token in the query is kept from the upstream on every route, public ones
  // included, whether or not this request's credentials came from there.
  const query = runtime.stripTokenQuery(target.query);
  const upstreamHeaders = buildUpstreamHeaders(facts.headers, runtime.headerPolicy, {
    trustedPeer: facts.trustedPeer,
    clientIp,
    peerIp: facts.peerIp,
    proto: facts.proto,
    host: facts.host,
    requestId: facts.requestId,
    upgrade: facts.upgrade,
    forwardToken: runtime.config.identity.forwardToken,
  });
  if (identity) runtime.identityHeaders.write(identity, upstreamHeaders);
  trace?.('inject', true, identity ? 'identity headers set' : 'anonymous: no identity headers');

  return {
    allow: true,
    route,
    identity,
    path: target.path,
    query,
    upstreamHeaders,
    rateLimitHeaders: limitState ? rateLimitHeaders(limitState) : undefined,
  };
}

export type Authentication =
  | { readonly ok: true; readonly identity: Identity | undefined }
  | {
      readonly ok: false;
      readonly stage: 'authenticate' | 'revocation';
      readonly error: GatewayError;
      readonly reason: string;
      readonly detail?: string;
      readonly identity: Identity | undefined;
    };

/**
 * SPEC §1 step 5 for every transport that takes a token (proxied requests, upgrades, forward-auth, logout): the
 * extracted credentials, verified, then checked against revocations. `required: false` lets "no token" through.
 */
export async function authenticate(
  extracted: TokenExtraction,
  required: boolean,
  issuers: readonly string[] | undefined,
  runtime: Runtime,
  store: Store,
  trace?: Trace,
): Promise<Authentication> {
  switch (extracted.kind) {
    case 'invalid_request':
      trace?.('authenticate', false, `invalid request: ${extracted.reason}`);
      return refused('authenticate', invalidRequest(INVALID_CREDENTIALS), extracted.reason);
    case 'too_long':
      trace?.('authenticate', false, 'token longer than 8 KiB');
      return refused('authenticate', invalidToken(InvalidTokenDescription.tooLong), 'token_too_long');
    case 'none':
      trace?.('authenticate', !required, 'no token presented');
      return required ? refused('authenticate', missingToken, 'no_token') : ANONYMOUS;
    case 'token': {
      const verified = await runtime.authenticator.verify(extracted.token, issuers);
      if (!verified.ok) {
        trace?.('authenticate', false, `${verified.reason} (${extracted.source.kind} ${extracted.source.name})${verified.detail === undefined ? '' : `: ${verified.detail}`}`);
        const error = verified.status === 503 ? keysUnavailable(verified.description) : invalidToken(verified.description);
        return refused('authenticate', error, verified.reason, undefined, verified.detail);
      }
      const identity = verified.identity;
      trace?.('authenticate', true, `issuer ${identity.issuer.name}, subject ${identity.subject ?? '(none)'}`);
      if (!store.revocations.synced()) {
        trace?.('revocation', false, 'revocations not loaded yet: the store has been unreachable since start');
        return refused('revocation', Errors.revocationsNotLoaded, 'store_not_synced', identity);
      }
      if (store.revocations.isRevoked(revocationKey(identity))) {
        trace?.('revocation', false, 'token or subject revoked');
        return refused('revocation', invalidToken(InvalidTokenDescription.revoked), 'revoked', identity);
      }
      trace?.('revocation', true, 'not revoked');
      return { ok: true, identity };
    }
  }
}

const INVALID_CREDENTIALS = 'The request carries credentials in an invalid way';
const ANONYMOUS: Authentication = Object.freeze({ ok: true, identity: undefined });

function refused(stage: 'authenticate' | 'revocation', error: GatewayError, reason: string, identity?: Identity, detail?: string): Authentication {
  return detail === undefined ? { ok: false, stage, error, reason, identity } : { ok: false, stage, error, reason, detail, identity };
}

export function revocationKey(identity: Identity): { issuer: string; jti: string | undefined; subject: string | undefined; iat: number | undefined } {
  return { issuer: identity.issuer.name, jti: identity.jti, subject: identity.subject, iat: identity.iat };
}

function deny(
  stage: Stage,
  error: GatewayError,
  reason: string,
  route?: RouteConfig,
  identity?: Identity,
  path?: string,
): Denied {
  return { allow: false, stage, error, reason, route, identity, path };
}

type LimitOutcome =
  | { readonly denied: false; readonly decision: RateLimitDecision }
  | { readonly denied: true; readonly decision: RateLimitDecision; readonly limit: RateLimitConfig };

/** Consume every limit; the answer carries the tightest decision so the client sees the binding limit. */
async function consumeLimits(
  limits: readonly RateLimitConfig[],
  facts: RequestFacts,
  clientIp: string,
  identity: Identity | undefined,
  deps: PipelineDeps,
): Promise<LimitOutcome> {
  let tightest: RateLimitDecision | undefined;
  for (const limit of limits) {
    const decision = await deps.store.rateLimits.consume(limit.name, limitKey(limit, facts, clientIp, identity));
    if (!decision.allowed) {
      deps.metrics.rateLimited.inc({ limit: limit.name });
      return { denied: true, decision, limit };
    }
    if (!tightest || decision.remaining < tightest.remaining) tightest = decision;
  }
  return { denied: false, decision: tightest as RateLimitDecision };
}

/**
 * The bucket a request counts against. Identity keys come only from the verified identity; a request
 * without one (anonymous on an `auth: optional` route) counts against its client IP instead, so it is
 * still limited.
 */
function limitKey(limit: RateLimitConfig, facts: RequestFacts, clientIp: string, identity: Identity | undefined): string {
  const key = limit.key;
  switch (key.kind) {
    case 'ip':
      return `ip:${clientIp}`;
    case 'header': {
      // A request without the header counts against its client IP, never against one bucket shared by all.
      const value = headerValue(facts.headers[key.name]);
      return value !== undefined ? `h:${value}` : `anon:${clientIp}`;
    }
    case 'subject':
      return identity?.subject !== undefined ? `sub:${identity.issuer.name}:${identity.subject}` : `anon:${clientIp}`;
    case 'client_id':
      return identity?.clientId !== undefined ? `cid:${identity.issuer.name}:${identity.clientId}` : `anon:${clientIp}`;
    case 'claim': {
      const value = identity ? claimAsString(readClaim(identity.claims, key.path)) : undefined;
      return value !== undefined ? `claim:${identity?.issuer.name}:${value}` : `anon:${clientIp}`;
    }
  }
}

function denyLimited(
  decision: RateLimitDecision,
  limit: RateLimitConfig,
  route: RouteConfig,
  identity: Identity | undefined,
  path: string,
): Denied {
  const headers = rateLimitHeaders(decision);
  headers['retry-after'] = String(Math.max(1, Math.ceil(decision.resetMs / 1000)));
  const error = rateLimited(headers);
  return deny('rate_limit', error, `rate_limit_${limit.name}`, route, identity, path);
}

function rateLimitHeaders(decision: RateLimitDecision): OutgoingHttpHeaders {
  return {
    'ratelimit-limit': String(decision.limit),
    'ratelimit-remaining': String(Math.max(0, decision.remaining)),
    'ratelimit-reset': String(Math.max(0, Math.ceil(decision.resetMs / 1000))),
  };
}
