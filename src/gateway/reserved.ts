import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Identity } from '../identity/identity.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { headersForProxyToRemove } from '../mechanisms/finalizers/header-hygiene.js';
import { normalizeTarget } from '../http/target.js';
import type { Store } from '../store/types.js';
import { Errors, InvalidTokenDescription, sendError, type GatewayError } from '../http/responses.js';
import { invalidToken } from '../mechanisms/errors/bearer.js';
import { envoyOriginalTarget, readOriginalRequest, type ProxyFamily } from './forward-auth.js';
import { authenticate, decide, hostAllowed, type Outcome, type RequestFacts } from './pipeline.js';
import type { Runtime } from './runtime.js';

export interface ReservedDeps {
  readonly store: Store;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/**
 * Endpoints under `server.reserved_prefix`: logout (SPEC §8) and forward-auth verify (SPEC §10). Returns
 * undefined when the request is not under the prefix. The prefix is compared on the normalized path (case-folded
 * where routes are), so no spelling (`//_authgate`, `/%5Fauthgate`, `/x/../_authgate`) can slip past it to a route.
 */
export function handleReserved(res: ServerResponse, facts: RequestFacts, runtime: Runtime, deps: ReservedDeps): Promise<Outcome> | undefined {
  const { reservedPrefix, pathCase, forwardAuth } = runtime.config.server;
  const folded = pathCase === 'insensitive';
  if (forwardAuth === 'envoy') {
    const original = envoyOriginalTarget(facts.target, reservedPrefix, folded);
    if (original !== undefined) return verify(res, facts, runtime, deps, 'envoy', original);
  }
  const endpoint = reservedEndpoint(facts.target, reservedPrefix, folded);
  if (endpoint === undefined) return undefined;
  if (endpoint === '/verify' && forwardAuth !== 'off' && forwardAuth !== 'envoy') {
    if (facts.method !== 'GET' && facts.method !== 'POST') return respond(res, facts, Errors.methodNotAllowed, 'method');
    return verify(res, facts, runtime, deps, forwardAuth);
  }
  // A verify check's own Host names the gateway's service; the chain checks the original request's host instead.
  if (!hostAllowed(facts.host, runtime)) return respond(res, facts, Errors.misdirected, 'host_not_allowed');
  if (endpoint !== '/logout') return respond(res, facts, Errors.notFound, 'no_route');
  if (facts.method !== 'POST') return respond(res, facts, Errors.methodNotAllowed, 'method');
  return logout(res, facts, runtime, deps);
}

/** The path below the reserved prefix (`''` for the prefix itself), or undefined when the target is not under it. */
function reservedEndpoint(rawTarget: string, reservedPrefix: string, folded: boolean): string | undefined {
  const target = normalizeTarget(rawTarget);
  if (!target.ok) return undefined; // the main chain answers 400 for it
  const path = folded ? target.path.toLowerCase() : target.path;
  const prefix = folded ? reservedPrefix.toLowerCase() : reservedPrefix;
  if (!path.startsWith(prefix) || (path.length > prefix.length && path.charCodeAt(prefix.length) !== SLASH)) return undefined;
  return path.slice(prefix.length);
}

const SLASH = 0x2f;

async function respond(res: ServerResponse, facts: RequestFacts, error: GatewayError, reason: string): Promise<Outcome> {
  sendError(res, error, facts.requestId);
  return { allow: false, reason, route: undefined, identity: undefined, path: undefined };
}

/**
 * Forward-auth: the proxy in front asks whether the original request may pass. Only a trusted proxy is asked,
 * only the configured family's headers describe the original request, and that request then runs the same chain
 * as a proxied one. Logs and metrics record the original method and path.
 */
async function verify(
  res: ServerResponse,
  facts: RequestFacts,
  runtime: Runtime,
  deps: ReservedDeps,
  family: ProxyFamily,
  envoyTarget?: string,
): Promise<Outcome> {
  if (!facts.trustedPeer) return respond(res, facts, Errors.forwardAuthForbidden, 'untrusted_forward_auth');
  const read = readOriginalRequest(family, facts, envoyTarget);
  if (!read.ok) return respond(res, facts, read.error, read.reason);
  const decision = await decide({ ...facts, ...read.original }, runtime, deps);
  const outcome: Outcome = { ...decision, method: read.original.method };
  if (!decision.allow) {
    sendError(res, decision.error, facts.requestId);
    return outcome;
  }
  const headers: OutgoingHttpHeaders = { ...decision.rateLimitHeaders, 'cache-control': 'no-store', 'x-request-id': facts.requestId };
  if (decision.identity) runtime.identityHeaders.write(decision.identity, headers);
  if (family === 'envoy') {
    const toRemove = headersEnvoyMustRemove(facts, runtime, headers);
    if (toRemove.length > 0) headers['x-envoy-auth-headers-to-remove'] = toRemove.join(',');
  }
  res.writeHead(200, headers);
  res.end();
  return outcome;
}

/**
 * Envoy keeps the data path: it forwards the client's own request with our headers set on it. Whatever the gateway
 * would have stripped must be removed by Envoy instead: every configured identity header this answer does not set
 * (a client's `X-User-Email` must not survive for a token without an email) and the client's spoofed headers.
 */
function headersEnvoyMustRemove(facts: RequestFacts, runtime: Runtime, answer: OutgoingHttpHeaders): string[] {
  const { identity } = runtime.config;
  const names = new Set(headersForProxyToRemove(facts.headers, runtime.headerPolicy, identity.forwardToken));
  for (const header of identity.headers) names.add(header.name.toLowerCase());
  return [...names].filter((name) => answer[name] === undefined);
}

/** Revoke the presented token: by `jti` until it expires, else every token of its subject issued up to its `iat`. */
async function logout(res: ServerResponse, facts: RequestFacts, runtime: Runtime, deps: ReservedDeps): Promise<Outcome> {
  const extracted = runtime.extractToken(facts.headersDistinct, '', false);
  // A browser sends the token cookie with any site's form post: a cookie logout must come from this origin.
  if (extracted.kind === 'token' && extracted.source.kind === 'cookie' && !sameOrigin(facts, runtime)) {
    return respond(res, facts, Errors.crossSiteLogout, 'cross_site_logout');
  }
  const authenticated = await authenticate(extracted, true, undefined, runtime, deps.store);
  if (!authenticated.ok) return respond(res, facts, authenticated.error, authenticated.reason);
  const identity = authenticated.identity as Identity;
  if (identity.jti === undefined && identity.subject === undefined) {
    return respond(res, facts, invalidToken(InvalidTokenDescription.claims), 'logout_unidentifiable');
  }
  try {
    if (identity.jti !== undefined) {
      await deps.store.revocations.revokeJti(identity.jti, identity.exp, identity.issuer.name);
    } else {
      await deps.store.revocations.revokeSubject(identity.subject as string, identity.iat ?? Math.floor(Date.now() / 1000), identity.issuer.name);
    }
  } catch (err) {
    // The store already holds the revocation on this instance and replays it once Redis is back; other
    // replicas do not know yet, so the client is told to retry rather than that it is logged out everywhere.
    deps.logger.warn({ err, requestId: facts.requestId }, 'logout could not reach the shared store');
    return respond(res, facts, Errors.storeUnavailable, 'store_unavailable');
  }
  deps.logger.info({ requestId: facts.requestId, subject: identity.subject, issuer: identity.issuer.name }, 'token revoked by logout');
  res.writeHead(204, { 'cache-control': 'no-store', 'x-request-id': facts.requestId });
  res.end();
  return { allow: true, reason: 'logout', route: undefined, identity, path: facts.target };
}

/** No `Origin` (not a browser), the gateway's own host, or an origin the CORS config allows. */
function sameOrigin(facts: RequestFacts, runtime: Runtime): boolean {
  const origin = facts.headers.origin;
  if (origin === undefined) return true;
  if (hostOfUrl(origin) === facts.host) return true;
  return runtime.config.cors?.origins.includes(origin) ?? false;
}

function hostOfUrl(url: string | undefined): string | undefined {
  return url !== undefined && URL.canParse(url) ? new URL(url).host : undefined;
}
