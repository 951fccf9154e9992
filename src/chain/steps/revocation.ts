import { Errors, InvalidTokenDescription } from '../../http/responses.js';
import type { Identity } from '../../identity/identity.js';
import type { RevocationStore, RevocationSubject } from '../../store/types.js';
import type { ErrorRenderer, RequestContext, Step } from '../kinds.js';
import { PASS, refusal, type Trace, type Verdict } from '../verdict.js';

/** The key a revocation is found by: issuer + jti, else issuer + subject + iat. */
export function revocationKey(identity: Identity): RevocationSubject {
  return { issuer: identity.issuer.issuer, jti: identity.jti, subject: identity.subject, iat: identity.iat };
}

/**
 * Refuses a revoked identity. Before the store has loaded the revocations once (started while Redis was down),
 * no identity can be checked, so every one is refused 503 until it has.
 */
export function revocationStep(revocations: RevocationStore, errors: ErrorRenderer): Step {
  const notSynced = refusal('revocation', Errors.revocationsNotLoaded, 'store_not_synced');
  const revoked = refusal('revocation', errors.invalidCredentials(InvalidTokenDescription.revoked), 'revoked');
  return {
    stage: 'revocation',
    run(ctx: RequestContext, trace: Trace | undefined): Verdict {
      const identity = ctx.identity;
      if (identity === undefined) return PASS;
      if (!revocations.synced()) {
        trace?.('revocation', false, 'revocations not loaded yet: the store has been unreachable since start');
        return notSynced;
      }
      if (revocations.isRevoked(revocationKey(identity))) {
        trace?.('revocation', false, 'token or subject revoked');
        return revoked;
      }
      trace?.('revocation', true, 'not revoked');
      return PASS;
    },
  };
}
