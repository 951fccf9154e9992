import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { calculateJwkThumbprint, decodeProtectedHeader, exportJWK, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'authgate-token-'));
});

async function token(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | undefined; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const code = await main(['token', ...args], { stdout, stderr }, env);
  return { code, out, err };
}

async function pemFile(name: string, privateKey: KeyObject): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return file;
}

const KEY_TYPES = [
  { alg: 'RS256', pair: () => generateKeyPairSync('rsa', { modulusLength: 2048 }) },
  { alg: 'ES256', pair: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }) },
  { alg: 'EdDSA', pair: () => generateKeyPairSync('ed25519') },
] as const;

describe('authgate token', () => {
  it.each(KEY_TYPES)('mints a $alg token from a PEM key, verifiable with its public key', async ({ alg, pair }) => {
    const { privateKey, publicKey } = pair();
    const file = await pemFile(`${alg}.pem`, privateKey);
    const before = Math.floor(Date.now() / 1000);
    const { code, out } = await token(['--key', file, '--issuer', 'https://iss.test', '--audience', 'api', '--claims', '{"sub":"alice","roles":["admin"]}', '--ttl', '10m']);
    expect(code).toBe(0);
    const { payload, protectedHeader } = await jwtVerify(out.trim(), publicKey, { issuer: 'https://iss.test', audience: 'api', algorithms: [alg] });
    expect(protectedHeader).toEqual({ alg, typ: 'at+jwt', kid: await calculateJwkThumbprint(await exportJWK(publicKey)) });
    expect(payload).toMatchObject({ sub: 'alice', roles: ['admin'] });
    expect(payload.exp! - payload.iat!).toBe(600);
    expect(payload.iat).toBeGreaterThanOrEqual(before);
    expect(typeof payload.jti).toBe('string');
  });

  it('takes --kid over the thumbprint', async () => {
    const file = await pemFile('kid.pem', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    const { out } = await token(['--key', file, '--issuer', 'i', '--audience', 'a', '--kid', 'key-2026']);
    expect(decodeProtectedHeader(out.trim()).kid).toBe('key-2026');
  });

  it('refuses a key type it cannot sign with (exit 1, the file named)', async () => {
    const file = await pemFile('p384.pem', generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey);
    const result = await token(['--key', file, '--issuer', 'i', '--audience', 'a']);
    expect(result).toMatchObject({ code: 1, out: '' });
    expect(result.err).toContain(`${file}: a ec secp384r1 key`);
  });

  it('reports an unreadable or non-PEM key file with exit 1', async () => {
    const text = join(dir, 'not-a-key.pem');
    await writeFile(text, 'hello');
    for (const file of [join(dir, 'missing.pem'), text]) {
      const result = await token(['--key', file, '--issuer', 'i', '--audience', 'a']);
      expect(result).toMatchObject({ code: 1, out: '' });
      expect(result.err).toContain(file);
    }
  });

  it.each([
    [[], '--issuer is required'],
    [['--issuer', 'i'], '--audience is required'],
    [['--issuer', 'i', '--audience', 'a'], 'give --key FILE, or set AUTHGATE_TOKEN_SECRET'],
    [['--issuer', 'i', '--audience', 'a', '--claims', '[1]'], '--claims must be a JSON object'],
    [['--issuer', 'i', '--audience', 'a', '--claims', '{'], '--claims is not JSON'],
    [['--issuer', 'i', '--audience', 'a', '--ttl', '1 hour'], '--ttl must be a duration'],
    [['--issuer', 'i', '--audience', 'a', '--bogus'], "Unknown option '--bogus'"],
  ])('exits 2 on a usage error: %j', async (args, message) => {
    const result = await token(args);
    expect(result).toMatchObject({ code: 2, out: '' });
    expect(result.err).toContain(message);
  });

  it('refuses an HS256 secret shorter than 32 bytes (exit 2)', async () => {
    const result = await token(['--issuer', 'i', '--audience', 'a'], { AUTHGATE_TOKEN_SECRET: 'short' });
    expect(result.code).toBe(2);
    expect(result.err).toContain('at least 32 bytes');
  });

  it('--help prints the usage and exits 0', async () => {
    const result = await token(['--help']);
    expect(result.code).toBe(0);
    expect(result.out).toContain('usage: authgate token --key FILE');
  });
});

describe('an HS256 token from $AUTHGATE_TOKEN_SECRET through a gateway', () => {
  const SECRET = 'token-cli-secret-0123456789-abcdefghijkl';
  let upstream: RecordingUpstream;
  let gateway: TestGateway;

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    gateway = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
issuers:
  scripts: { issuer: https://scripts.test, secret: ${SECRET}, audiences: [api], algorithms: [HS256] }
upstreams:
  api: { url: "${upstream.url}" }
routes:
  - { name: api, match: { path: /api/** }, upstream: api, require: { roles: [ops] } }
`);
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });

  it('passes when the claims meet the route and is refused (upstream untouched) when they do not', async () => {
    const mint = async (claims: string): Promise<string> =>
      (await token(['--issuer', 'https://scripts.test', '--audience', 'api', '--claims', claims], { AUTHGATE_TOKEN_SECRET: SECRET })).out.trim();
    const ops = await fetch(`${gateway.url}/api/x`, { headers: { authorization: `Bearer ${await mint('{"sub":"a","roles":["ops"]}')}` } });
    expect(ops.status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
    const other = await fetch(`${gateway.url}/api/x`, { headers: { authorization: `Bearer ${await mint('{"sub":"b","roles":["dev"]}')}` } });
    expect(other.status).toBe(403);
    expect(upstream.seen).toHaveLength(1);
  });
});

describe('a key pair of your own: authgate token --jwks writes the jwks_file, tokens it mints pass', () => {
  let upstream: RecordingUpstream;
  let gateway: TestGateway;
  let keyFile: string;

  beforeAll(async () => {
    keyFile = await pemFile('own.pem', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
    const jwks = await token(['--key', keyFile, '--jwks']);
    expect(jwks.code).toBe(0);
    await writeFile(join(dir, 'own-jwks.json'), jwks.out);
    upstream = await startRecordingUpstream();
    gateway = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
issuers:
  own: { issuer: https://own.test, jwks_file: ${join(dir, 'own-jwks.json')}, audiences: [api], algorithms: [RS256] }
upstreams:
  api: { url: "${upstream.url}" }
routes:
  - { name: api, match: { path: /api/** }, upstream: api }
`);
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });

  it('prints only the public half, with the kid and alg tokens carry', async () => {
    const { keys } = JSON.parse((await token(['--key', keyFile, '--jwks'])).out) as { keys: Record<string, unknown>[] };
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig', kid: expect.any(String) });
    expect(keys[0]).not.toHaveProperty('d');
  });

  it('a token minted with the same key passes the gateway', async () => {
    const minted = (await token(['--key', keyFile, '--issuer', 'https://own.test', '--audience', 'api', '--claims', '{"sub":"alice"}'])).out.trim();
    const res = await fetch(`${gateway.url}/api/x`, { headers: { authorization: `Bearer ${minted}` } });
    expect(res.status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
  });
});
