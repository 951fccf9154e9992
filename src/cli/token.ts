import type { JWTPayload } from 'jose';
import { KeyFileError, loadSigningKey, publicJwks } from '../assertion/keys.js';
import { parseDuration } from '../config/duration.js';
import { signToken, type TokenSigner } from '../testing/dev-issuer.js';
import { parse, UsageError, type Io } from './io.js';

export const TOKEN_USAGE = `usage: authgate token --key FILE --issuer ISS --audience AUD [--claims JSON] [--ttl 1h] [--kid KID]
       authgate token --key FILE --jwks [--kid KID]

Mints a signed access token for tests and scripts and prints it. The algorithm follows the PEM private key
(RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA; kid defaults to its RFC 7638 thumbprint). Without --key the
HS256 secret is read from $AUTHGATE_TOKEN_SECRET (at least 32 bytes). --claims is a JSON object merged over
iss, aud, iat, exp and jti; --ttl defaults to 1h. --jwks prints the key's public half as a JWK Set instead, with
the kid tokens carry: the jwks_file for an issuer that signs with this key.`;

const HS256_MIN_SECRET_BYTES = 32;

const OPTIONS = {
  key: { type: 'string' },
  issuer: { type: 'string' },
  audience: { type: 'string' },
  claims: { type: 'string' },
  ttl: { type: 'string' },
  kid: { type: 'string' },
  jwks: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface TokenRequest {
  readonly keyFile: string | undefined;
  readonly issuer: string;
  readonly audience: string;
  readonly claims: JWTPayload;
  readonly ttlSeconds: number;
  readonly kid: string | undefined;
}

function required(flag: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

function claimsObject(text: string | undefined): JWTPayload {
  if (text === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--claims is not JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError('--claims must be a JSON object');
  return parsed as JWTPayload;
}

function ttl(text: string | undefined): number {
  if (text === undefined) return 3600;
  const ms = parseDuration(text);
  if (ms === undefined || ms < 1000) throw new UsageError(`--ttl must be a duration such as 30s, 10m or 1h, got "${text}"`);
  return Math.floor(ms / 1000);
}

function tokenRequest(values: ReturnType<typeof parse<typeof OPTIONS>>['values']): TokenRequest {
  return {
    keyFile: values.key,
    issuer: required('--issuer', values.issuer),
    audience: required('--audience', values.audience),
    claims: claimsObject(values.claims),
    ttlSeconds: ttl(values.ttl),
    kid: values.kid,
  };
}

async function signerFor(request: TokenRequest, env: NodeJS.ProcessEnv): Promise<TokenSigner> {
  if (request.keyFile !== undefined) {
    const key = await loadSigningKey(request.keyFile);
    return { key: key.privateKey, algorithm: key.alg, kid: request.kid ?? key.kid, issuer: request.issuer };
  }
  const secret = env.AUTHGATE_TOKEN_SECRET;
  if (secret === undefined || secret === '') throw new UsageError('give --key FILE, or set AUTHGATE_TOKEN_SECRET for HS256');
  if (Buffer.byteLength(secret) < HS256_MIN_SECRET_BYTES) {
    throw new UsageError(`AUTHGATE_TOKEN_SECRET must be at least ${HS256_MIN_SECRET_BYTES} bytes for HS256`);
  }
  return { key: new TextEncoder().encode(secret), algorithm: 'HS256', kid: request.kid, issuer: request.issuer };
}

/** The JWK Set that verifies tokens signed with the key in `keyFile`: its public half, `kid`, `alg` and `use`. */
async function jwksOf(keyFile: string, kid: string | undefined): Promise<string> {
  const key = await loadSigningKey(keyFile);
  return JSON.stringify(publicJwks([{ ...key, publicJwk: { ...key.publicJwk, kid: kid ?? key.kid } }]), null, 2);
}

/** `authgate token`: prints the token; 1 when the key cannot be read or used, UsageError (main: 2) otherwise. */
export async function runToken(argv: string[], io: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parse(argv, OPTIONS);
  if (values.help) {
    io.stdout.write(`${TOKEN_USAGE}\n`);
    return 0;
  }
  try {
    if (values.jwks) {
      io.stdout.write(`${await jwksOf(required('--key', values.key), values.kid)}\n`);
      return 0;
    }
    const request = tokenRequest(values);
    const signer = await signerFor(request, env);
    const token = await signToken(signer, request.claims, { audience: request.audience, ttl: request.ttlSeconds });
    io.stdout.write(`${token}\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof KeyFileError)) throw error;
    io.stderr.write(`authgate token: ${error.message}\n`);
    return 1;
  }
}
