import { MAX_TOKEN_LENGTH } from '../../http/bearer.js';

/**
 * `Authorization: DPoP <token>` with exactly one `DPoP` header (RFC 9449 §7.1, credentials in RFC 6750 §2.1
 * syntax). Pure: headers in, a decision out. `credential` undefined: the request does not use the DPoP scheme
 * (another mechanism's, or none). A refusal says how to answer: `invalid_request` 400, else 401.
 */
export interface DpopCredential {
  readonly token: string;
  readonly proof: string;
}

export type DpopCredentialSearch =
  | { readonly ok: true; readonly credential: DpopCredential | undefined }
  | { readonly ok: false; readonly error: 'invalid_request' | 'invalid_token' | 'invalid_dpop_proof'; readonly reason: string };

/** The scheme is `DPoP` when the next character cannot continue an RFC 9110 token (so `DPoPx` is another scheme). */
const DPOP_SCHEME = /^dpop(?![!#$%&'*+\-.^_`|~0-9a-z])/i;
const DPOP_CREDENTIALS = /^DPoP +([A-Za-z0-9\-._~+/]+=*)$/i;
/** A compact JWS: three base64url segments (the proof's own checks come later). */
const PROOF_SYNTAX = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const NOT_DPOP: DpopCredentialSearch = Object.freeze({ ok: true, credential: undefined });

function refuse(error: 'invalid_request' | 'invalid_token' | 'invalid_dpop_proof', reason: string): DpopCredentialSearch {
  return { ok: false, error, reason };
}

export function findDpopCredential(headersDistinct: NodeJS.Dict<string[]>): DpopCredentialSearch {
  const authorization = headersDistinct.authorization;
  if (authorization === undefined) return NOT_DPOP;
  // Two Authorization headers: the gateway and the upstream could each read another one.
  if (authorization.length !== 1) return refuse('invalid_request', 'more than one Authorization header');
  const value = authorization[0]!;
  if (!DPOP_SCHEME.test(value)) return NOT_DPOP;
  const token = DPOP_CREDENTIALS.exec(value)?.[1];
  if (token === undefined) return refuse('invalid_request', 'malformed DPoP credentials');
  if (token.length > MAX_TOKEN_LENGTH) return refuse('invalid_token', 'token_too_long');
  const proofs = headersDistinct.dpop;
  if (proofs === undefined) return refuse('invalid_dpop_proof', 'no DPoP header');
  if (proofs.length !== 1) return refuse('invalid_request', 'more than one DPoP header');
  const proof = proofs[0]!;
  if (proof.length > MAX_TOKEN_LENGTH || !PROOF_SYNTAX.test(proof)) return refuse('invalid_dpop_proof', 'the DPoP header is not a compact JWS');
  return { ok: true, credential: { token, proof } };
}
