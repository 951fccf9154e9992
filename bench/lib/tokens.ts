/**
 * Token minting with node:crypto alone: RS256 for the JWKS-backed issuer, HS256 for the million-token memory run
 * (one HMAC per token, cheap enough to mint on the fly in the load generator).
 */
import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

export const AUDIENCE = 'bench-api';
export const RS_ISSUER = 'https://idp.bench.invalid/';
export const HS_ISSUER = 'https://hs.bench.invalid/';
/** 32 bytes: the HS256 minimum (RFC 7518 §3.2). */
export const HS_SECRET = 'bench-secret-0123456789abcdefghij';
const KID = 'bench-1';

function segment(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function claims(issuer: string, index: number): object {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: issuer,
    aud: AUDIENCE,
    sub: `user-${index}`,
    jti: `bench-${issuer === RS_ISSUER ? 'rs' : 'hs'}-${index}`,
    iat: now,
    exp: now + 3600,
    roles: ['reader'],
    email: `user-${index}@bench.invalid`,
  };
}

export interface RsaIssuer {
  readonly jwks: { keys: object[] };
  /** The public key as PEM, for verifiers that take a key file (HAProxy's `jwt_verify`). */
  readonly publicKeyPem: string;
  mint(index: number): string;
}

export function createRsaIssuer(): RsaIssuer {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const header = segment({ alg: 'RS256', typ: 'JWT', kid: KID });
  return {
    jwks: { keys: [{ ...(publicKey.export({ format: 'jwk' }) as object), kid: KID, alg: 'RS256', use: 'sig' }] },
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    mint: (index) => signed(header, segment(claims(RS_ISSUER, index)), (input) => sign('sha256', input, privateKey as KeyObject)),
  };
}

const HS_HEADER = segment({ alg: 'HS256', typ: 'JWT' });

export function mintHs256(index: number): string {
  return signed(HS_HEADER, segment(claims(HS_ISSUER, index)), (input) => createHmac('sha256', HS_SECRET).update(input).digest());
}

function signed(header: string, payload: string, signature: (input: Buffer) => Buffer): string {
  const input = `${header}.${payload}`;
  return `${input}.${signature(Buffer.from(input)).toString('base64url')}`;
}
