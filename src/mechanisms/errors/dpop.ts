import type { ErrorRenderer, ErrorsType } from '../../chain/kinds.js';
import { routeDpop, type RouteDpop } from '../../config/dpop.js';
import { DpopProofDescription, type GatewayError } from '../../http/responses.js';
import {
  errorParams,
  INSUFFICIENT_SCOPE_DESCRIPTION,
  insufficientScope,
  invalidRequest,
  invalidToken,
  keysUnavailable,
  missingToken,
  rateLimited,
} from './bearer.js';

/**
 * The refusals of routes that take DPoP-bound tokens (RFC 9449 §7.1). The proof's own failures answer with a DPoP
 * challenge alone; every other refusal carries the Bearer challenge (when a Bearer token can still pass there) and
 * the DPoP one, each with the error, so a client reads its answer under the scheme it used. `algs` names the proof
 * algorithms the route's issuers accept. Built once per route: nothing is formatted per request.
 */
function dpopErrors(route: RouteDpop): ErrorRenderer {
  const dpop = `DPoP algs="${route.algorithms.join(' ')}"`;
  const beside = (bearer: GatewayError, params: string): GatewayError => {
    const challenge = dpop + params;
    const challenges = route.bearer ? [bearer.headers?.['www-authenticate'] as string, challenge] : challenge;
    return { ...bearer, headers: { ...bearer.headers, 'www-authenticate': challenges } };
  };
  const noCredentials = beside(missingToken, '');
  return {
    noCredentials: () => noCredentials,
    invalidRequest: (description) => beside(invalidRequest(description), errorParams('invalid_request', description)),
    invalidCredentials: (description) => beside(invalidToken(description), errorParams('invalid_token', description)),
    insufficientScope: (scopes) => beside(insufficientScope(scopes), errorParams('insufficient_scope', INSUFFICIENT_SCOPE_DESCRIPTION, scopes)),
    invalidProof: (description) => ({
      status: 401,
      code: 'invalid_dpop_proof',
      description,
      headers: { 'www-authenticate': dpop + errorParams('invalid_dpop_proof', description) },
    }),
    useNonce: (nonce) => ({
      status: 401,
      code: 'use_dpop_nonce',
      description: DpopProofDescription.nonce,
      headers: { 'www-authenticate': dpop + errorParams('use_dpop_nonce', DpopProofDescription.nonce), 'dpop-nonce': nonce },
    }),
    unavailable: keysUnavailable,
    rateLimited,
  };
}

/** The registry's `dpop`: renders the refusals of every route that accepts an issuer with `dpop`. */
export const dpop: ErrorsType = {
  create({ config }) {
    if (![...config.issuers.values()].some((issuer) => issuer.dpop !== undefined)) return undefined;
    return {
      forRoute(route) {
        const taken = routeDpop(route, config.issuers);
        return taken === undefined ? undefined : dpopErrors(taken);
      },
    };
  },
};
