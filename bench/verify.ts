/**
 * What one token verification costs, stage by stage, beside a bare `crypto.verify` of the same signature: where a
 * token-cache miss spends its time besides the signature itself. Every stage runs over the same distinct tokens
 * (2,000 by default, as in the bench's many-tokens scenario); each figure is the median of 9 passes, in CPU µs per
 * token (CPU time, so that other processes on a shared machine barely move it).
 *
 *   node --import tsx bench/verify.ts [--alg RS256|PS256|ES256|EdDSA|HS256] [--tokens 2000]
 *
 * `full miss` is Authenticator.verify with the token cache off (every call verifies), `full hit` a cached token;
 * `overhead` is the full miss less bare crypto.verify, measured in alternating passes: what authgate adds to the
 * signature check.
 */
import { constants, createHmac, createPublicKey, createSecretKey, generateKeyPairSync, sign, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compactVerify, importJWK, type JWK } from 'jose';
import { JwtAuthenticator as Authenticator } from '../src/mechanisms/authenticators/jwt/authenticator.js';
import { buildIdentity, compileClaimsValidator } from '../src/mechanisms/authenticators/jwt/claims.js';
import { MAX_TOKEN_LENGTH } from '../src/http/bearer.js';
import { decodeSegment, isCanonicalBase64url, memoizedHeader, readHeader, scanJsonMembers, signingInputEnd } from '../src/mechanisms/authenticators/jwt/jws.js';
import { VerificationKey } from '../src/mechanisms/authenticators/jwt/key-set.js';
import { estimateEntryBytes, TokenCache, tokenDigest } from '../src/mechanisms/authenticators/jwt/token-cache.js';
import { loadConfig } from '../src/config/load.js';
import type { IssuerConfig } from '../src/config/types.js';
import { createLogger } from '../src/observability/log.js';
import { Metrics } from '../src/observability/metrics.js';
import { AUDIENCE, HS_SECRET, RS_ISSUER } from './lib/tokens.js';

const { values } = parseArgs({ options: { alg: { type: 'string', default: 'RS256' }, tokens: { type: 'string', default: '2000' } } });
const ALG = values.alg;
const COUNT = Number(values.tokens);
const ROUNDS = 9;
const KID = 'bench-1';

interface Signer {
  /** The public JWK the gateway is given; undefined for HS256, which gets the secret. */
  readonly jwk: JWK | undefined;
  sign(input: Buffer): Buffer;
  /** crypto.verify (or an HMAC comparison) with everything prepared: the floor of any verifier. */
  bareVerify(input: Buffer, signature: Buffer): boolean;
}

function asymmetric(privateKey: KeyObject, publicKey: KeyObject, hash: string | null, options: object = {}): Signer {
  const verifyWith = { key: publicKey, ...options };
  return {
    jwk: publicKey.export({ format: 'jwk' }) as JWK,
    sign: (input) => sign(hash, input, { key: privateKey, ...options }),
    bareVerify: (input, signature) => verify(hash, input, verifyWith, signature),
  };
}

function signer(alg: string): Signer {
  switch (alg) {
    case 'RS256': {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      return asymmetric(privateKey, publicKey, 'sha256');
    }
    case 'PS256': {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      return asymmetric(privateKey, publicKey, 'sha256', { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    }
    case 'ES256': {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      return asymmetric(privateKey, publicKey, 'sha256', { dsaEncoding: 'ieee-p1363' });
    }
    case 'EdDSA': {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      return asymmetric(privateKey, publicKey, null);
    }
    case 'HS256': {
      const hmac = (input: Buffer) => createHmac('sha256', HS_SECRET).update(input).digest();
      return { jwk: undefined, sign: hmac, bareVerify: (input, signature) => timingSafeEqual(hmac(input), signature) };
    }
    default:
      throw new Error('--alg: one of RS256, PS256, ES256, EdDSA, HS256');
  }
}

const keys = signer(ALG);
const segment = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const HEADER = segment({ alg: ALG, typ: 'JWT', kid: KID });
const nowS = Math.floor(Date.now() / 1000);
const tokens = Array.from({ length: COUNT }, (_, index) => {
  const claims = { iss: RS_ISSUER, aud: AUDIENCE, sub: `user-${index}`, jti: `bench-${index}`, iat: nowS, exp: nowS + 3600, roles: ['reader'], email: `user-${index}@bench.invalid` };
  const input = `${HEADER}.${segment(claims)}`;
  return `${input}.${keys.sign(Buffer.from(input)).toString('base64url')}`;
});

/** The issuer as the gateway's own config loader builds it, keys from a JWKS file (or the secret). */
async function issuerConfig(): Promise<IssuerConfig> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-bench-verify-'));
  try {
    if (keys.jwk) await writeFile(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...keys.jwk, kid: KID, alg: ALG, use: 'sig' }] }));
    const source = keys.jwk ? 'jwks_file: jwks.json' : `secret: ${HS_SECRET}`;
    const file = join(dir, 'gateway.yaml');
    await writeFile(file, `version: 1
issuers:
  bench: { issuer: "${RS_ISSUER}", ${source}, audiences: [${AUDIENCE}], algorithms: [${ALG}], claims: { subject: sub, email: email, roles: roles } }
upstreams: { api: { url: "http://127.0.0.1:1" } }
routes: [{ name: api, match: { path: /** }, upstream: api }]
`);
    const issuer = (await loadConfig(file)).config?.issuers.get('bench');
    if (!issuer) throw new Error('bench config invalid');
    // The keys are read on start, relative to the config file: resolve it before the directory goes.
    return issuer.keys.kind === 'jwks_file' ? { ...issuer, keys: { kind: 'jwks_file', path: join(dir, 'jwks.json') } } : issuer;
  } finally {
    setTimeout(() => void rm(dir, { recursive: true, force: true }), 5000).unref();
  }
}

/** CPU µs of this process (all threads) so far: unlike wall time, barely moved by other processes on the machine. */
function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/** CPU µs per token of one pass of `stage` over every token, repeated until it has taken at least 20 ms. */
async function pass(stage: (index: number) => unknown, prepare?: () => void): Promise<number> {
  let spent = 0;
  let calls = 0;
  while (spent < 20_000) {
    prepare?.();
    const started = cpuMicros();
    for (let index = 0; index < COUNT; index++) await stage(index);
    spent += cpuMicros() - started;
    calls += COUNT;
  }
  return spent / calls;
}

const median = (samples: number[]): number => samples.sort((a, b) => a - b)[samples.length >> 1] as number;

/** Median CPU µs per token over ROUNDS passes; `prepare` runs untimed before each. */
async function micros(stage: (index: number) => unknown, prepare?: () => void): Promise<number> {
  const samples: number[] = [];
  for (let round = 0; round < ROUNDS; round++) samples.push(await pass(stage, prepare));
  return median(samples);
}

/**
 * `base` and `measured` in alternating passes, with the median of their per-round difference: the machine's
 * other load then weighs on both sides of the difference alike.
 */
async function paired(base: (index: number) => unknown, measured: (index: number) => unknown): Promise<[number, number, number]> {
  const [bases, results, differences]: [number[], number[], number[]] = [[], [], []];
  for (let round = 0; round < ROUNDS; round++) {
    const [a, b] = [await pass(base), await pass(measured)];
    bases.push(a);
    results.push(b);
    differences.push(b - a);
  }
  return [median(bases), median(results), median(differences)];
}

const issuer = await issuerConfig();
const deps = { logger: createLogger('silent'), metrics: new Metrics() };
const uncached = new Authenticator(new Map([['bench', issuer]]), { ...deps, tokenCacheBytes: 0 });
const cached = new Authenticator(new Map([['bench', issuer]]), deps);
await Promise.all([uncached.start(), cached.start()]);
for (const token of tokens) if (!(await cached.verify(token, undefined)).ok) throw new Error('a bench token was refused');

// What each stage works on, prepared untimed so that every stage is timed alone.
const token = (index: number) => tokens[index] as string;
const firstDots = tokens.map((text) => text.indexOf('.'));
const secondDots = tokens.map((text) => text.lastIndexOf('.'));
const payloadTexts = tokens.map((text, index) => decodeSegment(text, (firstDots[index] as number) + 1, secondDots[index] as number) as string);
const signingInputs = tokens.map((text, index) => Buffer.from(text.slice(0, secondDots[index])));
const signatures = tokens.map((text, index) => Buffer.from(text.slice((secondDots[index] as number) + 1), 'base64url'));
const digests = tokens.map((text) => tokenDigest(text));
const key = new VerificationKey(ALG, keys.jwk ? createPublicKey({ key: keys.jwk, format: 'jwk' }) : createSecretKey(Buffer.from(HS_SECRET)));
const joseKey = keys.jwk ? await importJWK(keys.jwk, ALG) : new TextEncoder().encode(HS_SECRET);
const validateClaims = compileClaimsValidator(issuer);
const keyVersion = { generation: 0, usableUntilMs: Number.POSITIVE_INFINITY };
const nowMs = Date.now();
let payloads: Record<string, unknown>[] = [];
let cache = new TokenCache<unknown>();
const parsePayloads = () => {
  payloads = payloadTexts.map((text) => JSON.parse(text) as Record<string, unknown>);
};
parsePayloads();

const stages: [name: string, micros: number][] = [];
const time = async (name: string, stage: (index: number) => unknown, prepare?: () => void) => {
  stages.push([name, await micros(stage, prepare)]);
};
await time('token digest (cache key)', (i) => tokenDigest(token(i)));
await time('split (length, alphabet, dots)', (i) => token(i).length <= MAX_TOKEN_LENGTH && signingInputEnd(token(i)));
await time('canonical check', (i) => {
  const text = token(i);
  const [first, second] = [firstDots[i] as number, secondDots[i] as number];
  return isCanonicalBase64url(text, 0, first) && isCanonicalBase64url(text, first + 1, second) && isCanonicalBase64url(text, second + 1, text.length);
});
await time('header checks (a header seen before)', (i) => memoizedHeader(token(i), firstDots[i] as number));
const firstSight = await micros((i) => readHeader(token(i), firstDots[i] as number));
await time('payload decode + JSON.parse', (i) => JSON.parse(decodeSegment(token(i), (firstDots[i] as number) + 1, secondDots[i] as number) as string));
await time('duplicate-claim scan', (i) => scanJsonMembers(payloadTexts[i] as string));
await time('signature (authgate: decode + verify)', (i) => {
  const text = token(i);
  const second = secondDots[i] as number;
  return key.verifies(Buffer.from(text.slice(0, second), 'latin1'), Buffer.from(text.slice(second + 1), 'base64url'));
});
await time('claims', (i) => validateClaims(payloads[i] as Record<string, unknown>, 'JWT', nowMs));
await time('identity build', (i) => buildIdentity(issuer, payloads[i] as Record<string, unknown>), parsePayloads);
await time('cache insert', (i) => cache.set(digests[i] as string, i, nowMs + 60_000, keyVersion, estimateEntryBytes(token(i).length)), () => {
  cache = new TokenCache<unknown>();
});
const [bare, miss, overhead] = await paired(
  (i) => keys.bareVerify(signingInputs[i] as Buffer, signatures[i] as Buffer),
  (i) => uncached.verify(token(i), undefined),
);
const jose = await micros((i) => compactVerify(token(i), joseKey, { algorithms: [ALG] }));
const hit = await micros((i) => cached.verify(token(i), undefined));
uncached.close();
cached.close();

const sum = stages.reduce((total, [, value]) => total + value, 0);
const rows: [string, number][] = [
  ...stages,
  ['sum of the stages', sum],
  ['full miss (Authenticator.verify, cache off)', miss],
  ['bare crypto.verify (everything prepared)', bare],
  ['overhead: full miss - bare crypto.verify (median of the rounds)', overhead],
  ['full hit (Authenticator.verify, cached)', hit],
  ['not in the sum: header checks at first sight (decode, scan, parse, check)', firstSight],
  ['not in the sum: jose compactVerify (WebCrypto)', jose],
];
const width = Math.max(...rows.map(([name]) => name.length));
process.stdout.write(`${ALG}, ${COUNT} distinct tokens of ${token(0).length} characters, node ${process.version}; CPU µs per token, median of ${ROUNDS}\n\n`);
for (const [name, value] of rows) process.stdout.write(`${name.padEnd(width)}  ${value.toFixed(2).padStart(8)}\n`);
