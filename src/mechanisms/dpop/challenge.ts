/** What a DPoP refusal tells the client (RFC 9449 §7.1, §8); `unavailable` is answered 503 with no challenge error. */
export type DpopError = 'invalid_dpop_proof' | 'use_dpop_nonce' | 'invalid_token';

export type DpopChallenges = Readonly<Record<DpopError | 'none', string>>;

/**
 * The `WWW-Authenticate` values for one set of accepted algorithms, built once per config: a refusal picks one,
 * nothing is formatted per request. `none`: the challenge of a request that brought no credentials.
 */
export function compileDpopChallenges(algorithms: readonly string[]): DpopChallenges {
  const base = `DPoP algs="${algorithms.join(' ')}"`;
  return Object.freeze({
    none: base,
    invalid_dpop_proof: `${base}, error="invalid_dpop_proof"`,
    use_dpop_nonce: `${base}, error="use_dpop_nonce"`,
    invalid_token: `${base}, error="invalid_token"`,
  });
}
