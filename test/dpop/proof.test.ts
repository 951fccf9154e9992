import { createHash, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dpopHtu, htuMatches } from '../../src/mechanisms/dpop/htu.js';
import { DpopNonces } from '../../src/mechanisms/dpop/nonce.js';
import { DpopVerifier, type DpopCheck, type DpopFailure, type DpopOptions } from '../../src/mechanisms/dpop/proof.js';
import { MemoryReplayStore, RedisReplayStore } from '../../src/store/replay.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { encodePart, signRaw, unsecured } from '../helpers/tokens.js';

interface ProofKey {
  readonly alg: string;
  readonly privateKey: KeyObject;
  readonly jwk: JWK;
  readonly jkt: string;
}

async function proofKey(type: 'ec' | 'ed25519' | 'rsa' = 'ec'): Promise<ProofKey> {
  const pair = type === 'ec'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = pair.publicKey.export({ format: 'jwk' }) as JWK;
  const alg = type === 'ec' ? 'ES256' : type === 'ed25519' ? 'EdDSA' : 'PS256';
  return { alg, privateKey: pair.privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

const TOKEN = 'an-opaque-or-jwt-access-token';
const HTU = dpopHtu('https', 'API.example.com:443', '/orders/42');
const ath = (token: string): string => createHash('sha256').update(token).digest('base64url');
let key: ProofKey;
let nowMs = Date.now();

beforeAll(async () => {
  key = await proofKey();
});

/** A proof as a client makes it, with claims and header members changed or removed (`undefined`). */
function proof(claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}, signer: ProofKey = key): string {
  const fullHeader = { typ: 'dpop+jwt', alg: signer.alg, jwk: signer.jwk, ...header };
  const fullClaims = { jti: randomUUID(), htm: 'GET', htu: HTU, iat: Math.floor(nowMs / 1000), ath: ath(TOKEN), ...claims };
  return signRaw(signer.alg, signer.privateKey, fullHeader, JSON.parse(JSON.stringify(fullClaims)) as Record<string, unknown>);
}

function verifier(options: Partial<DpopOptions> = {}): DpopVerifier {
  return new DpopVerifier({
    algorithms: ['ES256', 'EdDSA', 'PS256'],
    maxAgeMs: 60_000,
    clockSkewMs: 5_000,
    nonces: undefined,
    replay: new MemoryReplayStore(10_000, () => nowMs),
    nowMs: () => nowMs,
    ...options,
  });
}

function check(v: DpopVerifier, proofText: string, overrides: { method?: string; htu?: string; token?: string; jkt?: unknown } = {}): Promise<DpopCheck> {
  return v.verify({
    proof: proofText,
    method: overrides.method ?? 'GET',
    htu: overrides.htu ?? HTU,
    accessToken: overrides.token ?? TOKEN,
    jkt: 'jkt' in overrides ? overrides.jkt : key.jkt,
  });
}

const refused = (error: string, reason: DpopFailure, detail = '') => ({ ok: false, error, reason, detail: expect.stringContaining(detail) as unknown });

describe('DPoP proof (RFC 9449 §4.3)', () => {
  it.each(['ec', 'ed25519', 'rsa'] as const)('accepts a proof signed with a %s key bound to the token', async (type) => {
    const signer = await proofKey(type);
    expect(await check(verifier(), proof({}, {}, signer), { jkt: signer.jkt })).toEqual({ ok: true });
  });

  it('accepts a proof whose htu carries a query and fragment, and a default port', async () => {
    expect(await check(verifier(), proof({ htu: 'https://api.EXAMPLE.com:443/orders/42?x=1#f' }))).toEqual({ ok: true });
  });

  it('refuses a replayed proof (same jti) on the same instance', async () => {
    const v = verifier();
    const once = proof();
    expect(await check(v, once)).toEqual({ ok: true });
    expect(await check(v, once)).toEqual(refused('invalid_dpop_proof', 'dpop_proof_replayed'));
  });

  it.each<[string, DpopFailure, () => string, Parameters<typeof check>[2]]>([
    ['no proof (no DPoP header)', 'dpop_proof_missing', () => '', {}],
    ['another method', 'dpop_proof_htm', () => proof(), { method: 'POST' }],
    ['another path', 'dpop_proof_htu', () => proof({ htu: 'https://api.example.com/orders/43' }), {}],
    ['another host', 'dpop_proof_htu', () => proof({ htu: 'https://evil.example.com/orders/42' }), {}],
    ['another scheme', 'dpop_proof_htu', () => proof({ htu: 'http://api.example.com/orders/42' }), {}],
    ['an htu that is no URL', 'dpop_proof_htu', () => proof({ htu: 'orders/42' }), {}],
    ['a proof too old', 'dpop_proof_iat', () => proof({ iat: Math.floor((nowMs - 66_000) / 1000) }), {}],
    ['a proof from the future', 'dpop_proof_iat', () => proof({ iat: Math.floor((nowMs + 6_000) / 1000) + 1 }), {}],
    ['no iat', 'dpop_proof_iat', () => proof({ iat: undefined }), {}],
    ['no jti', 'dpop_proof_claims', () => proof({ jti: undefined }), {}],
    ['no ath', 'dpop_proof_ath', () => proof({ ath: undefined }), {}],
    ["another token's ath", 'dpop_proof_ath', () => proof({ ath: ath('another-token') }), {}],
    ['a private key in the jwk header', 'dpop_proof_header', () => proof({}, { jwk: key.privateKey.export({ format: 'jwk' }) }), {}],
    ['no jwk header', 'dpop_proof_header', () => proof({}, { jwk: undefined }), {}],
    ['a jwk of another key type than alg', 'dpop_proof_header', () => proof({}, { alg: 'EdDSA' }), {}],
    ['typ JWT', 'dpop_proof_header', () => proof({}, { typ: 'JWT' }), {}],
    ['a crit header', 'dpop_proof_header', () => proof({}, { crit: ['exp'] }), {}],
    ['alg none (no signature)', 'dpop_proof_malformed', () => unsecured({ jti: 'x', htm: 'GET', htu: HTU, iat: Math.floor(nowMs / 1000), ath: ath(TOKEN) }), {}],
    ['alg none with a jwk and a signature segment', 'dpop_proof_header', () => `${encodePart({ typ: 'dpop+jwt', alg: 'none', jwk: key.jwk })}.${encodePart({ jti: 'x' })}.AAAA`, {}],
    ['HS256 with a symmetric jwk', 'dpop_proof_header', () => signRaw('HS256', 'a-shared-secret-of-32-bytes-long!', { typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: 'YS1zaGFyZWQtc2VjcmV0' } },
      { jti: 'x', htm: 'GET', htu: HTU, iat: Math.floor(nowMs / 1000), ath: ath(TOKEN) }), {}],
    ['an alg outside the list (RS256)', 'dpop_proof_header', () => proof({}, { alg: 'RS256' }), {}],
    ['a signature by another key', 'dpop_proof_signature', () => proof({}, { jwk: key.jwk }, { ...key, privateKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey }), {}],
    ['a repeated claim', 'dpop_proof_malformed', () => signRaw('ES256', key.privateKey, { typ: 'dpop+jwt', alg: 'ES256', jwk: key.jwk }, '{"jti":"a","jti":"b"}'), {}],
    ['a padded segment', 'dpop_proof_malformed', () => proof().replace('.', '=.'), {}],
  ])('refuses %s (invalid_dpop_proof, %s)', async (_name, reason, make, overrides) => {
    expect(await check(verifier(), make(), overrides)).toEqual(refused('invalid_dpop_proof', reason));
  });

  it('refuses a proof by a key other than the one in cnf.jkt (invalid_token)', async () => {
    expect(await check(verifier(), proof(), { jkt: 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs' })).toEqual(refused('invalid_token', 'dpop_key_mismatch'));
    expect(await check(verifier(), proof(), { jkt: { not: 'a string' } })).toEqual(refused('invalid_token', 'dpop_key_mismatch'));
  });

  it('accepts a proof within the clock skew either side', async () => {
    expect(await check(verifier(), proof({ iat: Math.floor((nowMs + 4_000) / 1000) }))).toEqual({ ok: true });
    expect(await check(verifier(), proof({ iat: Math.floor((nowMs - 64_000) / 1000) + 1 }))).toEqual({ ok: true });
  });

  it('refuses a token that is not bound to a key (invalid_token)', async () => {
    expect(await check(verifier(), proof(), { jkt: undefined })).toEqual(refused('invalid_token', 'dpop_token_unbound'));
  });

  it('a header seen before (its key import cached) still gets every later proof checked', async () => {
    const v = verifier();
    expect(await check(v, proof())).toEqual({ ok: true });
    const forger = { ...key, privateKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey };
    expect(await check(v, proof({}, {}, forger))).toEqual(refused('invalid_dpop_proof', 'dpop_proof_signature'));
    expect(await check(v, proof(), { jkt: 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs' })).toEqual(refused('invalid_token', 'dpop_key_mismatch'));
    expect(await check(v, proof({ htm: 'POST' }))).toEqual(refused('invalid_dpop_proof', 'dpop_proof_htm'));
  });

  it('a refused proof does not use up its jti', async () => {
    const v = verifier();
    const jti = randomUUID();
    expect((await check(v, proof({ jti }), { method: 'POST' })).ok).toBe(false);
    expect(await check(v, proof({ jti }))).toEqual({ ok: true });
  });
});

describe('DPoP nonces', () => {
  const SECRET = 'a-nonce-secret-shared-by-every-instance';
  const rotationMs = 60_000;

  it('asks for a nonce (use_dpop_nonce) when the proof has none, and accepts the current one', async () => {
    const nonces = new DpopNonces(SECRET, rotationMs, () => nowMs);
    const v = verifier({ nonces });
    expect(await check(v, proof())).toEqual(refused('use_dpop_nonce', 'dpop_nonce', 'no nonce'));
    expect(await check(v, proof({ nonce: nonces.current() }))).toEqual({ ok: true });
  });

  it('accepts a nonce another instance handed out when they share the secret, not when they do not', async () => {
    const handedOut = new DpopNonces(SECRET, rotationMs, () => nowMs).current();
    expect(await check(verifier({ nonces: new DpopNonces(SECRET, rotationMs, () => nowMs) }), proof({ nonce: handedOut }))).toEqual({ ok: true });
    const stranger = verifier({ nonces: new DpopNonces('another-secret-another-secret-xx', rotationMs, () => nowMs) });
    expect(await check(stranger, proof({ nonce: handedOut }))).toEqual(refused('use_dpop_nonce', 'dpop_nonce', 'not a current one'));
  });

  it('accepts the previous window\'s nonce and hands out the current one with the pass (RFC 9449 §8.2)', async () => {
    const previous = new DpopNonces(SECRET, rotationMs, () => nowMs - rotationMs).current();
    const nonces = new DpopNonces(SECRET, rotationMs, () => nowMs);
    const v = verifier({ nonces });
    expect(await check(v, proof({ nonce: previous }))).toEqual({ ok: true, nonce: nonces.current() });
    expect(await check(v, proof({ nonce: nonces.current() }))).toEqual({ ok: true });
    // The next window's, from an instance whose clock runs ahead, is newer than what this one would hand out.
    const next = new DpopNonces(SECRET, rotationMs, () => nowMs + rotationMs).current();
    expect(await check(v, proof({ nonce: next }))).toEqual({ ok: true });
  });

  it('rotates: the previous window is still accepted, older ones are not', () => {
    let clock = 1_000_000 * rotationMs;
    const nonces = new DpopNonces(SECRET, rotationMs, () => clock);
    const first = nonces.current();
    clock += rotationMs;
    expect(nonces.current()).not.toBe(first);
    expect(nonces.accepts(first)).toBe(true);
    clock += rotationMs;
    expect(nonces.accepts(first)).toBe(false);
  });

  it("accepts the next window's nonce from an instance whose clock runs ahead, not the one after", () => {
    const clock = 1_000_000 * rotationMs;
    const behind = new DpopNonces(SECRET, rotationMs, () => clock);
    expect(behind.accepts(new DpopNonces(SECRET, rotationMs, () => clock + rotationMs).current())).toBe(true);
    expect(behind.accepts(new DpopNonces(SECRET, rotationMs, () => clock + 2 * rotationMs).current())).toBe(false);
  });
});

describe('replay across instances', () => {
  describe('Redis (a real redis-server)', () => {
    let redis: RedisServer;
    const clients: Redis[] = [];
    const connect = (): Redis => {
      const client = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false });
      clients.push(client);
      return client;
    };
    const ready = async (client: Redis): Promise<Redis> => (client.status === 'ready' ? client : (await once(client, 'ready'), client));
    beforeAll(async () => {
      redis = await startRedis();
    });
    afterAll(async () => {
      for (const client of clients) client.disconnect();
      await redis.close();
    });

    it('refuses a proof replayed to another instance sharing the Redis', async () => {
      const instanceA = verifier({ replay: new RedisReplayStore(await ready(connect()), 'authgate:') });
      const instanceB = verifier({ replay: new RedisReplayStore(await ready(connect()), 'authgate:') });
      const once = proof();
      expect(await check(instanceA, once)).toEqual({ ok: true });
      expect(await check(instanceB, once)).toEqual(refused('invalid_dpop_proof', 'dpop_proof_replayed'));
    });

    it('keeps a jti for max_age plus twice the skew (PX)', async () => {
      const client = await ready(connect());
      const v = verifier({ replay: new RedisReplayStore(client, 'ttl:') });
      expect(await check(v, proof({ jti: 'jti-with-ttl' }))).toEqual({ ok: true });
      const ttl = await client.pttl(`ttl:dpop:${key.jkt}:jti-with-ttl`);
      expect(ttl).toBeGreaterThan(60_000);
      expect(ttl).toBeLessThanOrEqual(70_000);
    });

    it('answers unavailable, not a pass, when Redis is down', async () => {
      const client = await ready(connect());
      const v = verifier({ replay: new RedisReplayStore(client, 'down:') });
      const closed = once(client, 'close');
      await redis.stop();
      await closed;
      try {
        expect(await check(v, proof())).toEqual(refused('unavailable', 'dpop_replay_store_unavailable', 'replay store'));
      } finally {
        await redis.restart();
      }
    });
  });
});

describe('htu', () => {
  it.each([
    ['https', 'API.Example.com:443', '/a', 'https://api.example.com/a'],
    ['http', 'localhost:80', '/a/b', 'http://localhost/a/b'],
    ['https', 'api.example.com:8443', '/', 'https://api.example.com:8443/'],
  ] as const)('htu of %s://%s%s is %s', (proto, host, path, htu) => {
    expect(dpopHtu(proto, host, path)).toBe(htu);
  });

  it.each([
    ['HTTPS://API.example.com:443/orders/42?x=1#f', true],
    ['https://api.example.com/orders/./42', true],
    ['https://api.example.com/orders/%34%32', true],
    ['https://api.example.com/orders/x/../42', true],
    ['https://api.example.com/orders/42/', false],
    ['https://api.example.com/orders%2F42', false],
    ['https://user@api.example.com/orders/42', false],
    ['https://api.example.com\\@evil/orders/42', false],
    ['https://api.example.com:8443/orders/42', false],
    ['wss://api.example.com/orders/42', false],
  ] as const)('a proof htu %s names https://api.example.com/orders/42: %s', (htu, matches) => {
    expect(htuMatches(htu, 'https://api.example.com/orders/42')).toBe(matches);
  });

  it('refuses a long htu that almost splits in linear time, not by trying every split', () => {
    const started = performance.now();
    expect(htuMatches(`https://${'a'.repeat(32_000)}? x`, 'https://api.example.com/orders/42')).toBe(false);
    // Trying every split of 32,000 characters takes about a second; one pass, about a millisecond.
    expect(performance.now() - started).toBeLessThan(100);
  });
});
