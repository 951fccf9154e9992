import type { OutgoingHttpHeaders } from 'node:http';
import type { GatewayError } from '../../http/responses.js';
import type { ErrorRenderer, ErrorsType } from '../../chain/kinds.js';

/**
 * The refusals of bearer-token routes (RFC 6750 §3): a `WWW-Authenticate: Bearer` challenge that tells the client
 * what to fix, with one of the fixed descriptions and never anything from the token.
 */
const REALM = 'Bearer realm="authgate"';

/** 401 without an error code: the client sent no credentials (RFC 6750 §3.1). */
export const missingToken: GatewayError = {
  status: 401,
  code: 'unauthorized',
  description: 'An access token is required',
  headers: { 'www-authenticate': REALM },
};

export function invalidToken(description: string): GatewayError {
  return {
    status: 401,
    code: 'invalid_token',
    description,
    headers: { 'www-authenticate': `${REALM}, error="invalid_token", error_description="${description}"` },
  };
}

export function invalidRequest(description: string): GatewayError {
  return {
    status: 400,
    code: 'invalid_request',
    description,
    headers: { 'www-authenticate': `${REALM}, error="invalid_request", error_description="${description}"` },
  };
}

export function insufficientScope(requiredScopes: readonly string[] | undefined): GatewayError {
  const description = 'The access token does not grant access to this resource';
  const scope = requiredScopes && requiredScopes.length > 0 ? `, scope="${requiredScopes.join(' ')}"` : '';
  return {
    status: 403,
    code: 'insufficient_scope',
    description,
    headers: { 'www-authenticate': `${REALM}, error="insufficient_scope", error_description="${description}"${scope}` },
  };
}

/** 429 with the RateLimit-* and Retry-After headers of the limit that refused. */
export function rateLimited(headers: OutgoingHttpHeaders): GatewayError {
  return { status: 429, code: 'rate_limited', description: 'Too many requests', headers };
}

export function keysUnavailable(description: string): GatewayError {
  return { status: 503, code: 'service_unavailable', description, headers: { 'retry-after': '5' } };
}

/** The registry's `bearer`: the JSON errors with RFC 6750 challenges, for every route. */
export const bearer: ErrorsType = {
  create() {
    const renderer: ErrorRenderer = {
      noCredentials: () => missingToken,
      invalidRequest,
      invalidCredentials: invalidToken,
      insufficientScope,
      unavailable: keysUnavailable,
      rateLimited,
    };
    return { forRoute: () => renderer };
  },
};
