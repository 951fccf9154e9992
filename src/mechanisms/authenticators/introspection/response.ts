import { buildIdentity } from '../jwt/claims.js';
import type { Identity } from '../../../identity/identity.js';
import type { IssuerConfig } from '../../../config/types.js';
import { claimAsList, readClaim } from '../../../identity/claim-path.js';
import { isPlainObject } from '../../../lib/json.js';

/**
 * What an introspection response (RFC 7662 §2.2) says about a token, checked against the issuer's configuration.
 * Pure: the response and the clock in, a result out. `unavailable`: the answer is not an introspection response
 * at all, a fault of the endpoint rather than of the token, so it is neither cached nor blamed on the client.
 */
export type IntrospectionFailure = 'inactive' | 'expired' | 'issuer' | 'audience' | 'type' | 'claims' | 'unavailable';

export type ResponseCheck =
  | { readonly ok: true; readonly identity: Identity; readonly validUntilMs: number }
  | { readonly ok: false; readonly reason: IntrospectionFailure };

export type ResponseChecker = (body: unknown, nowMs: number) => ResponseCheck;

/**
 * RFC 7662 leaves `token_type` free-form; identity providers mark refresh tokens as `refresh_token`, `refresh`,
 * the RFC 8693 URN, or (Ory Hydra) with `token_use`.
 */
const REFRESH_TOKEN_TYPES: ReadonlySet<string> = new Set(['refresh_token', 'refresh', 'urn:ietf:params:oauth:token-type:refresh_token']);

const failed = (reason: IntrospectionFailure): ResponseCheck => ({ ok: false, reason });

function namesRefreshToken(value: unknown): boolean {
  return typeof value === 'string' && REFRESH_TOKEN_TYPES.has(value.toLowerCase());
}

function isAbsentOr(value: unknown, type: 'string' | 'number'): boolean {
  return value === undefined || (typeof value === type && (type === 'string' || Number.isFinite(value)));
}

/** `maxTtlMs`: how long an active result without `exp` counts, and the `exp` its identity is given. */
export function compileResponseChecker(issuer: IssuerConfig, maxTtlMs: number): ResponseChecker {
  const audiences: ReadonlySet<string> = new Set(issuer.audiences);
  const requiredClaims = issuer.requireClaims ? Object.entries(issuer.requireClaims) : [];
  const skew = issuer.clockSkewMs;

  return (body, nowMs) => {
    if (!isPlainObject(body) || typeof body.active !== 'boolean') return failed('unavailable');
    if (!body.active) return failed('inactive');
    const { exp, iat, nbf, iss, aud, sub, jti } = body;
    if (!isAbsentOr(exp, 'number') || !isAbsentOr(iat, 'number') || !isAbsentOr(nbf, 'number') || !isAbsentOr(sub, 'string') || !isAbsentOr(jti, 'string')) {
      return failed('claims');
    }
    if (exp !== undefined && (exp as number) * 1000 + skew <= nowMs) return failed('expired');
    // RFC 7662 §2.2: not to be used before nbf.
    if (nbf !== undefined && (nbf as number) * 1000 - skew > nowMs) return failed('claims');
    if (iss !== undefined && iss !== issuer.issuer) return failed('issuer');
    if (aud !== undefined && !claimAsList(aud).some((member) => audiences.has(member))) return failed('audience');
    if (namesRefreshToken(body.token_type) || namesRefreshToken(body.token_use)) return failed('type');
    for (const [path, value] of requiredClaims) if (readClaim(body, path) !== value) return failed('claims');
    const validUntilMs = Math.min(exp === undefined ? Infinity : (exp as number) * 1000 + skew, nowMs + maxTtlMs);
    const identity = buildIdentity(issuer, { ...body, exp: exp ?? Math.floor(validUntilMs / 1000) });
    return { ok: true, identity, validUntilMs };
  };
}
