import type { InvalidTokenDescription } from '../../../http/responses.js';
import type { Identity } from '../../../identity/identity.js';

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
