import type { Found } from '../../chain/kinds.js';
import { invalid } from '../credentials/found.js';

/** The scheme is `DPoP` when the next character cannot continue an RFC 9110 token (so `DPoPx` is another scheme). */
const DPOP_SCHEME = /^dpop(?![!#$%&'*+\-.^_`|~0-9a-z])/i;
/** RFC 9449 §7.1: `DPoP` 1*SP token68, nothing after (the syntax of RFC 6750 §2.1 credentials). */
const DPOP_CREDENTIALS = /^DPoP +([A-Za-z0-9\-._~+/]+=*)$/i;

/** The Authorization value names the DPoP scheme (whatever follows it). */
export function hasDpopScheme(authorization: string): boolean {
  return DPOP_SCHEME.test(authorization);
}

/**
 * `Authorization: DPoP <token>` with its `DPoP` header lines (RFC 9449 §7.1). Pure: the values in, a decision out.
 * Two proofs are refused like two tokens: the gateway and the upstream could each read another one. No proof at
 * all is the proof check's to refuse (proof `''`), once the token is known to be one that takes DPoP.
 */
export function fromDpopAuthorization(authorization: string, proofs: readonly string[] | undefined): Found {
  const token = DPOP_CREDENTIALS.exec(authorization)?.[1];
  if (token === undefined) return invalid('malformed_dpop');
  if (proofs !== undefined && proofs.length > 1) return invalid('multiple_dpop_proofs');
  return { ok: true, value: token, proof: proofs?.[0] ?? '' };
}
