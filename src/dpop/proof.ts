import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, decodeProtectedHeader, type JWK, type ProtectedHeaderParameters } from 'jose';
import { isCanonicalBase64url, MAX_TOKEN_LENGTH, scanJsonMembers } from '../auth/jws.js';
import { isPlainObject } from '../policy/claim-path.js';
import type { DpopError } from './challenge.js';
import { htuMatches } from './htu.js';
import type { DpopNonces } from './nonce.js';
import type { ReplayStore } from './replay.js';

/**
 * The DPoP proof check of RFC 9449 §4.3 for one request, given the access token it comes with and the key that
 * token is bound to (`cnf.jkt`). `unavailable`: the replay store could not be asked, so the proof cannot be
 * shown to be fresh (answered 503, not blamed on the client).
 */
export type DpopCheck =
  | { readonly ok: true }
  | { readonly ok: false; readonly error: DpopError | 'unavailable'; readonly reason: string };

export interface DpopRequest {
  /** The one `DPoP` header's value. */
  readonly proof: string;
  readonly method: string;
  /** The URI the client used, from `dpopHtu`. */
  readonly htu: string;
  readonly accessToken: string;
  /** The token's `cnf.jkt`; undefined when the token is not bound to a key. */
  readonly jkt: string | undefined;
}

export interface DpopOptions {
  /** Asymmetric JWS algorithms only (the config reader refuses others). */
  readonly algorithms: readonly string[];
  readonly maxAgeMs: number;
  readonly clockSkewMs: number;
  /** Set: proofs must carry a nonce these accept. */
  readonly nonces: DpopNonces | undefined;
  readonly replay: ReplayStore;
  readonly nowMs?: () => number;
}

const OK: DpopCheck = Object.freeze({ ok: true });
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Members that only a private or secret key has (RFC 7518 §6, RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
/** A jti is remembered per proof key; longer ones would only be a way to fill the store. */
const MAX_JTI_LENGTH = 256;
const utf8 = new TextDecoder('utf-8', { fatal: true });

type Refusal = Extract<DpopCheck, { ok: false }>;
const refuse = (reason: string, error: Refusal['error'] = 'invalid_dpop_proof'): Refusal => ({ ok: false, error, reason });

function isCanonicalCompact(proof: string): boolean {
  if (proof.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(proof)) return false;
  const first = proof.indexOf('.');
  const second = proof.indexOf('.', first + 1);
  return isCanonicalBase64url(proof, 0, first) && isCanonicalBase64url(proof, first + 1, second) && isCanonicalBase64url(proof, second + 1);
}

function protectedHeader(proof: string): ProtectedHeaderParameters | undefined {
  try {
    return decodeProtectedHeader(proof);
  } catch {
    return undefined;
  }
}

/** The proof key from the header: a public JWK of an accepted algorithm, as a KeyObject; or why not. */
function proofKey(header: ProtectedHeaderParameters, algorithms: readonly string[]): KeyObject | string {
  if (header.typ?.toLowerCase() !== 'dpop+jwt') return 'typ is not dpop+jwt';
  if (header.alg === undefined || !algorithms.includes(header.alg)) return `alg ${String(header.alg)} is not accepted`;
  const jwk: unknown = header.jwk;
  if (!isPlainObject(jwk)) return 'no jwk header';
  for (const member of PRIVATE_MEMBERS) if (member in jwk) return 'the jwk header holds a private key';
  try {
    return createPublicKey({ key: jwk as JWK, format: 'jwk' });
  } catch {
    return 'the jwk header is not a usable public key';
  }
}

export class DpopVerifier {
  private readonly nowMs: () => number;
  /** How long a jti must be remembered: as long as a proof carrying it could pass the iat check. */
  private readonly replayTtlMs: number;

  constructor(private readonly options: DpopOptions) {
    this.nowMs = options.nowMs ?? Date.now;
    this.replayTtlMs = options.maxAgeMs + 2 * options.clockSkewMs;
  }

  async verify(request: DpopRequest): Promise<DpopCheck> {
    if (request.jkt === undefined) return refuse('the token is not bound to a DPoP key', 'invalid_token');
    if (!isCanonicalCompact(request.proof)) return refuse('the proof is not a compact JWS');
    const header = protectedHeader(request.proof);
    if (header === undefined) return refuse('the header is not a JSON object');
    const key = proofKey(header, this.options.algorithms);
    if (typeof key === 'string') return refuse(key);
    let payloadText: string;
    try {
      payloadText = utf8.decode((await compactVerify(request.proof, key, { algorithms: [...this.options.algorithms] })).payload);
    } catch {
      return refuse('bad signature');
    }
    const claims = this.checkClaims(payloadText, request);
    if (typeof claims !== 'string') return claims;
    if ((await calculateJwkThumbprint(header.jwk as JWK, 'sha256')) !== request.jkt) return refuse('the proof key is not the key the token is bound to');
    return this.claimJti(`${request.jkt}:${claims}`);
  }

  /** The payload's claims against the request; the jti on success. */
  private checkClaims(payloadText: string, request: DpopRequest): string | Refusal {
    if (scanJsonMembers(payloadText) !== 'ok') return refuse('the payload is malformed or repeats a claim');
    const payload: unknown = JSON.parse(payloadText);
    if (!isPlainObject(payload)) return refuse('the payload is not an object');
    const { jti, htm, htu, iat, ath, nonce } = payload;
    if (typeof jti !== 'string' || jti === '' || jti.length > MAX_JTI_LENGTH) return refuse('no usable jti');
    if (htm !== request.method) return refuse('htm is not the request method');
    if (typeof htu !== 'string' || !htuMatches(htu, request.htu)) return refuse('htu is not the request URI');
    if (typeof iat !== 'number' || !Number.isFinite(iat)) return refuse('no iat');
    const ageMs = this.nowMs() - iat * 1000;
    if (ageMs > this.options.maxAgeMs + this.options.clockSkewMs) return refuse('the proof is too old');
    if (-ageMs > this.options.clockSkewMs) return refuse('the proof is from the future');
    if (ath !== createHash('sha256').update(request.accessToken).digest('base64url')) return refuse('ath is not the hash of the access token');
    const nonces = this.options.nonces;
    if (nonces !== undefined && (typeof nonce !== 'string' || !nonces.accepts(nonce))) return refuse('no current nonce', 'use_dpop_nonce');
    return jti;
  }

  private async claimJti(id: string): Promise<DpopCheck> {
    try {
      return (await this.options.replay.claim(id, this.replayTtlMs)) ? OK : refuse('the proof was used before (jti replayed)');
    } catch (error) {
      return refuse(`the replay store failed: ${(error as Error).message}`, 'unavailable');
    }
  }
}
