import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertionMiddleware, createAssertionVerifier, type AssertionClaims } from '../../src/assertion/index.js';
import { loadConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { signRaw } from '../helpers/tokens.js';

const SECRET = 'assertion-test-secret-that-is-long-enough-0123';
const ISSUER = 'https://gateway.test';

/** A service behind the gateway that trusts nothing but a verified assertion (the exported middleware). */
interface VerifyingUpstream {
  readonly url: string;
  readonly origin: string;
  /** Requests the middleware let through, with their verified claims. */
  readonly accepted: { claims: AssertionClaims; assertion: string }[];
  /** How many requests it refused with 401. */
  refused: number;
  /** Until set, every request is refused (the verifier needs the gateway's address). */
  keys: JSONWebKeySet | undefined;
  close(): Promise<void>;
}

async function startVerifyingUpstream(): Promise<VerifyingUpstream> {
  const state = { accepted: [] as VerifyingUpstream['accepted'], refused: 0, keys: undefined as JSONWebKeySet | undefined };
  let origin = '';
  const server: Server = createServer((req: IncomingMessage & { authgate?: AssertionClaims }, res) => {
    const verifier = createAssertionVerifier({ keys: state.keys ?? { keys: [] }, issuer: ISSUER, audience: origin });
    res.on('finish', () => {
      if (res.statusCode === 401) state.refused += 1;
    });
    assertionMiddleware(verifier)(req, res, () => {
      state.accepted.push({ claims: req.authgate as AssertionClaims, assertion: req.headers['x-authgate-assertion'] as string });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(req.headers));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(state, {
    url: origin,
    origin,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  });
}

function pem(type: 'ec' | 'ed25519' | 'rsa'): string {
  const options = type === 'ec' ? { namedCurve: 'P-256' } : type === 'rsa' ? { modulusLength: 2048 } : {};
  const { privateKey } = generateKeyPairSync(type as 'ec', options as { namedCurve: string });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

function token(subject: string, claims: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000);
  return signRaw('HS256', SECRET, { alg: 'HS256', typ: 'JWT' }, { iss: 'https://idp.test', aud: 'api', sub: subject, iat: now, exp: now + 600, ...claims });
}

function yaml(orders: string, billing: string, keyFiles: readonly string[]): string {
  return `
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s, trusted_proxies: [127.0.0.1/32], forward_auth: nginx }
admin: { listen: 127.0.0.1:0 }
issuers:
  main: { issuer: https://idp.test, secret: ${SECRET}, algorithms: [HS256], audiences: [api] }
upstreams:
  orders: { url: ${orders}, timeout: 2s }
  billing: { url: ${billing}, timeout: 2s }
identity:
  headers: { X-User-Id: subject }
  assertion:
    keys: [${keyFiles.map((file) => `{ file: ${file} }`).join(', ')}]
    issuer: ${ISSUER}
    ttl: 2m
    fields: [subject, roles, issuer_name, claims.tenant]
routes:
  - { name: public, match: { path: /public/** }, upstream: orders, auth: none }
  - { name: orders, match: { path: /orders/** }, upstream: orders }
  - { name: orders-too, match: { path: /orders2/** }, upstream: orders }
  - { name: billing, match: { path: /billing/** }, upstream: billing }
`;
}

let dir: string;
let files: Record<'ec' | 'ed' | 'rsa', string>;
let orders: VerifyingUpstream;
let billing: VerifyingUpstream;
let gw: TestGateway;

async function jwks(url: string): Promise<{ body: JSONWebKeySet; cacheControl: string | null; contentType: string | null }> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return { body: (await res.json()) as JSONWebKeySet, cacheControl: res.headers.get('cache-control'), contentType: res.headers.get('content-type') };
}

async function get(path: string, headers: Record<string, string>): Promise<Response> {
  return fetch(`${gw.url}${path}`, { headers });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'authgate-assertion-'));
  files = { ec: join(dir, 'ec.pem'), ed: join(dir, 'ed.pem'), rsa: join(dir, 'rsa.pem') };
  await Promise.all([writeFile(files.ec, pem('ec')), writeFile(files.ed, pem('ed25519')), writeFile(files.rsa, pem('rsa'))]);
  [orders, billing] = await Promise.all([startVerifyingUpstream(), startVerifyingUpstream()]);
  gw = await startTestGateway(yaml(orders.url, billing.url, [files.ec]));
  const published = (await jwks(`${gw.url}/_authgate/jwks.json`)).body;
  orders.keys = published;
  billing.keys = published;
});
afterAll(async () => {
  await gw?.close();
  await orders?.close();
  await billing?.close();
});

describe('the signed assertion through a real gateway', () => {
  it('an upstream verifying with the exported verifier accepts the gateway\'s assertion: iss, aud, sub, route, fields', async () => {
    const res = await get('/orders/1', { authorization: `Bearer ${token('alice', { roles: ['admin'], tenant: 't1' })}` });
    expect(res.status).toBe(200);
    const { claims } = orders.accepted.at(-1)!;
    expect(claims).toMatchObject({ iss: ISSUER, aud: orders.origin, sub: 'alice', route: 'orders', issuer_name: 'main', 'claims.tenant': 't1' });
  });

  it('the lifetime is the ttl, never past the credential\'s own expiry', async () => {
    const exp = Math.floor(Date.now() / 1000) + 30;
    expect((await get('/orders/short', { authorization: `Bearer ${token('carol', { exp })}` })).status).toBe(200);
    expect(orders.accepted.at(-1)!.claims.exp).toBe(exp);
    expect((await get('/orders/long', { authorization: `Bearer ${token('dave')}` })).status).toBe(200);
    const { claims } = orders.accepted.at(-1)!;
    expect(claims.exp! - claims.iat!).toBe(120);
  });

  it('one assertion serves every request of an identity on a route; another route gets its own', async () => {
    const bearer = `Bearer ${token('erin')}`;
    for (const path of ['/orders/a', '/orders/b', '/orders2/c']) expect((await get(path, { authorization: bearer })).status).toBe(200);
    const [a, b, c] = orders.accepted.slice(-3);
    expect(a!.assertion).toBe(b!.assertion);
    expect(c!.assertion).not.toBe(a!.assertion);
    expect(c!.claims.route).toBe('orders-too');
  });

  it('an assertion made for one upstream is refused by another (aud), and a forged one is refused', async () => {
    await get('/orders/replay', { authorization: `Bearer ${token('frank')}` });
    const stolen = orders.accepted.at(-1)!.assertion;
    const before = billing.refused;
    const replayed = await fetch(`${billing.url}/direct`, { headers: { 'x-authgate-assertion': stolen } });
    expect(replayed.status).toBe(401);
    const stranger = createPrivateEc();
    const forged = signRaw('ES256', stranger, { alg: 'ES256', kid: orders.keys!.keys[0]!.kid!, typ: 'JWT' }, { ...decodePayloadOf(stolen) });
    const ordersBefore = orders.refused;
    expect((await fetch(`${orders.url}/direct`, { headers: { 'x-authgate-assertion': forged } })).status).toBe(401);
    expect(billing.refused).toBe(before + 1);
    expect(orders.refused).toBe(ordersBefore + 1);
  });

  it('a client-sent copy of the header is stripped on every route, whatever its spelling', async () => {
    const public_ = await rawRequest(gw.port, { target: '/public/x', headers: [['X-Authgate-Assertion', 'client-made'], ['X_Authgate_Assertion', 'client-made']] });
    // The public route forwards no assertion at all: the verifying upstream refuses, having seen none.
    expect(public_.status).toBe(401);
    expect(public_.json().error_description).toBe('missing x-authgate-assertion');
    const res = await get('/orders/own', { authorization: `Bearer ${token('grace')}`, 'x-authgate-assertion': 'client-made' });
    expect(res.status).toBe(200);
    expect(orders.accepted.at(-1)!.assertion).not.toBe('client-made');
  });

  it('publishes the keys at {reserved_prefix}/jwks.json and on the admin /jwks.json, with Cache-Control', async () => {
    const listener = await jwks(`${gw.url}/_authgate/jwks.json`);
    const admin = await jwks(`${gw.adminUrl}/jwks.json`);
    expect(admin.body).toEqual(listener.body);
    expect(listener.cacheControl).toMatch(/max-age=\d+/);
    expect(listener.contentType).toBe('application/jwk-set+json');
    expect(listener.body.keys).toHaveLength(1);
    expect(listener.body.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(listener.body.keys[0]).not.toHaveProperty('d');
    expect((await fetch(`${gw.url}/_authgate/jwks.json`, { method: 'POST' })).status).toBe(405);
  });

  it('a forward-auth answer carries the assertion header too', async () => {
    const res = await rawRequest(gw.port, {
      target: '/_authgate/verify',
      headers: [['X-Original-URI', '/billing/x'], ['X-Original-Method', 'GET'], ['Authorization', `Bearer ${token('heidi')}`]],
    });
    expect(res.status).toBe(200);
    const verifier = createAssertionVerifier({ keys: billing.keys!, issuer: ISSUER, audience: billing.origin });
    expect(await verifier.verify(res.headers['x-authgate-assertion']!)).toMatchObject({ sub: 'heidi', route: 'billing' });
  });
});

describe('key rotation', () => {
  it('publishes old and new keys, the first listed signs, and both kinds of assertion verify', async () => {
    const oldKid = orders.keys!.keys[0]!.kid;
    await get('/orders/before', { authorization: `Bearer ${token('ivan')}` });
    const signedByOld = orders.accepted.at(-1)!.assertion;
    await reload([files.ed, files.ec]);
    const published = (await jwks(`${gw.adminUrl}/jwks.json`)).body;
    expect(published.keys.map((key) => key.kid)).toEqual([expect.any(String), oldKid]);
    expect(published.keys[0]!.alg).toBe('EdDSA');
    orders.keys = published;
    expect((await get('/orders/after', { authorization: `Bearer ${token('judy')}` })).status).toBe(200);
    const signedByNew = orders.accepted.at(-1)!.assertion;
    expect(decodeProtectedHeader(signedByNew).kid).toBe(published.keys[0]!.kid);
    const verifier = createAssertionVerifier({ keys: published, issuer: ISSUER, audience: orders.origin });
    await expect(verifier.verify(signedByOld)).resolves.toMatchObject({ sub: 'ivan' });
    await reload([files.rsa]);
    const rsa = (await jwks(`${gw.url}/_authgate/jwks.json`)).body;
    expect(rsa.keys.map((key) => key.alg)).toEqual(['RS256']);
  });
});

async function reload(keyFiles: readonly string[]): Promise<void> {
  await writeFile(gw.file, yaml(orders.url, billing.url, keyFiles));
  const loaded = await loadConfig(gw.file);
  expect(loaded.problems).toEqual([]);
  await gw.gateway.reload(loaded.config as GatewayConfig);
}

function createPrivateEc() {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}

function decodePayloadOf(jws: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}
