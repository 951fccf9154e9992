import type { MechanismType, SenderConstraint } from '../../chain/kinds.js';
import { refusal } from '../../chain/verdict.js';
import { InvalidTokenDescription } from '../../http/responses.js';
import { isPlainObject } from '../../lib/json.js';

/**
 * The DPoP key a token's `cnf` binds it to (RFC 9449 §6.1): its thumbprint, or undefined for an unbound token. A
 * `cnf` that is not a JSON object (RFC 7800 §3.1 requires one) binds to something that cannot be read: it comes back
 * as it is, so the token counts as bound and no proof's key matches it.
 */
export function boundKey(cnf: unknown): unknown {
  return isPlainObject(cnf) ? cnf.jkt : cnf;
}

/**
 * The registry's `dpop_bearer`: a token bound to a DPoP key is refused when it comes as a Bearer token, on every
 * protected route. Whoever holds such a token without the private key (a stolen token) could otherwise use it by
 * simply not presenting a proof (RFC 9449 §7.2).
 */
export const dpopBoundAsBearer: MechanismType<SenderConstraint> = {
  create() {
    return {
      forRoute(route, errors) {
        if (route.auth === 'none') return undefined;
        const refused = refusal('authenticate', errors.invalidCredentials(InvalidTokenDescription.unbound), 'dpop_bound_token_as_bearer');
        return {
          check(identity, ctx) {
            return ctx.credential?.scheme === 'bearer' && boundKey(identity.claims.cnf) !== undefined ? refused : undefined;
          },
        };
      },
    };
  },
};
