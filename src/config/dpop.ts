import { SECOND } from './duration.js';
import { ASYMMETRIC_ALGORITHMS } from './algorithms.js';
import { keySlot, type Reader, type Slot } from './reader.js';
import { Secret } from './secret.js';
import { didYouMean } from './suggest.js';
import type { IssuerConfig, RouteConfig } from './types.js';

/** An issuer's `dpop:` entry. */
export interface DpopConfig {
  /** `required`: this issuer's tokens must be DPoP-bound; `allowed`: bound ones must come with a proof. */
  readonly mode: 'allowed' | 'required';
  readonly maxAgeMs: number;
  readonly algorithms: readonly string[];
  /** Set: the gateway hands out nonces (`DPoP-Nonce`) derived from this secret, shared by every instance. */
  readonly nonceSecret: Secret | undefined;
}

const DPOP_MODES = ['allowed', 'required'] as const;
/** HMAC-SHA-256 keys shorter than the hash add nothing but guessability. */
const MIN_NONCE_SECRET_BYTES = 32;

/** Reads `issuers.<name>.dpop`; undefined when absent (the DPoP scheme is not accepted) or invalid. */
export function readDpop(r: Reader, slot: Slot): DpopConfig | undefined {
  if (slot.node === undefined) return undefined;
  const s = r.section(slot, ['mode', 'max_age', 'algorithms', 'nonce', 'nonce_secret']);
  const mode = s.has('mode') ? r.oneOf(s.slot('mode'), DPOP_MODES) : 'allowed';
  const maxAgeMs = r.duration(s.slot('max_age'), { positive: true }) ?? 60 * SECOND;
  const algorithms = s.has('algorithms') ? readProofAlgorithms(r, s.slot('algorithms')) : ASYMMETRIC_ALGORITHMS;
  const nonce = r.boolean(s.slot('nonce')) ?? false;
  const nonceSecret = readNonceSecret(r, s.slot('nonce_secret'), nonce);
  if (mode === undefined || algorithms === undefined || nonceSecret === null) return undefined;
  return { mode, maxAgeMs, algorithms, nonceSecret };
}

function readProofAlgorithms(r: Reader, slot: Slot): string[] | undefined {
  return r.items(slot, (item) => {
    const algorithm = r.string(item);
    if (algorithm === undefined || ASYMMETRIC_ALGORITHMS.includes(algorithm)) return algorithm;
    return r.problem(item, `"${algorithm}" cannot sign a DPoP proof: one of ${ASYMMETRIC_ALGORITHMS.join(', ')}${didYouMean(algorithm, ASYMMETRIC_ALGORITHMS)}`);
  }, { nonEmpty: true });
}

/** Null: a problem was recorded. */
function readNonceSecret(r: Reader, slot: Slot, nonce: boolean): Secret | undefined | null {
  if (!nonce) {
    if (slot.node !== undefined) r.problem(keySlot(slot), 'is only used with nonce: true');
    return slot.node === undefined ? undefined : null;
  }
  if (!r.required(slot)) return null;
  const secret = r.string(slot);
  if (secret === undefined) return null;
  if (Buffer.byteLength(secret) < MIN_NONCE_SECRET_BYTES) {
    r.problem(slot, `must be at least ${MIN_NONCE_SECRET_BYTES} bytes (every instance must be given the same one)`);
    return null;
  }
  return new Secret(secret);
}

/** How one route takes DPoP, from the issuers it accepts (all configured ones when it names none). */
export interface RouteDpop {
  /** The names of those issuers that have `dpop`. */
  readonly issuers: ReadonlySet<string>;
  /** Every proof algorithm one of them accepts, in config order. */
  readonly algorithms: readonly string[];
  /** Whether a Bearer token can still pass: some accepted issuer does not require DPoP. */
  readonly bearer: boolean;
}

/** Undefined when no issuer the route accepts has `dpop` (the DPoP scheme is not accepted there). */
export function routeDpop(route: Pick<RouteConfig, 'issuers'>, issuers: ReadonlyMap<string, IssuerConfig>): RouteDpop | undefined {
  const accepted = route.issuers === undefined ? [...issuers.values()] : route.issuers.flatMap((name) => issuers.get(name) ?? []);
  const taking = accepted.filter((issuer) => issuer.dpop !== undefined);
  if (taking.length === 0) return undefined;
  return {
    issuers: new Set(taking.map((issuer) => issuer.name)),
    algorithms: [...new Set(taking.flatMap((issuer) => issuer.dpop?.algorithms ?? []))],
    bearer: accepted.some((issuer) => issuer.dpop?.mode !== 'required'),
  };
}
