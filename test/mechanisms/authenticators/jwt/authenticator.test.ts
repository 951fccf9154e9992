import { constants, createHmac, sign as cryptoSign } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { JwtAuthenticator as Authenticator, type AuthenticatorDeps } from '../../../../src/mechanisms/authenticators/jwt/authenticator.js';
import type { VerifyResult } from '../../../../src/mechanisms/authenticators/jwt/types.js';
import type { IssuerConfig } from '../../../../src/config/types.js';
import { createLogger } from '../../../../src/observability/log.js';
import { Metrics } from '../../../../src/observability/metrics.js';
import { issuerConfigFor, startIdp, type Idp, type IdpOptions, type JwksBehaviour } from '../../../helpers/idp.js';
import { b64url, segments, signRaw } from '../../../helpers/tokens.js';

/** JWKS lifecycle, happy paths and the verified-token cache, against real IdPs and a controllable clock. */

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Harness {
  readonly idp: Idp;
  readonly auth: Authenticator;
  readonly metrics: Metrics;
  /** Moves the Authenticator's clock (not the IdP's, which mints with real time). */
  advance(ms: number): void;
}

async function harness(
  options: { idp?: IdpOptions; issuer?: Partial<IssuerConfig>; deps?: Partial<AuthenticatorDeps>; behaviour?: JwksBehaviour } = {},
): Promise<Harness> {
  const idp = await startIdp(options.idp);
  cleanups.push(() => idp.close());
  if (options.behaviour) idp.setJwksBehaviour(options.behaviour);
  let clock = Date.now();
  const metrics = new Metrics();
  const auth = new Authenticator(new Map([['idp', issuerConfigFor(idp, options.issuer)]]), {
    logger: createLogger('silent'),
    metrics,
    now: () => clock,
    ...options.deps,
  });
  cleanups.push(() => auth.close());
  await auth.start();
  return { idp, auth, metrics, advance: (ms) => (clock += ms) };
}

async function counter(metric: Metrics['tokenCache'] | Metrics['jwksRefresh'], labels: Record<string, string>): Promise<number> {
  const { values } = await metric.get();
  return values.find((value) => Object.entries(labels).every(([name, label]) => (value.labels as Record<string, unknown>)[name] === label))?.value ?? 0;
}

function expectDenied(result: VerifyResult, reason: string, status = 401): void {
  expect(result.ok ? 'accepted' : { status: result.status, reason: result.reason }).toEqual({ status, reason });
}

function identityOf(result: VerifyResult) {
  if (!result.ok) throw new Error(`expected a verified token, got ${result.reason}`);
  return result.identity;
}

describe('happy paths', () => {
  it.each([
    ['RS256', 'rsa'],
    ['PS256', 'rsa-pss'],
    ['ES256', 'ec'],
    ['EdDSA', 'ed'],
  ] as const)('%s', async (alg, key) => {
    const { idp, auth } = await harness();
    const identity = identityOf(
      await auth.verify(idp.sign({ sub: 'alice', email: 'a@example.com', roles: ['admin'], scope: 'read write' }, { key }), undefined),
    );
    expect(identity).toMatchObject({ subject: 'alice', email: 'a@example.com', roles: ['admin'], scopes: ['read', 'write'] });
    expect(identity.issuer.name).toBe('idp');
    expect(alg).toBe(idp.key(key).alg);
  });

  it('HS256 with a configured secret, as raw UTF-8 bytes', async () => {
    const secret = 'a-shared-secret-of-at-least-32-bytes!';
    const config = issuerConfigFor(
      { issuer: 'https://hs.test/', audience: 'https://api.test', jwksUri: '' },
      { keys: { kind: 'secret', secret }, algorithms: ['HS256'] },
    );
    const auth = new Authenticator(new Map([['hs', config]]), { logger: createLogger('silent'), metrics: new Metrics() });
    cleanups.push(() => auth.close());
    await auth.start();
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'https://hs.test/', aud: 'https://api.test', sub: 'svc', iat: now, exp: now + 60 };
    expect(identityOf(await auth.verify(signRaw('HS256', secret, { alg: 'HS256', typ: 'JWT' }, claims), undefined)).subject).toBe('svc');
    expectDenied(await auth.verify(signRaw('HS256', `${secret}x`, { alg: 'HS256' }, claims), undefined), 'bad_signature');
    expectDenied(await auth.verify(signRaw('HS384', secret, { alg: 'HS384' }, claims), undefined), 'alg_not_allowed');
    expect(auth.issuerStatus().get('hs')?.state).toBe('ok');
  });

  it('keys found through OIDC discovery', async () => {
    const { idp, auth } = await harness({ idp: { issuerPath: '/realms/test' }, issuer: { keys: { kind: 'discovery' } } });
    expect(idp.issuer).toMatch(/\/realms\/test$/);
    expect((await auth.verify(idp.sign(), undefined)).ok).toBe(true);
    expect(idp.discoveryFetches).toBe(1);
  });

  it('keys from a JWKS file', async () => {
    const idp = await startIdp();
    cleanups.push(() => idp.close());
    const dir = await mkdtemp(join(tmpdir(), 'authgate-jwks-'));
    cleanups.push(() => rm(dir, { recursive: true }));
    const path = join(dir, 'keys.json');
    await writeFile(path, JSON.stringify({ keys: idp.keys.map((key) => key.jwk) }));
    const auth = new Authenticator(new Map([['idp', issuerConfigFor(idp, { keys: { kind: 'jwks_file', path } })]]), {
      logger: createLogger('silent'),
      metrics: new Metrics(),
    });
    cleanups.push(() => auth.close());
    await auth.start();
    expect((await auth.verify(idp.sign({}, { key: 'ed' }), undefined)).ok).toBe(true);
    expect(idp.jwksFetches).toBe(0);
  });
});

describe('signature encodings: only the one each algorithm defines', () => {
  /** The token's signing input with `signature` (raw bytes) in place of its own. */
  function resigned(token: string, signature: Buffer): string {
    const [header, payload] = segments(token);
    return `${header}.${payload}.${b64url(signature)}`;
  }
  const inputOf = (token: string): Buffer => Buffer.from(token.slice(0, token.lastIndexOf('.')));

  it('ES256: raw r||s of 64 bytes only; the same signature DER-encoded, or a byte longer or shorter, is refused', async () => {
    const { idp, auth } = await harness();
    const token = idp.sign({}, { key: 'ec' });
    const raw = Buffer.from(segments(token)[2], 'base64url');
    const der = cryptoSign('sha256', inputOf(token), { key: idp.key('ec').privateKey, dsaEncoding: 'der' });
    expect((await auth.verify(token, undefined)).ok).toBe(true);
    expectDenied(await auth.verify(resigned(token, der), undefined), 'bad_signature');
    expectDenied(await auth.verify(resigned(token, Buffer.concat([raw, Buffer.alloc(1)])), undefined), 'bad_signature');
    expectDenied(await auth.verify(resigned(token, Buffer.concat([Buffer.alloc(1), raw])), undefined), 'bad_signature');
    expectDenied(await auth.verify(resigned(token, raw.subarray(0, 63)), undefined), 'bad_signature');
  });

  it('PS256: a salt as long as the hash only; a valid PSS signature with another salt length is refused', async () => {
    const { idp, auth } = await harness();
    const token = idp.sign({}, { key: 'rsa-pss' });
    const withSalt = (saltLength: number) =>
      cryptoSign('sha256', inputOf(token), { key: idp.key('rsa-pss').privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
    expect((await auth.verify(resigned(token, withSalt(32)), undefined)).ok).toBe(true);
    expectDenied(await auth.verify(resigned(token, withSalt(0)), undefined), 'bad_signature');
    expectDenied(await auth.verify(resigned(token, withSalt(64)), undefined), 'bad_signature');
  });

  it('EdDSA: a signature a byte short or long is refused, not an error', async () => {
    const { idp, auth } = await harness();
    const token = idp.sign({}, { key: 'ed' });
    const raw = Buffer.from(segments(token)[2], 'base64url');
    expectDenied(await auth.verify(resigned(token, raw.subarray(0, 63)), undefined), 'bad_signature');
    expectDenied(await auth.verify(resigned(token, Buffer.concat([raw, Buffer.alloc(1)])), undefined), 'bad_signature');
  });

  it('HS256: the full 32-byte HMAC only; a prefix of it, or it with a byte added, is refused', async () => {
    const secret = 'a-shared-secret-of-at-least-32-bytes!';
    const config = issuerConfigFor(
      { issuer: 'https://hs.test/', audience: 'https://api.test', jwksUri: '' },
      { keys: { kind: 'secret', secret }, algorithms: ['HS256'] },
    );
    const auth = new Authenticator(new Map([['hs', config]]), { logger: createLogger('silent'), metrics: new Metrics(), tokenCacheBytes: 0 });
    cleanups.push(() => auth.close());
    await auth.start();
    const now = Math.floor(Date.now() / 1000);
    const token = signRaw('HS256', secret, { alg: 'HS256' }, { iss: 'https://hs.test/', aud: 'https://api.test', iat: now, exp: now + 60 });
    const mac = createHmac('sha256', secret).update(inputOf(token)).digest();
    expect((await auth.verify(token, undefined)).ok).toBe(true);
    expectDenied(await auth.verify(resigned(token, mac.subarray(0, 16)), undefined), 'bad_signature');
    expectDenied(await auth.verify(resigned(token, Buffer.concat([mac, Buffer.alloc(1)])), undefined), 'bad_signature');
  });
});

describe('JWKS lifecycle', () => {
  it('not ready before start: tokens get 503 while keys are loading', async () => {
    const idp = await startIdp();
    cleanups.push(() => idp.close());
    const auth = new Authenticator(new Map([['idp', issuerConfigFor(idp)]]), { logger: createLogger('silent'), metrics: new Metrics() });
    cleanups.push(() => auth.close());
    expect(auth.issuerStatus().get('idp')?.state).toBe('loading');
    expectDenied(await auth.verify(idp.sign(), undefined), 'keys_unavailable', 503);
    await auth.start();
    expect((await auth.verify(idp.sign(), undefined)).ok).toBe(true);
  });

  it('a rotated key is picked up on the first token with the new kid', async () => {
    const { idp, auth, advance, metrics } = await harness();
    expect(idp.jwksFetches).toBe(1);
    const rotated = idp.rotate('rsa');
    advance(30_000);
    expect((await auth.verify(idp.sign({}, { key: rotated }), undefined)).ok).toBe(true);
    expect(idp.jwksFetches).toBe(2);
    expect(await counter(metrics.jwksRefresh, { issuer: 'idp', result: 'ok' })).toBe(2);
  });

  it('within min_refetch_interval of the last fetch an unknown kid is refused without fetching', async () => {
    const { idp, auth, advance } = await harness();
    const rotated = idp.rotate('rsa');
    advance(29_000);
    expectDenied(await auth.verify(idp.sign({}, { key: rotated }), undefined), 'unknown_kid');
    expect(idp.jwksFetches).toBe(1);
  });

  it('a flood of 200 random kids causes at most one JWKS fetch', async () => {
    const { idp, auth, advance } = await harness();
    advance(60_000);
    const rsa = idp.key('rsa');
    const flood = Array.from({ length: 200 }, (_, i) => signRaw('RS256', rsa.privateKey, { alg: 'RS256', kid: `random-${i}-${Math.random()}` }, idp.claims()));
    const concurrent = await Promise.all(flood.slice(0, 100).map((token) => auth.verify(token, undefined)));
    const sequential: VerifyResult[] = [];
    for (const token of flood.slice(100)) sequential.push(await auth.verify(token, undefined));
    for (const result of [...concurrent, ...sequential]) expectDenied(result, 'unknown_kid');
    expect(idp.jwksFetches).toBe(2);
  });

  it('with the IdP down, cached keys keep working until stale_if_error after the last success, then 503', async () => {
    const { idp, auth, advance } = await harness({ issuer: { jwksCache: { maxAgeMs: 60_000, minRefetchIntervalMs: 1000, staleIfErrorMs: 600_000 } } });
    const token = idp.sign({ exp: Math.floor(Date.now() / 1000) + 3600 });
    idp.setJwksBehaviour('error-500');
    advance(120_000);
    // An unknown kid forces a refetch, which fails: the known keys are kept.
    expectDenied(await auth.verify(idp.sign({}, { key: idp.generateKey('rsa') }), undefined), 'unknown_kid');
    expect(idp.jwksFetches).toBe(2);
    expect(auth.issuerStatus().get('idp')).toMatchObject({ state: 'stale', error: `JWKS ${idp.jwksUri}: status 500` });
    expect((await auth.verify(token, undefined)).ok).toBe(true);
    advance(480_000);
    expectDenied(await auth.verify(token, undefined), 'keys_unavailable', 503);
    expect(auth.issuerStatus().get('idp')?.state).toBe('unavailable');
  });

  it.each<[JwksBehaviour | 'rsa-1024', string]>([
    ['error-500', 'status 500'],
    ['redirect', 'redirect (302) not followed'],
    ['html', 'content-type is not JSON'],
    ['hang', 'timed out after 300 ms'],
    ['oversized', 'body larger than 1048576 bytes'],
    ['rsa-1024', 'no key in the JWK Set is usable for [RS256, PS256, ES256, EdDSA] (kid rsa-1024-'],
  ])('no usable keys at all (JWKS %s) → 503', async (behaviour, error) => {
    const weak = behaviour === 'rsa-1024';
    const { idp, auth, metrics } = await harness({
      idp: weak ? { keys: ['rsa-1024'] } : {},
      behaviour: weak ? 'ok' : behaviour,
      deps: { fetchLimits: { timeoutMs: 300, maxBytes: 1024 * 1024 } },
    });
    expect(auth.issuerStatus().get('idp')).toMatchObject({ state: 'unavailable', error: expect.stringContaining(error), lastRefresh: undefined });
    expectDenied(await auth.verify(idp.sign(), undefined), 'keys_unavailable', 503);
    expect(await counter(metrics.jwksRefresh, { issuer: 'idp', result: 'error' })).toBeGreaterThanOrEqual(1);
  });

  it.each([
    ['plain http off loopback', 'http://keys.example.com/jwks.json', 'jwks_uri must be an https URL (plain http only to 127.0.0.1, [::1] or localhost)'],
    ['credentials', 'https://user:secret@keys.example.com/jwks.json', 'jwks_uri must not contain credentials'],
    ['not a URL', 'keys.example.com/jwks.json', 'jwks_uri "keys.example.com/jwks.json" is not a URL'],
  ])('a discovery document whose jwks_uri has %s is refused as a configured one would be', async (_case, discoveryJwksUri, error) => {
    const { auth, idp } = await harness({ idp: { discoveryJwksUri }, issuer: { keys: { kind: 'discovery' } } });
    expect(auth.issuerStatus().get('idp')?.error).toBe(`discovery ${idp.url}/.well-known/openid-configuration: ${error}`);
    expect(idp.jwksFetches).toBe(0);
  });

  it('a discovery document naming another issuer is refused', async () => {
    const idp = await startIdp();
    cleanups.push(() => idp.close());
    const auth = new Authenticator(
      new Map([['idp', issuerConfigFor({ ...idp, issuer: `${idp.url}` }, { keys: { kind: 'discovery' } })]]),
      { logger: createLogger('silent'), metrics: new Metrics() },
    );
    cleanups.push(() => auth.close());
    await auth.start();
    expect(auth.issuerStatus().get('idp')?.error).toBe(
      `discovery document names another issuer: expected "${idp.url}", got "${idp.url}/"`,
    );
  });

  it('a shorter Cache-Control max-age schedules the background refresh earlier than max_age', async () => {
    // max_age is 10 min; max-age=1 must bring the refresh down to under a second.
    const { idp } = await harness({ idp: { cacheControl: 'public, max-age=1' } });
    await idp.nextJwksFetch();
    expect(idp.jwksFetches).toBe(2);
  });

  it('skips keys it must not use: other use, 1024-bit RSA, a disallowed alg, symmetric keys', async () => {
    const { idp, auth, advance } = await harness({ idp: { keys: ['rsa'] } });
    const weak = idp.generateKey('rsa-1024');
    const encryption = idp.generateKey('rsa');
    const ec = idp.generateKey('ec');
    idp.publish(weak);
    idp.publish({ ...encryption, jwk: { ...encryption.jwk, use: 'enc' } });
    idp.publish({ ...ec, jwk: { ...ec.jwk, alg: 'ES384' } });
    idp.publish({ ...ec, kid: 'oct', jwk: { kty: 'oct', k: 'c2VjcmV0', kid: 'oct', alg: 'HS256' } });
    advance(30_000);
    expectDenied(await auth.verify(idp.sign({}, { key: weak }), undefined), 'unknown_kid');
    expectDenied(await auth.verify(idp.sign({}, { key: encryption }), undefined), 'unknown_kid');
    expectDenied(await auth.verify(idp.sign({}, { key: ec }), undefined), 'unknown_kid');
    expectDenied(await auth.verify(signRaw('HS256', 'secret', { alg: 'HS256', kid: 'oct' }, idp.claims()), undefined), 'alg_not_allowed');
    expect(idp.jwksFetches).toBe(2);
    expect((await auth.verify(idp.sign(), undefined)).ok).toBe(true);
  });

  it('a reload keeps the key sets of unchanged issuers and refetches changed ones', async () => {
    const { idp, auth } = await harness();
    const deps = { logger: createLogger('silent'), metrics: new Metrics() };
    const reloaded = new Authenticator(new Map([['idp', issuerConfigFor(idp, { audiences: ['https://api.test', 'https://other.test'] })]]), deps, auth);
    cleanups.push(() => reloaded.close());
    await reloaded.start();
    expect(idp.jwksFetches).toBe(1);
    auth.close();
    expect((await reloaded.verify(idp.sign({ aud: 'https://other.test' }), undefined)).ok).toBe(true);

    const changed = new Authenticator(new Map([['idp', issuerConfigFor(idp, { algorithms: ['RS256'] })]]), deps, reloaded);
    cleanups.push(() => changed.close());
    await changed.start();
    expect(idp.jwksFetches).toBe(2);
  });

  it('a reload that changes how keys are cached, with the identity provider down, keeps the keys that work', async () => {
    const { idp, auth } = await harness();
    idp.setJwksBehaviour('error-500');
    const deps = { logger: createLogger('silent'), metrics: new Metrics() };
    const reloaded = new Authenticator(new Map([['idp', issuerConfigFor(idp, { jwksCache: { maxAgeMs: 540_000, minRefetchIntervalMs: 0, staleIfErrorMs: 3_600_000 } })]]), deps, auth);
    cleanups.push(() => reloaded.close());
    await reloaded.start();
    expect(idp.jwksFetches).toBe(2);
    auth.close();
    expect((await reloaded.verify(idp.sign(), undefined)).ok).toBe(true);
    expect(reloaded.issuerStatus().get('idp')?.state).toBe('stale');
  });

  it('a reload that adds an algorithm: the runtime before it, refetching for an unknown kid, leaves the new keys alone', async () => {
    const refetchAtWill = { maxAgeMs: 600_000, minRefetchIntervalMs: 0, staleIfErrorMs: 86_400_000 };
    const { idp, auth } = await harness({ idp: { keys: ['rsa', 'ec'] }, issuer: { algorithms: ['RS256'], jwksCache: refetchAtWill } });
    const deps = { logger: createLogger('silent'), metrics: new Metrics() };
    const reloaded = new Authenticator(new Map([['idp', issuerConfigFor(idp, { algorithms: ['RS256', 'ES256'] })]]), deps, auth);
    cleanups.push(() => reloaded.close());
    await reloaded.start();
    expect((await reloaded.verify(idp.sign({}, { key: 'ec' }), undefined)).ok).toBe(true);
    // Anyone can make the old runtime refetch: a token naming a kid it does not know, no valid signature needed.
    expectDenied(await auth.verify(idp.sign({}, { key: 'rsa', kid: 'made-up' }), undefined), 'unknown_kid');
    expect((await reloaded.verify(idp.sign({ jti: 'after-the-refetch' }, { key: 'ec' }), undefined)).ok).toBe(true);
  });

  it('a reload that adds an algorithm the keys held already fit makes it usable (a shared secret, HS384 beside HS256)', async () => {
    const secret = 'a-shared-secret-of-at-least-48-bytes-for-hs384!!';
    const issuer = { issuer: 'https://hs.test/', audience: 'https://api.test', jwksUri: '' };
    const deps = { logger: createLogger('silent'), metrics: new Metrics() };
    const before = new Authenticator(new Map([['hs', issuerConfigFor(issuer, { keys: { kind: 'secret', secret }, algorithms: ['HS256'] })]]), deps);
    cleanups.push(() => before.close());
    await before.start();
    const after = new Authenticator(new Map([['hs', issuerConfigFor(issuer, { keys: { kind: 'secret', secret }, algorithms: ['HS256', 'HS384'] })]]), deps, before);
    cleanups.push(() => after.close());
    await after.start();
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'https://hs.test/', aud: 'https://api.test', sub: 'svc', iat: now, exp: now + 60 };
    expect((await after.verify(signRaw('HS384', secret, { alg: 'HS384', typ: 'JWT' }, claims), undefined)).ok).toBe(true);
    expect((await before.verify(signRaw('HS256', secret, { alg: 'HS256', typ: 'JWT' }, claims), undefined)).ok).toBe(true);
  });

  it('a reload reads a key file again: a key taken out of it verifies nothing more, tokens cached reloads ago included', async () => {
    const idp = await startIdp({ keys: ['rsa', 'ec'] });
    cleanups.push(() => idp.close());
    const dir = await mkdtemp(join(tmpdir(), 'authgate-jwks-'));
    cleanups.push(() => rm(dir, { recursive: true }));
    const path = join(dir, 'keys.json');
    await writeFile(path, JSON.stringify({ keys: idp.keys.map((key) => key.jwk) }));
    const config = issuerConfigFor(idp, { keys: { kind: 'jwks_file', path } });
    const deps = { logger: createLogger('silent'), metrics: new Metrics() };
    const auth = new Authenticator(new Map([['idp', config]]), deps);
    cleanups.push(() => auth.close());
    await auth.start();
    const cached = idp.sign({}, { key: 'ec' });
    expect((await auth.verify(cached, undefined)).ok).toBe(true);
    // A reload that changes nothing: the token stays verified, no burst of verifications.
    const unchanged = new Authenticator(new Map([['idp', config]]), deps, auth);
    cleanups.push(() => unchanged.close());
    await unchanged.start();
    auth.close();
    expect(await counter(deps.metrics.tokenCache, { result: 'hit' })).toBe(0);
    expect((await unchanged.verify(cached, undefined)).ok).toBe(true);
    expect(await counter(deps.metrics.tokenCache, { result: 'hit' })).toBe(1);
    // The EC key is compromised: the operator takes it out of the file and reloads an unchanged config again.
    await writeFile(path, JSON.stringify({ keys: [idp.key('rsa').jwk] }));
    const reloaded = new Authenticator(new Map([['idp', config]]), deps, unchanged);
    cleanups.push(() => reloaded.close());
    await reloaded.start();
    // The runtime before the reload, still finishing its requests, verifies with the keys just read too.
    expectDenied(await unchanged.verify(idp.sign({}, { key: 'ec' }), undefined), 'unknown_kid');
    expectDenied(await reloaded.verify(cached, undefined), 'unknown_kid');
    expectDenied(await reloaded.verify(idp.sign({}, { key: 'ec' }), undefined), 'unknown_kid');
    expect((await reloaded.verify(idp.sign({}, { key: 'rsa' }), undefined)).ok).toBe(true);
  });
});

describe('verified-token cache', () => {
  it('a second verification of the same token is a cache hit with the same identity', async () => {
    const { idp, auth, metrics } = await harness();
    const token = idp.sign({ roles: ['admin'] });
    const first = identityOf(await auth.verify(token, undefined));
    const second = identityOf(await auth.verify(token, undefined));
    expect(second).toBe(first);
    expect(await counter(metrics.tokenCache, { result: 'miss' })).toBe(1);
    expect(await counter(metrics.tokenCache, { result: 'hit' })).toBe(1);
  });

  it('a cached token still honours the route issuer list', async () => {
    const { idp, auth } = await harness();
    const token = idp.sign();
    expect((await auth.verify(token, undefined)).ok).toBe(true);
    expectDenied(await auth.verify(token, ['someone-else']), 'issuer_not_allowed');
    expect((await auth.verify(token, ['idp'])).ok).toBe(true);
  });

  it('a cached token lapses at exp (plus skew)', async () => {
    const { idp, auth, advance, metrics } = await harness();
    const token = idp.sign({ exp: Math.floor(Date.now() / 1000) + 60 });
    expect((await auth.verify(token, undefined)).ok).toBe(true);
    advance(91_000);
    expectDenied(await auth.verify(token, undefined), 'expired');
    expect(await counter(metrics.tokenCache, { result: 'hit' })).toBe(0);
  });

  it('a cached token is verified again once the key that signed it was rotated out', async () => {
    const { idp, auth, advance, metrics } = await harness();
    const token = idp.sign();
    expect((await auth.verify(token, undefined)).ok).toBe(true);
    const rotated = idp.rotate('rsa');
    advance(30_000);
    expect((await auth.verify(idp.sign({}, { key: rotated }), undefined)).ok).toBe(true);
    expectDenied(await auth.verify(token, undefined), 'unknown_kid');
    expect(await counter(metrics.tokenCache, { result: 'hit' })).toBe(0);
  });

  it('is bounded in bytes: large tokens past the budget evict the least recently used, and small ones fit more', async () => {
    const budget = 128 * 1024;
    const { idp, auth, metrics } = await harness({ deps: { tokenCacheBytes: budget } });
    const large = (index: number) => idp.sign({ sub: `large-${index}`, groups: Array.from({ length: 140 }, (_, g) => `group-${index}-${g}-0123456789abcdefghijklmn`) });
    const tokens = Array.from({ length: 30 }, (_, index) => large(index));
    expect(tokens[0]?.length).toBeGreaterThan(7000);
    for (const token of tokens) expect((await auth.verify(token, undefined)).ok).toBe(true);
    const hitsBefore = await counter(metrics.tokenCache, { result: 'hit' });
    // 30 tokens of ~7.5 KB do not fit in 128 KiB: the last ones are cached, the first ones were evicted.
    expect((await auth.verify(tokens[29] as string, undefined)).ok).toBe(true);
    expect((await auth.verify(tokens[0] as string, undefined)).ok).toBe(true);
    expect(await counter(metrics.tokenCache, { result: 'hit' })).toBe(hitsBefore + 1);

    const small = Array.from({ length: 30 }, (_, index) => idp.sign({ sub: `small-${index}` }));
    for (const token of small) expect((await auth.verify(token, undefined)).ok).toBe(true);
    const smallHitsBefore = await counter(metrics.tokenCache, { result: 'hit' });
    for (const token of small) expect((await auth.verify(token, undefined)).ok).toBe(true);
    expect(await counter(metrics.tokenCache, { result: 'hit' })).toBe(smallHitsBefore + 30);
  });

  it('failed verifications are not cached', async () => {
    const { idp, auth, metrics } = await harness();
    const token = idp.sign({ aud: 'https://other.test' });
    expectDenied(await auth.verify(token, undefined), 'audience');
    expectDenied(await auth.verify(token, undefined), 'audience');
    expect(await counter(metrics.tokenCache, { result: 'miss' })).toBe(2);
  });
});
