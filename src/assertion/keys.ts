/**
 * Signing keys from PEM files: the JWS algorithm follows from the key itself (RSA → RS256, P-256 → ES256,
 * Ed25519 → EdDSA), and the `kid` is the RFC 7638 thumbprint of the public key, so the same file always
 * publishes the same key id on every instance without anyone choosing one.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';

export type AssertionAlgorithm = 'ES256' | 'EdDSA' | 'RS256';

export interface SigningKey {
  readonly kid: string;
  readonly alg: AssertionAlgorithm;
  readonly privateKey: KeyObject;
  /** With `kid`, `alg` and `use: sig`, as published. */
  readonly publicJwk: JWK;
}

/** A PEM that is not a private key of a supported type; the message names the source and what was found. */
export class KeyFileError extends Error {
  override readonly name = 'KeyFileError';
}

/** The one algorithm a private key signs with, or undefined for a key type we do not sign with. */
export function algorithmOf(key: KeyObject): AssertionAlgorithm | undefined {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  return undefined;
}

/** RS256 with a shorter modulus is refused by jose (RFC 7518 §3.3), so such a key could never sign. */
const MIN_RSA_BITS = 2048;

/** Why `key` cannot sign assertions, or undefined when it can: an RSA key of 2048 bits or more, EC P-256, Ed25519. */
export function unusableKeyReason(key: KeyObject): string | undefined {
  if (algorithmOf(key) === undefined) {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    return `a ${key.asymmetricKeyType ?? 'unknown'}${curve ? ` ${curve}` : ''} key; use an RSA, EC P-256 or Ed25519 private key`;
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (key.asymmetricKeyType === 'rsa' && bits < MIN_RSA_BITS) return `an RSA key of ${bits} bits; RS256 needs at least ${MIN_RSA_BITS}`;
  return undefined;
}

/** Parses one PEM private key (PKCS#8, PKCS#1 or SEC1); `source` names it in errors (a file path). */
export async function signingKeyFromPem(pem: string | Buffer, source: string): Promise<SigningKey> {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (error) {
    throw new KeyFileError(`${source}: not a PEM private key (${(error as Error).message})`);
  }
  const unusable = unusableKeyReason(privateKey);
  const alg = algorithmOf(privateKey);
  if (unusable !== undefined || alg === undefined) throw new KeyFileError(`${source}: ${unusable}`);
  const jwk = await exportJWK(createPublicKey(privateKey));
  const kid = await calculateJwkThumbprint(jwk);
  return { kid, alg, privateKey, publicJwk: { ...jwk, kid, alg, use: 'sig' } };
}

/** Every file, in order (the first signs); read asynchronously, at config load or reload, never per request. */
export async function loadSigningKeys(files: readonly string[]): Promise<SigningKey[]> {
  if (files.length === 0) throw new KeyFileError('at least one signing key is needed');
  return Promise.all(files.map(loadSigningKey));
}

export async function loadSigningKey(file: string): Promise<SigningKey> {
  let pem: Buffer;
  try {
    pem = await readFile(file);
  } catch (error) {
    throw new KeyFileError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  return signingKeyFromPem(pem, file);
}

/** The public JWKS document: every key, the signing one first. Serialize once and serve the same bytes. */
export function publicJwks(keys: readonly SigningKey[]): { keys: JWK[] } {
  return { keys: keys.map((key) => key.publicJwk) };
}
