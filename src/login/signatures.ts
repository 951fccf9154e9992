import { parseCompactJws, type JoseHeader } from '../mechanisms/authenticators/jwt/jws.js';
import type { IssuerKeySet } from '../mechanisms/authenticators/jwt/key-set.js';

/**
 * Checks a JWS an OpenID provider issued (ID token, JWT access token, logout token) against that issuer's keys as
 * the gateway already holds them: the same key set, refresh schedule, stale-if-error and algorithm allowlist the
 * bearer-token path uses. openid-client fetches no JWKS of its own (it would be a second cache per issuer, with
 * other rules); it checks the claims, this checks the signature.
 */
export type SignatureCheck =
  | { readonly ok: true; readonly header: JoseHeader; readonly payload: Readonly<Record<string, unknown>> }
  | { readonly ok: false; readonly reason: string };

export interface SignatureVerifier {
  verify(jws: string): Promise<SignatureCheck>;
}

export class IssuerSignatures implements SignatureVerifier {
  private readonly algorithms: ReadonlySet<string>;

  constructor(
    private readonly keys: IssuerKeySet,
    algorithms: readonly string[],
    private readonly now: () => number = Date.now,
  ) {
    this.algorithms = new Set(algorithms);
  }

  async verify(jws: string): Promise<SignatureCheck> {
    const parsed = parseCompactJws(jws);
    if (!parsed.ok) return { ok: false, reason: parsed.reason };
    const { header } = parsed;
    if (!this.algorithms.has(header.alg)) return { ok: false, reason: 'alg_not_allowed' };
    let lookup = this.keys.lookup(header.alg, header.kid, this.now());
    if (!lookup.ok && lookup.reason === 'unknown_kid' && (await this.keys.refetchForUnknownKid())) lookup = this.keys.lookup(header.alg, header.kid, this.now());
    if (!lookup.ok) return { ok: false, reason: lookup.reason === 'unavailable' ? 'keys_unavailable' : 'unknown_kid' };
    const signed = jws.lastIndexOf('.');
    const signingInput = Buffer.from(jws.slice(0, signed), 'latin1');
    const signature = Buffer.from(jws.slice(signed + 1), 'base64url');
    for (const key of lookup.keys) {
      try {
        if (key.verifies(signingInput, signature)) return { ok: true, header, payload: parsed.payload };
      } catch {
        // OpenSSL refused the input (a malformed key or signature): no key of this set signed it.
      }
    }
    return { ok: false, reason: 'bad_signature' };
  }
}
