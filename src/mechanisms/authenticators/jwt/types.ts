import type { Identity } from '../../../identity/identity.js';

/**
 * Fixed list of client-facing descriptions (SPEC §7). The detailed reason goes to the log only,
 * so nothing from the token is ever echoed to a client.
 */
export const InvalidTokenDescription = {
  malformed: 'The access token is malformed',
  tooLong: 'The access token is too long',
  expired: 'The access token expired',
  notYetValid: 'The access token is not yet valid',
  signature: 'The access token signature is invalid',
  issuer: 'The access token issuer is not accepted',
  audience: 'The access token audience is not accepted',
  type: 'The access token type is not accepted',
  algorithm: 'The access token algorithm is not accepted',
  claims: 'The access token claims are not accepted',
  revoked: 'The access token has been revoked',
  tooOld: 'The access token is too old',
} as const;
export type InvalidTokenDescription = (typeof InvalidTokenDescription)[keyof typeof InvalidTokenDescription];

export type VerifyResult =
  | { readonly ok: true; readonly identity: Identity }
  | {
      readonly ok: false;
      /** 401 invalid_token, or 503 when the issuer has no usable keys. */
      readonly status: 401 | 503;
      readonly description: InvalidTokenDescription | 'The token issuer keys are unavailable';
      /** Short machine reason for logs and `authgate_auth_denied_total{reason}`, e.g. `expired`, `bad_signature`. */
      readonly reason: string;
      /** For the operator (access log, `authgate explain`), never the client: the values that were compared. */
      readonly detail?: string;
    };

export type IssuerKeyState = 'ok' | 'stale' | 'unavailable' | 'loading';

export interface IssuerStatus {
  readonly state: IssuerKeyState;
  /** Epoch ms of the last successful key load, if any. */
  readonly lastRefresh: number | undefined;
  readonly error: string | undefined;
}
