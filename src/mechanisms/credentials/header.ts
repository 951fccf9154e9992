import type { Found, FinderType } from '../../chain/kinds.js';
import { bearerToken, hasBearerScheme, isB64token } from '../../http/bearer.js';
import { fromDpopAuthorization, hasDpopScheme } from '../dpop/credential.js';
import { holding, invalid, NONE } from './found.js';

/**
 * RFC 6750 §2.1 Bearer credentials, or RFC 9449 §7.1 DPoP ones with their proof. Any other scheme means "no token
 * here".
 */
function fromAuthorization(value: string, proofs: string[] | undefined): Found {
  if (hasDpopScheme(value)) return fromDpopAuthorization(value, proofs);
  if (!hasBearerScheme(value)) return NONE;
  const token = bearerToken(value);
  if (token === undefined) return invalid('malformed_bearer');
  return holding(token);
}

/** A custom header carries the token itself, without a scheme (Envoy `from_headers` without a prefix). */
function fromBareHeader(value: string): Found {
  if (value === '') return NONE;
  if (!isB64token(value)) return invalid('malformed_token_header');
  return holding(value);
}

function fromHeader(headersDistinct: NodeJS.Dict<string[]>, key: string, isAuthorization: boolean): Found {
  const lines = headersDistinct[key];
  if (lines === undefined || lines.length === 0) return NONE;
  if (lines.length > 1) return invalid(isAuthorization ? 'multiple_authorization_headers' : 'multiple_token_headers');
  const value = lines[0] as string;
  return isAuthorization ? fromAuthorization(value, headersDistinct.dpop) : fromBareHeader(value);
}

/** The registry's `header`: `Authorization: Bearer …` or `DPoP …`, or a custom header that carries the bare token. */
export const header: FinderType = {
  compile(source) {
    const key = source.name.toLowerCase();
    const isAuthorization = key === 'authorization';
    return { source, find: (headersDistinct) => fromHeader(headersDistinct, key, isAuthorization) };
  },
};
