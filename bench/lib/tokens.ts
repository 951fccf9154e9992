/**
 * Token minting with node:crypto alone: RS256 for the JWKS-backed issuers, HS256 for the million-token memory run
 * (one HMAC per token, cheap enough to mint on the fly in the load generator), and DPoP proofs (ES256), one per
 * request as a DPoP client makes them.
 */
import { createHash, createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

export const AUDIENCE = 'bench-api';
export const RS_ISSUER = 'https://idp.bench.invalid/';
export const HS_ISSUER = 'https://hs.bench.invalid/';
/** The same RSA key as RS_ISSUER, for tokens bound to a DPoP key. */
export const DPOP_ISSUER = 'https://dpop.bench.invalid/';
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
    jti: `bench-${issuer === HS_ISSUER ? 'hs' : 'rs'}-${index}`,
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
  /** A token of DPOP_ISSUER bound (`cnf.jkt`) to the DPoP key with thumbprint `jkt`. */
  mintBound(index: number, jkt: string): string;
}

export function createRsaIssuer(): RsaIssuer {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const header = segment({ alg: 'RS256', typ: 'JWT', kid: KID });
  return {
    jwks: { keys: [{ ...(publicKey.export({ format: 'jwk' }) as object), kid: KID, alg: 'RS256', use: 'sig' }] },
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    mint: (index) => signed(header, segment(claims(RS_ISSUER, index)), (input) => sign('sha256', input, privateKey as KeyObject)),
    mintBound: (index, jkt) =>
      signed(header, segment({ ...claims(DPOP_ISSUER, index), cnf: { jkt } }), (input) => sign('sha256', input, privateKey as KeyObject)),
  };
}

export interface DpopSigner {
  /** RFC 7638 thumbprint of the proof key: the `cnf.jkt` of the tokens bound to it. */
  readonly jkt: string;
  /** A fresh proof (new jti, iat now) for one request with `token`. */
  proof(htm: string, htu: string, token: string): string;
}

/** An ES256 DPoP key and proofs made synchronously with node:crypto, cheap enough for every request of a load. */
export function createDpopSigner(): DpopSigner {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { crv, kty, x, y } = publicKey.export({ format: 'jwk' });
  // RFC 7638: the required members in lexicographic order, no whitespace.
  const jkt = createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url');
  const header = segment({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } });
  let issued = 0;
  let lastToken = '';
  let lastAth = '';
  return {
    jkt,
    proof(htm, htu, token) {
      if (token !== lastToken) [lastToken, lastAth] = [token, createHash('sha256').update(token).digest('base64url')];
      const payload = segment({ htm, htu, ath: lastAth, jti: `bench-proof-${process.pid}-${issued++}`, iat: Math.floor(Date.now() / 1000) });
      return signed(header, payload, (input) => sign('sha256', input, { key: privateKey, dsaEncoding: 'ieee-p1363' }));
    },
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
