import { constants, createHmac, sign as cryptoSign, type KeyObject } from 'node:crypto';

/**
 * Low-level JWS assembly and tampering for attack tests. Nothing here validates anything: these helpers exist
 * to mint exactly the bytes an attacker would send.
 */

export function b64url(data: string | Uint8Array): string {
  return Buffer.from(data).toString('base64url');
}

export function fromB64url(segment: string): string {
  return Buffer.from(segment, 'base64url').toString('utf8');
}

/** A header or payload: an object is JSON-encoded, a string is used as the exact JSON text, bytes as they are. */
export type Part = Record<string, unknown> | string | Uint8Array;

export function encodePart(part: Part): string {
  if (typeof part === 'string' || part instanceof Uint8Array) return b64url(part);
  return b64url(JSON.stringify(part));
}

export function segments(token: string): [header: string, payload: string, signature: string] {
  const [header = '', payload = '', signature = ''] = token.split('.');
  return [header, payload, signature];
}

export function assemble(header: Part, payload: Part, signature = ''): string {
  return `${encodePart(header)}.${encodePart(payload)}.${signature}`;
}

export function decodeHeader(token: string): Record<string, unknown> {
  return JSON.parse(fromB64url(segments(token)[0])) as Record<string, unknown>;
}

export function decodePayload(token: string): Record<string, unknown> {
  return JSON.parse(fromB64url(segments(token)[1])) as Record<string, unknown>;
}

const HASHES: Readonly<Record<string, string>> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };

function hashOf(alg: string): string {
  const hash = HASHES[alg.slice(-3)];
  if (hash === undefined) throw new Error(`no hash for ${alg}`);
  return hash;
}

/** Signs `signingInput` the way JWS `alg` demands (RSASSA-PKCS1, RSASSA-PSS, ECDSA in P1363 form, Ed25519, HMAC). */
export function signingBytes(alg: string, key: KeyObject | Uint8Array | string, signingInput: string): Buffer {
  if (alg.startsWith('HS')) return createHmac(hashOf(alg), key as Uint8Array | string).update(signingInput).digest();
  const privateKey = key as KeyObject;
  if (alg === 'EdDSA' || alg === 'Ed25519') return cryptoSign(null, Buffer.from(signingInput), privateKey);
  if (alg.startsWith('RS')) return cryptoSign(hashOf(alg), Buffer.from(signingInput), privateKey);
  if (alg.startsWith('PS')) {
    return cryptoSign(hashOf(alg), Buffer.from(signingInput), {
      key: privateKey,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
    });
  }
  if (alg.startsWith('ES')) return cryptoSign(hashOf(alg), Buffer.from(signingInput), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  throw new Error(`cannot sign ${alg}`);
}

/**
 * A compact JWS over arbitrary header and payload bytes, signed with `key` using `alg` (which need not match the
 * header's `alg`: that mismatch is itself an attack). Header defaults `alg` from the argument.
 */
export function signRaw(alg: string, key: KeyObject | Uint8Array | string, header: Part, payload: Part): string {
  const signingInput = `${encodePart(header)}.${encodePart(payload)}`;
  return `${signingInput}.${b64url(signingBytes(alg, key, signingInput))}`;
}

/** `alg: none` in the given spelling, with an empty signature (the trailing dot kept) or `dropDot` to omit it. */
export function unsecured(payload: Part, algSpelling = 'none', options: { dropDot?: boolean; kid?: string } = {}): string {
  const header = options.kid === undefined ? { alg: algSpelling, typ: 'JWT' } : { alg: algSpelling, typ: 'JWT', kid: options.kid };
  const token = `${encodePart(header)}.${encodePart(payload)}.`;
  return options.dropDot ? token.slice(0, -1) : token;
}

export function withoutSignature(token: string): string {
  const [header, payload] = segments(token);
  return `${header}.${payload}.`;
}

export function withTruncatedSignature(token: string, keep = 10): string {
  const [header, payload, signature] = segments(token);
  return `${header}.${payload}.${signature.slice(0, keep)}`;
}

/** Adds `=` padding to the segment at `index` (as many as a padded base64 encoding would have, at least one). */
export function withPadding(token: string, index: 0 | 1 | 2): string {
  const parts = segments(token);
  const segment = parts[index];
  parts[index] = segment + '='.repeat((4 - (segment.length % 4)) % 4 || 1);
  return parts.join('.');
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * The same bytes with non-zero spare bits in the last character of segment `index` (decoders ignore them, so
 * jose verifies the variant). Undefined when that segment's length leaves no spare bits.
 */
export function withSpareBits(token: string, index: 0 | 1 | 2): string | undefined {
  const parts = segments(token);
  const segment = parts[index];
  const spareMask = segment.length % 4 === 2 ? 0x0f : segment.length % 4 === 3 ? 0x03 : 0;
  if (spareMask === 0) return undefined;
  const last = ALPHABET.indexOf(segment.slice(-1));
  parts[index] = segment.slice(0, -1) + (ALPHABET[last | 1] as string);
  return parts.join('.');
}

/**
 * The ways an attacker writes the issuer's RSA/EC public key as an HMAC secret (RS→HS key confusion): PEM with and
 * without a trailing newline, DER (SPKI), and the JWK as JSON text.
 */
export function publicKeyAsSecrets(publicKey: KeyObject): Record<'pemWithNewline' | 'pemWithoutNewline' | 'der' | 'jwkJson', string | Buffer> {
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return {
    pemWithNewline: pem.endsWith('\n') ? pem : `${pem}\n`,
    pemWithoutNewline: pem.trimEnd(),
    der: publicKey.export({ type: 'spki', format: 'der' }),
    jwkJson: JSON.stringify(publicKey.export({ format: 'jwk' })),
  };
}

/** ECDSA "psychic signature" (CVE-2022-21449): r = s = 0, in JWS (P1363) form for a curve of `bytes` per coordinate. */
export function psychicSignature(bytes = 32): string {
  return b64url(new Uint8Array(bytes * 2));
}

/** Payload JSON text with `name` present twice: first `first`, then `second` (raw JSON values). */
export function duplicateClaimJson(claims: Record<string, unknown>, name: string, first: string, second: string): string {
  const rest = JSON.stringify(claims).slice(1, -1);
  return `{${rest}${rest === '' ? '' : ','}"${name}":${first},"${name}":${second}}`;
}
