import { InvalidTokenDescription } from '../../http/responses.js';
import type { CredentialFinder, ErrorRenderer, RequestContext, Step } from '../kinds.js';
import { PASS, refusal, type Refusal, type Trace, type Verdict } from '../verdict.js';

export interface CredentialOptions {
  /** No credential is a 401 (`auth: required`, logout); otherwise the request goes on anonymous. */
  readonly required: boolean;
  /** Look in the query string too (never for logout, whose query is not a place for tokens). */
  readonly query: boolean;
}

const INVALID_CREDENTIALS = 'The request carries credentials in an invalid way';

/** Finds the request's one credential (SPEC §4) and puts it on `ctx.credential` for the authenticators. */
export function credentialStep(find: CredentialFinder, errors: ErrorRenderer, options: CredentialOptions): Step {
  const missing = refusal('authenticate', errors.noCredentials(), 'no_token');
  const tooLong = refusal('authenticate', errors.invalidCredentials(InvalidTokenDescription.tooLong), 'token_too_long');
  const invalid = new Map<string, Refusal>();
  const invalidRequest = errors.invalidRequest(INVALID_CREDENTIALS);
  const refused = (reason: string): Refusal => {
    let known = invalid.get(reason);
    if (known === undefined) invalid.set(reason, (known = refusal('authenticate', invalidRequest, reason)));
    return known;
  };
  return {
    stage: 'authenticate',
    run(ctx: RequestContext, trace: Trace | undefined): Verdict {
      const found = find(ctx.headersDistinct, options.query ? ctx.query : '', ctx.upgrade);
      if (!found.ok) {
        if (found.reason === 'token_too_long') {
          trace?.('authenticate', false, 'token longer than 8 KiB');
          return tooLong;
        }
        trace?.('authenticate', false, `invalid request: ${found.reason}`);
        return refused(found.reason);
      }
      const credential = found.credential;
      if (credential === undefined) {
        trace?.('authenticate', !options.required, 'no token presented');
        return options.required ? missing : PASS;
      }
      ctx.credential = credential;
      return PASS;
    },
  };
}
