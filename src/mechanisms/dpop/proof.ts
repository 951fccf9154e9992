import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, decodeProtectedHeader, type JWK, type ProtectedHeaderParameters } from 'jose';
import { MAX_TOKEN_LENGTH } from '../../http/bearer.js';
import { isCanonicalBase64url, scanJsonMembers } from '../authenticators/jwt/jws.js';
import { TokenCache, type KeyVersion } from '../authenticators/jwt/token-cache.js';
import { isPlainObject } from '../../lib/json.js';
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
/**
 * Checked proof headers, by their encoded text. A client signs all its proofs with one header (typ, alg, its
 * public key), so the JWK import and thumbprint (hundreds of µs) are done once per client key, not per request.
 * The entry follows from the header bytes alone, so it never goes stale. Bounded in entries and header length.
 */
const HEADER_CACHE_ENTRIES = 4096;
const MAX_CACHED_HEADER_LENGTH = 1024;
const NEVER_STALE: KeyVersion = Object.freeze({ generation: 0, usableUntilMs: Infinity });

interface ProofKey {
  readonly key: KeyObject;
  /** RFC 7638 thumbprint of the key: what a bound token's `cnf.jkt` must be. */
  readonly jkt: string;
}

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
function importProofKey(header: ProtectedHeaderParameters, algorithms: readonly string[]): KeyObject | string {
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

  private readonly algorithms: string[];
  private readonly headers = new TokenCache<ProofKey>(HEADER_CACHE_ENTRIES);

  constructor(private readonly options: DpopOptions) {
    this.algorithms = [...options.algorithms];
    this.nowMs = options.nowMs ?? Date.now;
    this.replayTtlMs = options.maxAgeMs + 2 * options.clockSkewMs;
  }

  async verify(request: DpopRequest): Promise<DpopCheck> {
    if (request.jkt === undefined) return refuse('the token is not bound to a DPoP key', 'invalid_token');
    if (!isCanonicalCompact(request.proof)) return refuse('the proof is not a compact JWS');
    const proofKey = await this.proofKeyOf(request.proof);
    if (typeof proofKey === 'string') return refuse(proofKey);
    if (proofKey.jkt !== request.jkt) return refuse('the proof key is not the key the token is bound to');
    let payloadText: string;
    try {
      payloadText = utf8.decode((await compactVerify(request.proof, proofKey.key, { algorithms: this.algorithms })).payload);
    } catch {
      return refuse('bad signature');
    }
    const jti = this.checkClaims(payloadText, request);
    if (typeof jti !== 'string') return jti;
    return this.claimJti(`${request.jkt}:${jti}`);
  }

  private async proofKeyOf(proof: string): Promise<ProofKey | string> {
    const headerText = proof.slice(0, proof.indexOf('.'));
    const cached = this.headers.get(headerText, 0);
    if (cached !== undefined) return cached;
    const header = protectedHeader(proof);
    if (header === undefined) return 'the header is not a JSON object';
    const key = importProofKey(header, this.algorithms);
    if (typeof key === 'string') return key;
    const checked: ProofKey = Object.freeze({ key, jkt: await calculateJwkThumbprint(header.jwk as JWK, 'sha256') });
    if (headerText.length <= MAX_CACHED_HEADER_LENGTH) this.headers.set(headerText, checked, Infinity, NEVER_STALE, 1);
    return checked;
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
