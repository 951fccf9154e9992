import type { OutgoingHttpHeaders } from 'node:http';
import { DpopProofDescription, type GatewayError } from '../../http/responses.js';
import type { ErrorRenderer, ErrorsType } from '../../chain/kinds.js';

/**
 * The refusals of bearer-token routes (RFC 6750 §3): a `WWW-Authenticate: Bearer` challenge that tells the client
 * what to fix, with one of the fixed descriptions and never anything from the token.
 */
const REALM = 'Bearer realm="authgate"';

export const INSUFFICIENT_SCOPE_DESCRIPTION = 'The access token does not grant access to this resource';

/** The auth-params of a challenge that names an error (RFC 6750 §3): its code, a fixed description, the scopes. */
export function errorParams(code: string, description: string, scopes?: readonly string[]): string {
  const scope = scopes && scopes.length > 0 ? `, scope="${scopes.join(' ')}"` : '';
  return `, error="${code}", error_description="${description}"${scope}`;
}

/** 401 without an error code: the client sent no credentials (RFC 6750 §3.1). */
export const missingToken: GatewayError = {
  status: 401,
  code: 'unauthorized',
  description: 'An access token is required',
  headers: { 'www-authenticate': REALM },
};

export function invalidToken(description: string): GatewayError {
  return { status: 401, code: 'invalid_token', description, headers: { 'www-authenticate': REALM + errorParams('invalid_token', description) } };
}

export function invalidRequest(description: string): GatewayError {
  return { status: 400, code: 'invalid_request', description, headers: { 'www-authenticate': REALM + errorParams('invalid_request', description) } };
}

export function insufficientScope(requiredScopes: readonly string[] | undefined): GatewayError {
  const description = INSUFFICIENT_SCOPE_DESCRIPTION;
  return {
    status: 403,
    code: 'insufficient_scope',
    description,
    headers: { 'www-authenticate': REALM + errorParams('insufficient_scope', description, requiredScopes) },
  };
}

/** 429 with the RateLimit-* and Retry-After headers of the limit that refused. */
export function rateLimited(headers: OutgoingHttpHeaders): GatewayError {
  return { status: 429, code: 'rate_limited', description: 'Too many requests', headers };
}

export function keysUnavailable(description: string): GatewayError {
  return { status: 503, code: 'service_unavailable', description, headers: { 'retry-after': '5' } };
}

/**
 * The registry's `bearer`: the JSON errors with RFC 6750 challenges, for every route. A route without DPoP issuers
 * never checks a proof; were it asked to, a failed proof is a token it cannot use (`invalid_token`).
 */
export const bearer: ErrorsType = {
  create() {
    const renderer: ErrorRenderer = {
      noCredentials: () => missingToken,
      invalidRequest,
      invalidCredentials: invalidToken,
      invalidProof: invalidToken,
      useNonce: () => invalidToken(DpopProofDescription.nonce),
      insufficientScope,
      unavailable: keysUnavailable,
      rateLimited,
    };
    return { forRoute: () => renderer };
  },
};
