import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { existingFile } from './files.js';
import type { Reader, Slot } from './reader.js';

/** A client's private key for `private_key_jwt` (RFC 7523), and the algorithm its assertions are signed with. */
export interface ClientKey {
  /** Absolute path of the PEM private key. */
  readonly keyFile: string;
  readonly algorithm: string;
}

const MIN_RSA_BITS = 2048;

/** The algorithms each private key type can sign with, the first being the one used unless another is configured. */
const ALGORITHMS_BY_KEY_TYPE: Readonly<Record<string, readonly string[]>> = {
  rsa: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
  'rsa-pss': ['PS256', 'PS384', 'PS512'],
  ed25519: ['EdDSA'],
  // EC keys by their curve, as Node names it.
  prime256v1: ['ES256'],
  secp384r1: ['ES384'],
  secp521r1: ['ES512'],
};

/**
 * The key file at `fileSlot` (it must hold a PEM private key that can sign a client assertion) and its algorithm:
 * the one its type implies, or the one at `algorithmSlot` when that is set and fits the key. Read now, so a wrong
 * key fails `check` rather than the first sign-in or introspection.
 */
export function readClientKey(r: Reader, fileSlot: Slot, baseDir: string, algorithmSlot?: Slot): ClientKey | undefined {
  const keyFile = existingFile(r, fileSlot, baseDir);
  if (keyFile === undefined) return undefined;
  let usable: readonly string[] | undefined;
  let rsaBits: number | undefined;
  try {
    const key = createPrivateKey(readFileSync(keyFile));
    usable = ALGORITHMS_BY_KEY_TYPE[key.asymmetricKeyDetails?.namedCurve ?? key.asymmetricKeyType ?? ''];
    rsaBits = key.asymmetricKeyType?.startsWith('rsa') ? key.asymmetricKeyDetails?.modulusLength : undefined;
  } catch {
    return r.problem(fileSlot, 'is not a PEM private key');
  }
  // jose signs RS* and PS* only with 2048 bits or more (RFC 7518 §3.3, §3.5).
  if (rsaBits !== undefined && rsaBits < MIN_RSA_BITS) return r.problem(fileSlot, `is an RSA key of ${rsaBits} bits; use one of at least ${MIN_RSA_BITS}`);
  if (usable === undefined) return r.problem(fileSlot, 'cannot sign a client assertion: use an RSA, EC (P-256, P-384, P-521) or Ed25519 key');
  const algorithm = algorithmSlot?.node === undefined ? usable[0] : r.oneOf(algorithmSlot, usable);
  return algorithm === undefined ? undefined : { keyFile, algorithm };
}
