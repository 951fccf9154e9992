import { normalizeTokenType } from '../mechanisms/authenticators/jwt/claims.js';
import type { SignatureVerifier } from './signatures.js';

/**
 * OpenID Connect Back-Channel Logout 1.0 §2.6: what makes a `logout_token` the provider's word that a session
 * ended. Anything else is a 400 and ends nothing.
 */
export interface LogoutTokenExpectations {
  /** The exact `iss`. */
  readonly issuer: string;
  readonly clientId: string;
  readonly signatures: SignatureVerifier;
  readonly clockSkewMs: number;
  /** Oldest `iat` accepted; jtis are remembered this long, so a replay is always caught. */
  readonly maxAgeMs: number;
  readonly now: () => number;
  /** True the first time this jti is presented (store-wide, across instances). */
  readonly firstUse: (jti: string, rememberMs: number) => Promise<boolean>;
}

export type LogoutTokenCheck =
  | { readonly ok: true; readonly subject: string | undefined; readonly idpSid: string | undefined }
  | { readonly ok: false; readonly reason: string };

export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

export async function verifyLogoutToken(token: string, expect: LogoutTokenExpectations): Promise<LogoutTokenCheck> {
  const checked = await expect.signatures.verify(token);
  if (!checked.ok) return refused(`signature: ${checked.reason}`);
  if (checked.header.typ === undefined || normalizeTokenType(checked.header.typ) !== 'logout+jwt') return refused('typ is not logout+jwt');
  const claims = checkClaims(checked.payload, expect);
  if (!claims.ok) return claims;
  const jti = checked.payload.jti as string;
  if (!(await expect.firstUse(jti, expect.maxAgeMs + expect.clockSkewMs))) return refused('jti replayed');
  return claims;
}

function checkClaims(payload: Readonly<Record<string, unknown>>, expect: LogoutTokenExpectations): LogoutTokenCheck {
  const now = expect.now();
  if (payload.iss !== expect.issuer) return refused('iss');
  if (!names(payload.aud, expect.clientId)) return refused('aud');
  if (typeof payload.iat !== 'number') return refused('no iat');
  if (payload.iat * 1000 > now + expect.clockSkewMs || payload.iat * 1000 < now - expect.maxAgeMs) return refused('iat out of range');
  if (payload.exp !== undefined && (typeof payload.exp !== 'number' || payload.exp * 1000 <= now - expect.clockSkewMs)) return refused('expired');
  if (typeof payload.jti !== 'string' || payload.jti === '') return refused('no jti');
  if (!hasLogoutEvent(payload.events)) return refused('events lacks the back-channel logout member');
  // A nonce would make it look like an ID token: the spec forbids it, so it can never be replayed as one.
  if (payload.nonce !== undefined) return refused('nonce present');
  const subject = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : undefined;
  const idpSid = typeof payload.sid === 'string' && payload.sid !== '' ? payload.sid : undefined;
  if (subject === undefined && idpSid === undefined) return refused('neither sub nor sid');
  return { ok: true, subject, idpSid };
}

function names(aud: unknown, clientId: string): boolean {
  return aud === clientId || (Array.isArray(aud) && aud.includes(clientId));
}

function hasLogoutEvent(events: unknown): boolean {
  if (typeof events !== 'object' || events === null || Array.isArray(events)) return false;
  const member = (events as Record<string, unknown>)[BACKCHANNEL_LOGOUT_EVENT];
  return typeof member === 'object' && member !== null && !Array.isArray(member);
}

function refused(reason: string): LogoutTokenCheck {
  return { ok: false, reason };
}
