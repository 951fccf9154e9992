import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { InvalidTokenDescription, type Identity } from '../auth/types.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { headerValue } from '../routing/headers.js';
import { normalizeTarget } from '../routing/normalize.js';
import type { Store } from '../store/types.js';
import { Errors, invalidRequest, invalidToken, sendError, type GatewayError } from './errors.js';
import { authenticate, decide, type Outcome, type RequestFacts } from './pipeline.js';
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
  const target = normalizeTarget(facts.target);
  if (!target.ok) return undefined; // the main chain answers 400 for it
  const { reservedPrefix, pathCase } = runtime.config.server;
  const folded = pathCase === 'insensitive';
  const path = folded ? target.path.toLowerCase() : target.path;
  const prefix = folded ? reservedPrefix.toLowerCase() : reservedPrefix;
  if (!path.startsWith(prefix) || (path.length > prefix.length && path.charCodeAt(prefix.length) !== SLASH)) return undefined;
  switch (path.slice(prefix.length)) {
    case '/verify':
      if (facts.method !== 'GET' && facts.method !== 'POST') return respond(res, facts, Errors.methodNotAllowed, 'method');
      return verify(res, facts, runtime, deps);
    case '/logout':
      if (facts.method !== 'POST') return respond(res, facts, Errors.methodNotAllowed, 'method');
      return logout(res, facts, runtime, deps);
    default:
      return respond(res, facts, Errors.notFound, 'no_route');
  }
}

const SLASH = 0x2f;

async function respond(res: ServerResponse, facts: RequestFacts, error: GatewayError, reason: string): Promise<Outcome> {
  sendError(res, error, facts.requestId);
  return { allow: false, reason, route: undefined, identity: undefined, path: undefined };
}

/**
 * Forward-auth: the ingress asks whether the original request may pass. The original method, URI and host are
 * believed only from a trusted proxy; the original request then runs the same chain as a proxied one.
 */
async function verify(res: ServerResponse, facts: RequestFacts, runtime: Runtime, deps: ReservedDeps): Promise<Outcome> {
  if (!facts.trustedPeer) return respond(res, facts, Errors.forwardAuthForbidden, 'untrusted_forward_auth');
  const h = facts.headers;
  const originalUrl = headerValue(h['x-original-url']);
  const uri = headerValue(h['x-forwarded-uri']) ?? headerValue(h['x-original-uri']) ?? pathOfUrl(originalUrl);
  if (uri === undefined) return respond(res, facts, invalidRequest('The original request URI is missing'), 'no_original_uri');
  const original: RequestFacts = {
    ...facts,
    method: (headerValue(h['x-forwarded-method']) ?? headerValue(h['x-original-method']) ?? 'GET').toUpperCase(),
    target: uri,
    host: headerValue(h['x-forwarded-host']) ?? hostOfUrl(originalUrl) ?? facts.host,
    proto: headerValue(h['x-forwarded-proto']) === 'https' ? 'https' : facts.proto,
  };
  const decision = await decide(original, runtime, deps);
  if (!decision.allow) {
    sendError(res, decision.error, facts.requestId);
    return decision;
  }
  const headers: OutgoingHttpHeaders = { ...decision.rateLimitHeaders, 'cache-control': 'no-store', 'x-request-id': facts.requestId };
  if (decision.identity) runtime.identityHeaders.write(decision.identity, headers);
  res.writeHead(200, headers);
  res.end();
  return decision;
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


const ABSOLUTE_URL_PREFIX = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * The request target of an absolute URL, taken verbatim: WHATWG URL parsing would resolve dot segments and
 * encoded dots before our normalizer could refuse them.
 */
function pathOfUrl(url: string | undefined): string | undefined {
  const prefix = url === undefined ? null : ABSOLUTE_URL_PREFIX.exec(url);
  if (!url || !prefix) return undefined;
  return url.slice(prefix[0].length) || '/';
}

function hostOfUrl(url: string | undefined): string | undefined {
  return url !== undefined && URL.canParse(url) ? new URL(url).host : undefined;
}
