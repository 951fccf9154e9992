import type { ErrorRenderer, RequestContext, Step } from '../chain/kinds.js';
import { answered, refusal, PASS, type Verdict } from '../chain/verdict.js';
import { Errors, InvalidTokenDescription } from '../http/responses.js';
import { hostOfUrl, originOfUrl } from '../http/url.js';
import type { Identity } from '../identity/identity.js';
import type { Logger } from '../observability/log.js';
import type { RevocationStore } from '../store/types.js';

const CROSS_SITE = refusal('endpoint', Errors.crossSiteLogout, 'cross_site_logout');
const STORE_UNAVAILABLE = refusal('endpoint', Errors.storeUnavailable, 'store_unavailable');
const LOGGED_OUT = answered(204, Object.freeze({ 'cache-control': 'no-store' }));

/**
 * A browser sends the token cookie with any site's form post: a cookie logout must come from this origin, by its
 * `Origin` or, without one, its `Referer` (the gateway's own host, or an origin the CORS config allows). A request
 * with neither is no browser's cross-site post.
 */
export function sameOriginStep(corsOrigins: readonly string[]): Step {
  return {
    stage: 'endpoint',
    run(ctx) {
      if (ctx.credential?.source.kind !== 'cookie') return PASS;
      const from = ctx.headers.origin ?? ctx.headers.referer;
      if (from === undefined || hostOfUrl(from) === ctx.host || corsOrigins.includes(originOfUrl(from))) return PASS;
      return CROSS_SITE;
    },
  };
}

/** Revoke the presented token: by `jti` until it expires, else every token of its subject issued up to its `iat`. */
export function logoutStep(revocations: RevocationStore, errors: ErrorRenderer, logger: Logger): Step {
  const unidentifiable = refusal('endpoint', errors.invalidCredentials(InvalidTokenDescription.claims), 'logout_unidentifiable');
  return {
    stage: 'endpoint',
    async run(ctx: RequestContext): Promise<Verdict> {
      const identity = ctx.identity as Identity;
      if (identity.jti === undefined && identity.subject === undefined) return unidentifiable;
      try {
        if (identity.jti !== undefined) {
          await revocations.revokeJti(identity.jti, identity.exp, identity.issuer.issuer);
        } else {
          await revocations.revokeSubject(identity.subject as string, identity.iat ?? Math.floor(Date.now() / 1000), identity.issuer.issuer);
        }
      } catch (err) {
        // The store already holds the revocation on this instance and replays it once Redis is back; other
        // replicas do not know yet, so the client is told to retry rather than that it is logged out everywhere.
        logger.warn({ err, requestId: ctx.requestId }, 'logout could not reach the shared store');
        return STORE_UNAVAILABLE;
      }
      logger.info({ requestId: ctx.requestId, subject: identity.subject, issuer: identity.issuer.name }, 'token revoked by logout');
      return LOGGED_OUT;
    },
  };
}
