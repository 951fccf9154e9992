import type { IssuerConfig } from '../../../config/types.js';
import { claimAsList, readClaim, scopeList } from '../../../identity/claim-path.js';
import { deepFreeze } from '../../../lib/json.js';
import type { Identity } from '../../../identity/identity.js';

/**
 * Claim validation after the signature holds (SPEC §4, RFC 9068 §4, RFC 8725 §3.11), and the Identity built from
 * the verified payload. Compiled once per issuer config; pure given the clock value.
 */
export type ClaimsFailure = 'expired' | 'not_yet_valid' | 'audience' | 'type' | 'claims' | 'too_old';

export type ClaimsCheck =
  | {
      readonly ok: true;
      /** Epoch ms after which the token stops being acceptable (exp, or max_token_age), skew included. */
      readonly validUntilMs: number;
    }
  | { readonly ok: false; readonly reason: ClaimsFailure };

export type ClaimsValidator = (payload: Readonly<Record<string, unknown>>, typ: string | undefined, nowMs: number) => ClaimsCheck;

/** RFC 8725 §3.11: `at+jwt` and `application/at+jwt` are the same type, compared case-insensitively. */
export function normalizeTokenType(typ: string): string {
  const lower = typ.toLowerCase();
  return lower.startsWith('application/') ? lower.slice('application/'.length) : lower;
}

/** A NumericDate: a finite JSON number (1e400 parses to Infinity). */
function numericDate(value: unknown): number | undefined | 'invalid' {
  if (value === undefined) return undefined;
  return typeof value === 'number' && Number.isFinite(value) ? value : 'invalid';
}

function audienceMatches(aud: unknown, accepted: ReadonlySet<string>): boolean {
  if (typeof aud === 'string') return accepted.has(aud);
  if (!Array.isArray(aud)) return false;
  for (const member of aud) if (typeof member === 'string' && accepted.has(member)) return true;
  return false;
}

const failed = (reason: ClaimsFailure): ClaimsCheck => ({ ok: false, reason });

export function compileClaimsValidator(issuer: IssuerConfig): ClaimsValidator {
  const audiences: ReadonlySet<string> = new Set(issuer.audiences);
  const tokenTypes = issuer.tokenTypes && new Set(issuer.tokenTypes.map(normalizeTokenType));
  const requiredClaims = issuer.requireClaims ? Object.entries(issuer.requireClaims) : [];
  const skew = issuer.clockSkewMs;
  const maxAge = issuer.maxTokenAgeMs;
  const subjectPath = issuer.claims.subject;

  return (payload, typ, nowMs) => {
    const exp = numericDate(payload.exp);
    if (exp === undefined || exp === 'invalid') return failed('expired');
    const expMs = exp * 1000;
    if (expMs + skew <= nowMs) return failed('expired');
    const nbf = numericDate(payload.nbf);
    const iat = numericDate(payload.iat);
    if (nbf === 'invalid' || iat === 'invalid') return failed('claims');
    if (nbf !== undefined && nbf * 1000 > nowMs + skew) return failed('not_yet_valid');
    if (iat !== undefined && iat * 1000 > nowMs + skew) return failed('not_yet_valid');

    if (!audienceMatches(payload.aud, audiences)) return failed('audience');
    if (tokenTypes !== undefined && (typ === undefined || !tokenTypes.has(normalizeTokenType(typ)))) {
      return failed('type');
    }
    for (const [path, value] of requiredClaims) if (readClaim(payload, path) !== value) return failed('claims');
    if (payload.sub !== undefined && typeof payload.sub !== 'string') return failed('claims');
    // So must the claim the issuer maps the subject to, or the identity would silently have none.
    if (subjectPath !== 'sub' && !isAbsentOrString(readClaim(payload, subjectPath))) return failed('claims');
    // Revocation is keyed by jti; a non-string jti could never be revoked by the admin API.
    if (payload.jti !== undefined && typeof payload.jti !== 'string') return failed('claims');

    let validUntilMs = expMs + skew;
    if (maxAge !== undefined) {
      // Without iat, the token is taken as issued `max_token_age` before it expires (the oldest it could be).
      const issuedMs = iat === undefined ? expMs - maxAge : iat * 1000;
      if (expMs - issuedMs > maxAge) return failed('too_old');
      const tooOldAfterMs = issuedMs + maxAge + skew;
      if (nowMs >= tooOldAfterMs) return failed('too_old');
      validUntilMs = Math.min(validUntilMs, tooOldAfterMs);
    }
    return { ok: true, validUntilMs };
  };
}

function isAbsentOrString(value: unknown): boolean {
  return value === undefined || typeof value === 'string';
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/**
 * The Identity of a verified payload, read through the issuer's claim paths (SPEC §5). Frozen: cached identities
 * are shared by every request that presents the same token.
 */
export function buildIdentity(issuer: IssuerConfig, payload: Record<string, unknown>): Identity {
  const paths = issuer.claims;
  const claims = deepFreeze(payload);
  const iat = payload.iat;
  return Object.freeze({
    issuer,
    subject: optionalString(readClaim(claims, paths.subject)),
    email: optionalString(readClaim(claims, paths.email)),
    roles: claimAsList(readClaim(claims, paths.roles)),
    permissions: claimAsList(readClaim(claims, paths.permissions)),
    scopes: scopeList(readClaim(claims, paths.scopes)),
    clientId: optionalString(readClaim(claims, paths.clientId)) ?? optionalString(claims.azp),
    jti: optionalString(claims.jti),
    iat: typeof iat === 'number' ? iat : undefined,
    exp: payload.exp as number,
    claims,
  });
}
