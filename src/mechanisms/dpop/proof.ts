import { createPublicKey, hash, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { MAX_TOKEN_LENGTH } from '../../http/bearer.js';
import { isPlainObject } from '../../lib/json.js';
import type { ReplayStore } from '../../store/replay.js';
import { decodeSegment, isCanonicalBase64url, scanJsonMembers, signingInputEnd } from '../authenticators/jwt/jws.js';
import { jwkFitsAlgorithm, MIN_RSA_BITS, VerificationKey } from '../authenticators/jwt/key-set.js';
import { TokenCache, type KeyVersion } from '../authenticators/jwt/token-cache.js';
import { htuMatches } from './htu.js';
import type { DpopNonces } from './nonce.js';

/**
 * How a refusal is answered (RFC 9449 §7.1, §8): the proof's own defects are `invalid_dpop_proof`, a token that is
 * not bound to the proof's key `invalid_token`, a missing nonce `use_dpop_nonce`; `unavailable`: the replay store
 * could not be asked, so the proof cannot be shown to be fresh (503, not blamed on the client).
 */
export type DpopError = 'invalid_dpop_proof' | 'use_dpop_nonce' | 'invalid_token' | 'unavailable';

const ERRORS = {
  dpop_proof_missing: 'invalid_dpop_proof',
  dpop_proof_malformed: 'invalid_dpop_proof',
  dpop_proof_header: 'invalid_dpop_proof',
  dpop_proof_signature: 'invalid_dpop_proof',
  dpop_proof_claims: 'invalid_dpop_proof',
  dpop_proof_htm: 'invalid_dpop_proof',
  dpop_proof_htu: 'invalid_dpop_proof',
  dpop_proof_iat: 'invalid_dpop_proof',
  dpop_proof_ath: 'invalid_dpop_proof',
  dpop_proof_replayed: 'invalid_dpop_proof',
  dpop_nonce: 'use_dpop_nonce',
  dpop_token_unbound: 'invalid_token',
  dpop_key_mismatch: 'invalid_token',
  dpop_replay_store_unavailable: 'unavailable',
} as const satisfies Record<string, DpopError>;

/** Which check refused a proof: the access log's and `authgate_auth_denied_total`'s reason. */
export type DpopFailure = keyof typeof ERRORS;

export type DpopRefusal = { readonly ok: false; readonly error: DpopError; readonly reason: DpopFailure; readonly detail: string };
/** `nonce`: a newer one for the client, when its proof passed with an older one (RFC 9449 §8.2). */
export type DpopCheck = { readonly ok: true; readonly nonce?: string } | DpopRefusal;

export interface DpopRequest {
  /** The one `DPoP` header's value; '' when the request has none. */
  readonly proof: string;
  readonly method: string;
  /** The URI the client used, from `dpopHtu`. */
  readonly htu: string;
  readonly accessToken: string;
  /** The token's `cnf.jkt`: undefined when the token is not bound to a key. */
  readonly jkt: unknown;
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
/** Members that only a private or secret key has (RFC 7518 §6, RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
/** They change how the JWS must be processed (RFC 7515 §4.1.11, RFC 7797): no proof needs them. */
const UNSUPPORTED_MEMBERS = ['crit', 'b64'] as const;
/** A jti is remembered per proof key; longer ones would only be a way to fill the store. */
const MAX_JTI_LENGTH = 256;
/**
 * Checked proof headers, by their encoded text. A client signs all its proofs with one header (typ, alg, its
 * public key), so the JWK import and thumbprint are done once per client key, not per request. An entry follows
 * from the header's bytes alone, so it never goes stale. Bounded in estimated bytes.
 */
const KEY_CACHE_BYTES = 16 * 1024 * 1024;
const MAX_CACHED_HEADER_LENGTH = 2048;
/** The imported key, its verifier and the cache entry besides the header text. */
const KEY_ENTRY_OVERHEAD_BYTES = 2048;
const NEVER_STALE: KeyVersion = Object.freeze({ generation: 0, usableUntilMs: Infinity });

interface ProofKey {
  readonly alg: string;
  readonly verifier: VerificationKey;
  /** RFC 7638 thumbprint of the key: what a bound token's `cnf.jkt` must be. */
  readonly jkt: string;
}

function refuse(reason: DpopFailure, detail: string): DpopRefusal {
  return { ok: false, error: ERRORS[reason], reason, detail };
}

/**
 * The end of the signing input (the second dot) of a compact JWS in its one canonical base64url spelling, or -1:
 * `alg: none` with an empty signature, JSON serialization and padded or spare-bit variants are all refused here.
 */
function canonicalSigningInputEnd(proof: string): number {
  const signed = proof.length > MAX_TOKEN_LENGTH ? -1 : signingInputEnd(proof);
  if (signed < 0) return -1;
  const firstDot = proof.indexOf('.');
  const canonical = isCanonicalBase64url(proof, 0, firstDot) && isCanonicalBase64url(proof, firstDot + 1, signed) && isCanonicalBase64url(proof, signed + 1);
  return canonical ? signed : -1;
}

/** The proof's JSON segment `[start, end)` as a plain object without repeated names; or why not. */
function readSegment(proof: string, start: number, end: number): Record<string, unknown> | string {
  const text = decodeSegment(proof, start, end);
  if (text === undefined) return 'is not UTF-8';
  if (scanJsonMembers(text) !== 'ok') return 'is not JSON, repeats a name or nests too deep';
  try {
    const value: unknown = JSON.parse(text);
    return isPlainObject(value) ? value : 'is not a JSON object';
  } catch {
    return 'is not JSON';
  }
}

/** The proof key from a decoded header: a public JWK of an accepted algorithm, as a KeyObject; or why not. */
function importProofKey(header: Record<string, unknown>, algorithms: readonly string[]): KeyObject | string {
  const { typ, alg, jwk } = header;
  if (typeof typ !== 'string' || typ.toLowerCase() !== 'dpop+jwt') return 'typ is not dpop+jwt';
  if (typeof alg !== 'string' || !algorithms.includes(alg)) return `alg ${JSON.stringify(alg)} is not one of ${algorithms.join(', ')}`;
  for (const member of UNSUPPORTED_MEMBERS) if (member in header) return `the header has ${member}`;
  if (!isPlainObject(jwk)) return 'no jwk header';
  for (const member of PRIVATE_MEMBERS) if (member in jwk) return 'the jwk header holds a private key';
  if (!jwkFitsAlgorithm(jwk as JWK, alg)) return `the jwk header is not a key for ${alg}`;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk as JWK, format: 'jwk' });
  } catch {
    return 'the jwk header is not a usable public key';
  }
  const bits = key.asymmetricKeyDetails?.modulusLength;
  return bits !== undefined && bits < MIN_RSA_BITS ? `the jwk header is an RSA key of ${bits} bits` : key;
}

/**
 * The DPoP proof check of RFC 9449 §4.3 for one request, given the access token it comes with and the key that
 * token is bound to. The proof key is imported once per distinct header; the signature is checked with
 * node:crypto on every request, then the claims, the nonce and, last, the jti, so a refused proof never uses up
 * its jti. `notes` (`authgate explain`) receives each check that held.
 */
export class DpopVerifier {
  private readonly nowMs: () => number;
  /** How long a jti must be remembered: as long as a proof carrying it could pass the iat check. */
  private readonly replayTtlMs: number;
  private readonly keys = new TokenCache<ProofKey>(KEY_CACHE_BYTES);

  constructor(private readonly options: DpopOptions) {
    this.nowMs = options.nowMs ?? Date.now;
    this.replayTtlMs = options.maxAgeMs + 2 * options.clockSkewMs;
  }

  async verify(request: DpopRequest, notes?: string[]): Promise<DpopCheck> {
    const { proof, jkt } = request;
    if (jkt === undefined) return refuse('dpop_token_unbound', 'the token has no cnf.jkt: it is not bound to a DPoP key');
    if (proof === '') return refuse('dpop_proof_missing', 'the request has no DPoP header');
    const signed = canonicalSigningInputEnd(proof);
    if (signed < 0) return refuse('dpop_proof_malformed', 'the DPoP header is not a compact JWS in canonical base64url');
    const firstDot = proof.indexOf('.');
    const key = this.keys.get(proof.slice(0, firstDot), 0) ?? (await this.importKey(proof, firstDot));
    if (!('verifier' in key)) return key;
    notes?.push(`header: typ dpop+jwt, alg ${key.alg}, public jwk (thumbprint ${key.jkt})`);
    if (!key.verifier.verifies(Buffer.from(proof.slice(0, signed), 'latin1'), Buffer.from(proof.slice(signed + 1), 'base64url'))) {
      return refuse('dpop_proof_signature', `the signature does not verify with the header's ${key.alg} key`);
    }
    notes?.push('signature holds');
    if (key.jkt !== jkt) return refuse('dpop_key_mismatch', `the proof key (thumbprint ${key.jkt}) is not the token's cnf.jkt`);
    notes?.push('the proof key is the token\'s cnf.jkt');
    const payload = readSegment(proof, firstDot + 1, signed);
    if (typeof payload === 'string') return refuse('dpop_proof_malformed', `the payload ${payload}`);
    const jti = this.checkClaims(payload, request, notes);
    if (typeof jti !== 'string') return jti;
    const claimed = await this.claimJti(`dpop:${key.jkt}:${jti}`, notes);
    return claimed.ok ? this.withNewerNonce(payload['nonce']) : claimed;
  }

  /**
   * A proof that passed with the previous window's nonce: the client hears the current one now, rather than a
   * `use_dpop_nonce` refusal and a retry once the one it holds has expired. (The next window's, from an instance
   * whose clock runs ahead, is newer than this instance's current one: nothing is said then.)
   */
  private withNewerNonce(used: unknown): DpopCheck {
    const nonces = this.options.nonces;
    return nonces?.isPrevious(used) === true ? { ok: true, nonce: nonces.current() } : OK;
  }

  private async importKey(proof: string, firstDot: number): Promise<ProofKey | DpopRefusal> {
    const header = readSegment(proof, 0, firstDot);
    if (typeof header === 'string') return refuse('dpop_proof_malformed', `the header ${header}`);
    const imported = importProofKey(header, this.options.algorithms);
    if (typeof imported === 'string') return refuse('dpop_proof_header', imported);
    const alg = header.alg as string;
    const key: ProofKey = Object.freeze({ alg, verifier: new VerificationKey(alg, imported), jkt: await calculateJwkThumbprint(header.jwk as JWK, 'sha256') });
    if (firstDot <= MAX_CACHED_HEADER_LENGTH) this.keys.set(proof.slice(0, firstDot), key, Infinity, NEVER_STALE, KEY_ENTRY_OVERHEAD_BYTES + 2 * firstDot);
    return key;
  }

  /** The payload's claims against the request (RFC 9449 §4.3 steps 9–12): the jti on success. */
  private checkClaims(payload: Record<string, unknown>, request: DpopRequest, notes: string[] | undefined): string | DpopRefusal {
    const { jti, htm, htu, iat, ath, nonce } = payload;
    if (typeof jti !== 'string' || jti === '' || jti.length > MAX_JTI_LENGTH) return refuse('dpop_proof_claims', 'no jti of 1 to 256 characters');
    if (htm !== request.method) return refuse('dpop_proof_htm', `htm ${quoted(htm)} is not the request method ${request.method}`);
    if (typeof htu !== 'string' || !htuMatches(htu, request.htu)) return refuse('dpop_proof_htu', `htu ${quoted(htu)} is not the request URI ${request.htu}`);
    notes?.push(`htm ${request.method}, htu ${request.htu}`);
    if (typeof iat !== 'number' || !Number.isFinite(iat)) return refuse('dpop_proof_iat', 'no numeric iat');
    const { maxAgeMs, clockSkewMs } = this.options;
    const ageMs = this.nowMs() - iat * 1000;
    if (ageMs > maxAgeMs + clockSkewMs) return refuse('dpop_proof_iat', `issued ${Math.round(ageMs / 1000)} s ago, more than max_age ${maxAgeMs / 1000} s (+ clock_skew)`);
    if (-ageMs > clockSkewMs) return refuse('dpop_proof_iat', `issued ${Math.round(-ageMs / 1000)} s in the future, more than clock_skew`);
    notes?.push(`iat ${Math.round(ageMs / 1000)} s ago, within max_age ${maxAgeMs / 1000} s`);
    if (ath !== hash('sha256', request.accessToken, 'base64url')) return refuse('dpop_proof_ath', ath === undefined ? 'no ath' : 'ath is not the SHA-256 of the access token');
    notes?.push('ath is the hash of the access token');
    const nonces = this.options.nonces;
    if (nonces !== undefined) {
      if (typeof nonce !== 'string' || !nonces.accepts(nonce)) return refuse('dpop_nonce', nonce === undefined ? 'no nonce' : 'the nonce is not a current one');
      notes?.push('nonce is current');
    }
    return jti;
  }

  private async claimJti(id: string, notes: string[] | undefined): Promise<DpopCheck> {
    try {
      if (!(await this.options.replay.claim(id, this.replayTtlMs))) return refuse('dpop_proof_replayed', 'the jti was used before (a replayed proof)');
    } catch (error) {
      return refuse('dpop_replay_store_unavailable', `the replay store failed: ${(error as Error).message}`);
    }
    notes?.push('jti not seen before');
    return OK;
  }
}

/** A claim's value for the log, bounded: it is the client's text. */
function quoted(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
