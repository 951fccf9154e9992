/** JWS algorithms (RFC 7518 §3, RFC 8037) by what kind of key checks them. */

/** RFC 7518 §3.2: an HMAC key at least as long as the hash output. */
export const HMAC_MIN_BYTES: Readonly<Record<string, number>> = { HS256: 32, HS384: 48, HS512: 64 };
export const HMAC_ALGORITHMS: readonly string[] = Object.keys(HMAC_MIN_BYTES);
/** Checked with a public key: the only ones a key a client holds (a DPoP proof key) may use. */
export const ASYMMETRIC_ALGORITHMS: readonly string[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
