import { createHash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

/**
 * A DPoP client as RFC 9449 describes one, built on jose: a key pair whose public JWK goes into every proof's
 * header, and proofs for one request each (`htm`, `htu`, a fresh `jti`, `iat` now, `ath` of the access token).
 */
export interface DpopClient {
  readonly alg: 'ES256' | 'EdDSA' | 'PS256';
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
  /** RFC 7638 thumbprint of the public key: the `cnf.jkt` of the tokens bound to it. */
  readonly jkt: string;
  proof(request: ProofRequest): Promise<string>;
}

export interface ProofRequest {
  readonly htm: string;
  readonly htu: string;
  /** The access token the proof goes with: its hash becomes `ath` (unless `claims` overrides it). */
  readonly token: string;
  readonly nonce?: string;
  /** Claims to add, replace or (with `undefined`) leave out: `iat`, `jti`, `ath`… */
  readonly claims?: Record<string, unknown>;
  /** Header members to add or replace, e.g. a `jwk` of another key. */
  readonly header?: Record<string, unknown>;
}

export function athOf(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export async function dpopClient(alg: DpopClient['alg'] = 'ES256'): Promise<DpopClient> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  const jkt = await calculateJwkThumbprint(jwk, 'sha256');
  return {
    alg,
    privateKey,
    jwk,
    jkt,
    async proof({ htm, htu, token, nonce, claims = {}, header = {} }) {
      const payload: Record<string, unknown> = { htm, htu, ath: athOf(token), jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ...(nonce === undefined ? {} : { nonce }), ...claims };
      for (const [name, value] of Object.entries(payload)) if (value === undefined) delete payload[name];
      return new SignJWT(payload).setProtectedHeader({ typ: 'dpop+jwt', alg, jwk, ...header }).sign(privateKey);
    },
  };
}
