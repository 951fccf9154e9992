import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen, closeServer } from '../../src/lib/listen.js';
import {
  AssertionSigner,
  assertionMiddleware,
  createAssertionVerifier,
  KeyFileError,
  loadSigningKeys,
  publicJwks,
  type AssertionIdentity,
  type SigningKey,
} from '../../src/assertion/index.js';

let dir: string;

async function keyFile(name: string, privateKey: KeyObject): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return file;
}

function identity(subject: string, overrides: Partial<AssertionIdentity> = {}): AssertionIdentity {
  const claims: Record<string, unknown> = { email: `${subject}@example.com`, roles: ['reader'], tenant: 't1' };
  return {
    subject,
    issuer: 'https://idp.example.com',
    claims,
    exp: Math.floor(Date.now() / 1000) + 3600,
    field: (name) => (name === 'issuer' ? 'https://idp.example.com' : claims[name.replace(/^claims\./, '')]),
    ...overrides,
  };
}

/** A JWKS document on loopback HTTP whose keys the test can change (rotation). */
async function startJwksServer(keys: SigningKey[]): Promise<{ url: string; publish(keys: SigningKey[]): void; close(): Promise<void> }> {
  let body = JSON.stringify(publicJwks(keys));
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
  const origin = await listen(server, { host: '127.0.0.1', port: 0 });
  return { url: `${origin}/jwks.json`, publish: (next) => (body = JSON.stringify(publicJwks(next))), close: () => closeServer(server) };
}

interface Upstream {
  readonly origin: string;
  /** Requests that got past the middleware. */
  readonly reached: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** A real service verifying assertions with the exported verifier and middleware. */
async function startUpstream(jwksUri: string, issuer = 'https://gateway.test'): Promise<Upstream> {
  const reached: Array<Record<string, unknown>> = [];
  let middleware: ReturnType<typeof assertionMiddleware> | undefined;
  const server: Server = createServer((req, res) => {
    middleware!(req, res, () => {
      const claims = (req as typeof req & { authgate: Record<string, unknown> }).authgate;
      reached.push(claims);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(claims));
    });
  });
  const origin = await listen(server, { host: '127.0.0.1', port: 0 });
  // The audience is this service's own origin, known once it listens.
  middleware = assertionMiddleware(createAssertionVerifier({ jwksUri, issuer, audience: origin }));
  return { origin, reached, close: () => closeServer(server) };
}

function signer(keys: SigningKey[], overrides: Partial<ConstructorParameters<typeof AssertionSigner>[0]> = {}): AssertionSigner {
  return new AssertionSigner({ keys, issuer: 'https://gateway.test', ttlSeconds: 120, fields: ['subject', 'email', 'roles', 'issuer', 'claims.tenant'], ...overrides });
}

async function call(upstream: Upstream, assertion?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(upstream.origin, { headers: assertion === undefined ? {} : { 'x-authgate-assertion': assertion } });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

let ec: SigningKey;
let ed: SigningKey;
let rsa: SigningKey;
let stranger: SigningKey;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'authgate-assertion-'));
  [ec, ed, rsa] = await loadSigningKeys([
    await keyFile('ec.pem', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
    await keyFile('ed.pem', generateKeyPairSync('ed25519').privateKey),
    await keyFile('rsa.pem', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey),
  ]) as [SigningKey, SigningKey, SigningKey];
  [stranger] = (await loadSigningKeys([await keyFile('stranger.pem', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey)])) as [SigningKey];
});

describe('signing keys', () => {
  it('take the algorithm from the key and the RFC 7638 thumbprint as kid; all are published, in order', async () => {
    expect([ec.alg, ed.alg, rsa.alg]).toEqual(['ES256', 'EdDSA', 'RS256']);
    for (const key of [ec, ed, rsa]) {
      const { kid, alg, use, ...bare } = key.publicJwk;
      expect({ kid, alg, use }).toEqual({ kid: key.kid, alg: key.alg, use: 'sig' });
      expect(key.kid).toBe(await calculateJwkThumbprint(bare));
      expect(bare).not.toHaveProperty('d');
    }
    expect(publicJwks([ec, ed, rsa]).keys.map((jwk) => jwk.kid)).toEqual([ec.kid, ed.kid, rsa.kid]);
  });

  it('refuse a key type that is not RSA, P-256 or Ed25519, a missing file, and an empty list', async () => {
    const p384 = await keyFile('p384.pem', generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey);
    await expect(loadSigningKeys([p384])).rejects.toThrow(`${p384}: a ec secp384r1 key`);
    await expect(loadSigningKeys([join(dir, 'nope.pem')])).rejects.toThrow(KeyFileError);
    await expect(loadSigningKeys([])).rejects.toThrow('at least one signing key');
  });
});

describe('assertions verified by a real upstream over a real JWKS URL', () => {
  let jwks: Awaited<ReturnType<typeof startJwksServer>>;
  let upstream: Upstream;
  let other: Upstream;

  beforeAll(async () => {
    jwks = await startJwksServer([ec, ed, rsa]);
    upstream = await startUpstream(jwks.url);
    other = await startUpstream(jwks.url);
  });
  afterAll(async () => {
    await Promise.all([upstream.close(), other.close(), jwks.close()]);
  });

  it.each(['ec', 'ed', 'rsa'] as const)('accepts an assertion signed with the %s key and hands over its claims', async (name) => {
    const key = { ec, ed, rsa }[name];
    const jws = await signer([key]).assertion(identity('alice'), 'orders', upstream.origin);
    expect(decodeProtectedHeader(jws)).toEqual({ alg: key.alg, kid: key.kid, typ: 'JWT' });
    const { status, body } = await call(upstream, jws);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      iss: 'https://gateway.test',
      aud: upstream.origin,
      sub: 'alice',
      route: 'orders',
      email: 'alice@example.com',
      roles: ['reader'],
      issuer: 'https://idp.example.com',
      'claims.tenant': 't1',
    });
    expect((body.exp as number) - (body.iat as number)).toBe(120);
  });

  it('leaves out a field the caller does not have, an empty list included', async () => {
    const bare = identity('carol', { field: (name) => (name === 'roles' ? [] : undefined) });
    const payload = decodeJwt(await signer([ec]).assertion(bare, 'orders', upstream.origin));
    expect(payload.sub).toBe('carol');
    for (const field of ['email', 'roles', 'issuer', 'claims.tenant']) expect(payload).not.toHaveProperty(field);
  });

  it('never outlives the credential', async () => {
    const exp = Math.floor(Date.now() / 1000) + 30;
    expect(decodeJwt(await signer([ec]).assertion(identity('alice', { exp }), 'orders', upstream.origin)).exp).toBe(exp);
  });

  it('refuses a missing, forged, misdirected or expired assertion; the handler never runs', async () => {
    const before = upstream.reached.length;
    const forged = await signer([stranger]).assertion(identity('mallory'), 'orders', upstream.origin);
    const forgedKid = forged.replace(/^[^.]+/, Buffer.from(JSON.stringify({ alg: 'ES256', kid: ec.kid })).toString('base64url'));
    const forOther = await signer([ec]).assertion(identity('alice'), 'orders', other.origin);
    const longAgo = () => Date.now() - 3600_000;
    const expired = await signer([ec], { clock: longAgo }).assertion(identity('alice', { exp: undefined }), 'orders', upstream.origin);
    const otherIssuer = await signer([ec], { issuer: 'https://elsewhere.test' }).assertion(identity('alice'), 'orders', upstream.origin);
    const hmac = await new SignJWT({ route: 'orders' })
      .setProtectedHeader({ alg: 'HS256', kid: ec.kid })
      .setIssuer('https://gateway.test')
      .setAudience(upstream.origin)
      .setSubject('mallory')
      .setIssuedAt()
      .setExpirationTime('1m')
      .sign(new TextEncoder().encode(JSON.stringify(ec.publicJwk)));
    for (const assertion of [undefined, '', 'not.a.jws', forged, forgedKid, forOther, expired, otherIssuer, hmac]) {
      const { status, body } = await call(upstream, assertion);
      expect({ assertion, status, error: body.error }).toEqual({ assertion, status: 401, error: 'invalid_assertion' });
    }
    const valid = await signer([ec]).assertion(identity('alice'), 'orders', upstream.origin);
    const twice = await fetch(upstream.origin, { headers: [['x-authgate-assertion', valid], ['x-authgate-assertion', valid]] });
    expect(twice.status).toBe(401);
    expect(upstream.reached.length).toBe(before);
    expect((await call(other, forOther)).status).toBe(200);
  });

  it('rotation: old and new published, the new one signs, an old assertion verifies until its key is withdrawn', async () => {
    const old = await signer([ec]).assertion(identity('alice'), 'orders', upstream.origin);
    const rotated = signer([ed, ec]);
    const fresh = await rotated.assertion(identity('alice'), 'orders', upstream.origin);
    expect(decodeProtectedHeader(fresh).kid).toBe(ed.kid);
    jwks.publish([ed, ec]);
    expect((await call(upstream, old)).status).toBe(200);
    expect((await call(upstream, fresh)).status).toBe(200);
    jwks.publish([ed]);
    const restarted = await startUpstream(jwks.url);
    const [oldThere, freshThere] = await Promise.all([
      signer([ec]).assertion(identity('alice'), 'orders', restarted.origin),
      rotated.assertion(identity('alice'), 'orders', restarted.origin),
    ]);
    expect((await call(restarted, oldThere)).status).toBe(401);
    expect((await call(restarted, freshThere)).status).toBe(200);
    expect(restarted.reached).toHaveLength(1);
    await restarted.close();
    jwks.publish([ec, ed, rsa]);
  });

  it('createAssertionVerifier also takes the keys themselves, and wants exactly one key source', async () => {
    const verifier = createAssertionVerifier({ keys: publicJwks([ec]), issuer: 'https://gateway.test', audience: upstream.origin });
    const claims = await verifier.verify(await signer([ec]).assertion(identity('bob'), 'r', upstream.origin));
    expect(claims).toMatchObject({ sub: 'bob', route: 'r' });
    expect(() => createAssertionVerifier({ issuer: 'i', audience: 'a' })).toThrow('exactly one of jwksUri or keys');
  });
});

describe('AssertionSigner reuse', () => {
  it('signs once per identity, route and audience until half the ttl has passed', async () => {
    let now = Date.now();
    const reuse = signer([ec], { clock: () => now, ttlSeconds: 120 });
    const first = await Promise.all(Array.from({ length: 50 }, () => reuse.assertion(identity('alice'), 'orders', 'https://a.test')));
    expect(new Set(first).size).toBe(1);
    expect(reuse.signatureCount).toBe(1);
    await reuse.assertion(identity('alice'), 'billing', 'https://a.test');
    await reuse.assertion(identity('alice'), 'orders', 'https://b.test');
    await reuse.assertion(identity('bob'), 'orders', 'https://a.test');
    await reuse.assertion(identity('alice', { field: (name) => (name === 'roles' ? ['admin'] : undefined) }), 'orders', 'https://a.test');
    expect(reuse.signatureCount).toBe(5);
    now += 59_000;
    expect(await reuse.assertion(identity('alice'), 'orders', 'https://a.test')).toBe(first[0]);
    now += 1_000;
    expect(await reuse.assertion(identity('alice'), 'orders', 'https://a.test')).not.toBe(first[0]);
    expect(reuse.signatureCount).toBe(6);
  });

  it('renews by the credential expiry when that comes first', async () => {
    let now = Date.now();
    const renewing = signer([ec], { clock: () => now });
    const shortLived = identity('carol', { exp: Math.floor(now / 1000) + 10 });
    const first = await renewing.assertion(shortLived, 'r', 'https://a.test');
    now += 9_000;
    expect(await renewing.assertion(shortLived, 'r', 'https://a.test')).toBe(first);
    now += 2_000;
    await renewing.assertion(shortLived, 'r', 'https://a.test');
    expect(renewing.signatureCount).toBe(2);
  });

  it('keeps a bounded cache: recently used assertions stay, the others are dropped and signed again', async () => {
    const bounded = signer([ec], { cacheSize: 4 });
    const use = (subject: string) => bounded.assertion(identity(subject), 'r', 'https://a.test');
    for (const subject of ['a', 'b', 'a', 'c', 'a', 'd']) await use(subject);
    expect(bounded.signatureCount).toBe(4);
    await use('b');
    expect(bounded.signatureCount).toBe(5);
    await use('a');
    expect(bounded.signatureCount).toBe(5);
  });
});
