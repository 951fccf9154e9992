import type { OutgoingHttpHeaders } from 'node:http';
import { Context } from '../chain/context.js';
import type { RequestContext, Step } from '../chain/kinds.js';
import { answered, isThenable, refusal, type Verdict } from '../chain/verdict.js';
import type { IdentityConfig } from '../config/types.js';
import { Errors } from '../http/responses.js';
import { headersForProxyToRemove, upstreamCookie, type HeaderPolicy } from '../mechanisms/finalizers/header-hygiene.js';
import type { IdentityHeaderWriter } from '../mechanisms/finalizers/identity-headers.js';
import { rateLimitHeaders } from '../mechanisms/limiters/rate-limit.js';
import { envoyOriginalTarget, readOriginalRequest, type ProxyFamily } from './forward-auth-families.js';

export interface VerifyDeps {
  readonly family: ProxyFamily;
  readonly reservedPrefix: string;
  readonly folded: boolean;
  /** The whole chain, for the original request. */
  readonly decide: (original: RequestContext) => Verdict | Promise<Verdict>;
  readonly identityHeaders: IdentityHeaderWriter;
  readonly headerPolicy: HeaderPolicy;
  readonly identity: IdentityConfig;
  /** Lower-case; the original's chain signed it like a proxied request's. */
  readonly assertionHeader: string | undefined;
}

const UNTRUSTED = refusal('endpoint', Errors.forwardAuthForbidden, 'untrusted_forward_auth');
/**
 * nginx and Traefik take any 2xx as a pass and forward the request: a preflight answered 204 would reach the app
 * unauthenticated, and its CORS headers would not reach the browser. Only Envoy relays the check's own answer.
 */
const PREFLIGHT_AT_PROXY = refusal('endpoint', { status: 403, code: 'forbidden', description: 'CORS preflights are answered by the proxy in front' }, 'preflight_at_proxy');

/**
 * Forward-auth: the proxy in front asks whether the original request may pass. Only a trusted proxy is asked,
 * only the configured family's headers describe the original request, and that request then runs the same chain
 * as a proxied one. Logs and metrics report the original (`reportAs`): its method, route and path.
 */
export function verifyStep(deps: VerifyDeps): Step {
  return {
    stage: 'endpoint',
    run(ctx, trace) {
      if (!ctx.trustedPeer) return UNTRUSTED;
      const envoyTarget = deps.family === 'envoy' ? envoyOriginalTarget(ctx.target, deps.reservedPrefix, deps.folded) : undefined;
      const read = readOriginalRequest(deps.family, ctx, envoyTarget);
      if (!read.ok) return refusal('endpoint', read.error, read.reason);
      // The check's TLS peer is the proxy, not the original client: the original has no certificate to offer.
      const original = new Context({ ...ctx, ...read.original, transport: 'forward_auth', tls: undefined, body: undefined });
      ctx.reportAs = original;
      const verdict = deps.decide(original);
      trace?.('endpoint', true, `forward-auth check of ${read.original.method} ${read.original.target}`);
      return isThenable(verdict) ? verdict.then((settled) => answer(settled, original, deps)) : answer(verdict, original, deps);
    },
  };
}

/**
 * A refusal goes back as its JSON error (the proxy relays it), never a page meant for a browser; a pass is 200 with
 * the identity headers to set, and the client's Cookie header as the upstream may see it (without the session,
 * sign-in and token cookies): the proxy forwards the original request, so it must replace the Cookie header with it.
 */
function answer(verdict: Verdict, original: RequestContext, deps: VerifyDeps): Verdict {
  if (!verdict.ok) return verdict.page === undefined ? verdict : { ...verdict, page: undefined };
  // The chain answered the original itself (a CORS preflight): Envoy relays that answer to the browser.
  if (verdict.answer !== undefined) return deps.family === 'envoy' ? verdict : PREFLIGHT_AT_PROXY;
  const headers: OutgoingHttpHeaders = { ...(original.limit ? rateLimitHeaders(original.limit) : undefined), 'cache-control': 'no-store' };
  // The original's chain has refused already an identity that these headers cannot carry.
  if (original.identity) deps.identityHeaders.write(original.identity, headers, original);
  const assertion = deps.assertionHeader && original.upstreamHeaders?.[deps.assertionHeader];
  if (assertion) headers[deps.assertionHeader as string] = assertion;
  // With `identity.forward_token` the upstream gets a token: the client's own, or a browser session's access token,
  // which the request the proxy forwards does not carry. Always set, since a proxy that copies the header from
  // this answer removes it when the answer lacks it.
  const authorization = deps.identity.forwardToken ? original.upstreamHeaders?.authorization : undefined;
  if (authorization !== undefined) headers.authorization = authorization;
  const cookie = original.headers.cookie;
  if (cookie !== undefined) headers.cookie = upstreamCookie(cookie, deps.headerPolicy, deps.identity.forwardToken);
  if (deps.family === 'envoy') {
    // Envoy may set a header before it removes those listed: an empty Cookie is removed instead.
    if (headers.cookie === '') delete headers.cookie;
    const toRemove = headersEnvoyMustRemove(original, deps, headers);
    if (toRemove.length > 0) headers['x-envoy-auth-headers-to-remove'] = toRemove.join(',');
  }
  return answered(200, headers);
}

/**
 * Envoy keeps the data path: it forwards the client's own request with our headers set on it. Whatever the gateway
 * would have stripped must be removed by Envoy instead: every configured identity header this answer does not set
 * (a client's `X-User-Email` must not survive for a token without an email) and the client's spoofed headers.
 */
function headersEnvoyMustRemove(original: RequestContext, deps: VerifyDeps, answer: OutgoingHttpHeaders): string[] {
  const names = new Set(headersForProxyToRemove(original.headers, deps.headerPolicy, deps.identity.forwardToken));
  for (const header of deps.identity.headers) names.add(header.name.toLowerCase());
  if (original.headers.cookie !== undefined) names.add('cookie');
  return [...names].filter((name) => answer[name] === undefined);
}
