import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DpopProofDescription } from '../../src/http/responses.js';
import { DpopNonces } from '../../src/mechanisms/dpop/nonce.js';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';
import { rawRequest, startTestGateway, type RawRequest, type TestGateway } from '../helpers/gateway.js';
import { startIdp, type Idp } from '../helpers/idp.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { expectRefused, refuses, type Refusal } from './auth-fixture.js';

/**
 * DPoP across gateway instances and behind proxies: two instances sharing one real redis-server (proof replay, the
 * nonces each hands out), a gateway behind a trusted proxy (the URI the client used comes from X-Forwarded-*), and
 * forward-auth (the URI comes from the proxy's description of the original request).
 */

const ALGS = 'DPoP algs="ES256"';
const NONCE_SECRET = 'a-dpop-nonce-secret-every-instance-shares';

const badProof = (reason: string): Refusal => ({
  status: 401,
  error: 'invalid_dpop_proof',
  description: DpopProofDescription.invalid,
  wwwAuthenticate: `${ALGS}, error="invalid_dpop_proof", error_description="${DpopProofDescription.invalid}"`,
  reason,
});

const useNonce: Refusal = {
  status: 401,
  error: 'use_dpop_nonce',
  description: DpopProofDescription.nonce,
  wwwAuthenticate: `${ALGS}, error="use_dpop_nonce", error_description="${DpopProofDescription.nonce}"`,
  reason: 'dpop_nonce',
};

let redis: RedisServer;
let idp: Idp;
let upstream: RecordingUpstream;
let client: DpopClient;
let instanceA: TestGateway;
let instanceB: TestGateway;
let behindProxy: TestGateway;

function issuerYaml(dpop: string): string {
  return `issuers:
  bank:
    issuer: ${idp.issuer}
    jwks_uri: ${idp.jwksUri}
    audiences: [${idp.audience}]
    dpop: ${dpop}`;
}

function replicaYaml(): string {
  return `
version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
store: { redis: ${redis.url}, prefix: "dpop-test:" }
logging: { level: info, access_log: true }
${issuerYaml('{ algorithms: [ES256], nonce: true, nonce_secret: ${DPOP_NONCE_SECRET} }')}
upstreams:
  api: { url: ${upstream.url} }
routes:
  - { name: api, match: { path: /** }, upstream: api }
`;
}

beforeAll(async () => {
  [redis, idp, upstream, client] = await Promise.all([startRedis(), startIdp({ keys: ['rsa'] }), startRecordingUpstream(), dpopClient()]);
  const env = { DPOP_NONCE_SECRET: NONCE_SECRET };
  [instanceA, instanceB] = [await startTestGateway(replicaYaml(), env), await startTestGateway(replicaYaml(), env)];
  behindProxy = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, trusted_proxies: [127.0.0.1/32], forward_auth: traefik }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
${issuerYaml('{ algorithms: [ES256] }')}
upstreams:
  api: { url: ${upstream.url} }
identity: { forward_token: true }
routes:
  - { name: api, match: { path: /** }, upstream: api }
`);
});

afterAll(async () => {
  await Promise.all([instanceA, instanceB, behindProxy].map((gw) => gw?.close()));
  await Promise.all([upstream?.close(), idp?.close(), redis?.close()]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

const base = (gw: TestGateway): string => `http://127.0.0.1:${gw.port}`;
const bound = (): string => idp.sign({ sub: 'alice', cnf: { jkt: client.jkt } });

function dpopRequest(token: string, proof: string, target: string, extra: [string, string][] = []): RawRequest {
  return { target, headers: [['Authorization', `DPoP ${token}`], ['DPoP', proof], ...extra] };
}

/**
 * Returns at once unless the current nonce window ends within 2 s; then once the next one has begun, so the nonces
 * a test works out from the clock stay the ones the gateway has for the rest of the test.
 */
async function outsideWindowEnd(rotationMs: number): Promise<void> {
  const left = rotationMs - (Date.now() % rotationMs);
  if (left < 2_000) await new Promise((resolve) => setTimeout(resolve, left + 10));
}

/** Asks `gw` for a nonce the way a client learns one: a proof without it, answered use_dpop_nonce. */
async function nonceFrom(gw: TestGateway, token: string): Promise<string> {
  const res = await rawRequest(gw.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base(gw)}/n`, token }), '/n'));
  await expectRefused(gw, upstream, res, useNonce, [token]);
  const nonce = res.headers['dpop-nonce'];
  expect(nonce).toMatch(/^[0-9a-z]+\.[A-Za-z0-9_-]{43}$/);
  return nonce as string;
}

describe('two instances sharing one Redis', () => {
  it('hand out a nonce on use_dpop_nonce, then accept the proof that carries it', async () => {
    const token = bound();
    const nonce = await nonceFrom(instanceA, token);
    const res = await rawRequest(instanceA.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base(instanceA)}/x`, token, nonce }), '/x'));
    expect(res.status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
  });

  it('pass a proof with the previous window\'s nonce and hand out the current one with the answer; none with the current', async () => {
    const token = bound();
    const rotationMs = 60_000; // max_age's default: a nonce lives one to two of them
    await outsideWindowEnd(rotationMs);
    const previous = new DpopNonces(NONCE_SECRET, rotationMs, () => Date.now() - rotationMs).current();
    const current = new DpopNonces(NONCE_SECRET, rotationMs).current();
    const res = await rawRequest(instanceA.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base(instanceA)}/x`, token, nonce: previous }), '/x'));
    expect(res.status).toBe(200);
    expect(res.headers['dpop-nonce']).toBe(current);
    const again = await rawRequest(instanceA.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base(instanceA)}/x`, token, nonce: current }), '/x'));
    expect(again.status).toBe(200);
    expect(again.headers['dpop-nonce']).toBeUndefined();
    expect(upstream.seen).toHaveLength(2);
  });

  it('accept on one instance the nonce the other handed out', async () => {
    const token = bound();
    const nonce = await nonceFrom(instanceA, token);
    const res = await rawRequest(instanceB.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base(instanceB)}/x`, token, nonce }), '/x'));
    expect(res.status).toBe(200);
  });

  it('refuse a nonce no instance handed out', async () => {
    const token = bound();
    const proof = await client.proof({ htm: 'GET', htu: `${base(instanceB)}/x`, token, nonce: 'made-up' });
    await refuses(instanceB, upstream, dpopRequest(token, proof, '/x'), useNonce, [token]);
  });

  it('refuse on the other instance a proof the first one accepted (the same jti)', async () => {
    const token = bound();
    const nonce = await nonceFrom(instanceA, token);
    // One htu both accept: the Host the client sends names neither instance's port.
    const htu = 'http://api.example.com/transfer';
    const host: [string, string] = ['Host', 'api.example.com'];
    const proof = await client.proof({ htm: 'GET', htu, token, nonce });
    expect((await rawRequest(instanceA.port, dpopRequest(token, proof, '/transfer', [host]))).status).toBe(200);
    upstream.seen.length = 0;
    await refuses(instanceB, upstream, dpopRequest(token, proof, '/transfer', [host]), badProof('dpop_proof_replayed'), [token, proof]);
  });

  it('ignore X-Forwarded-* from a client that is no trusted proxy', async () => {
    const token = bound();
    const nonce = await nonceFrom(instanceA, token);
    const proof = await client.proof({ htm: 'GET', htu: 'https://api.example.com/orders/42', token, nonce });
    const forwarded: [string, string][] = [['X-Forwarded-Proto', 'https'], ['X-Forwarded-Host', 'api.example.com'], ['X-Forwarded-Uri', '/orders/42']];
    await refuses(instanceA, upstream, dpopRequest(token, proof, '/orders/42', forwarded), badProof('dpop_proof_htu'), [token]);
  });
});

describe('behind a trusted proxy', () => {
  const forwarded: [string, string][] = [['X-Forwarded-Proto', 'https'], ['X-Forwarded-Host', 'api.example.com'], ['X-Forwarded-Uri', '/orders/42?page=2']];

  it('takes the URI the client used from X-Forwarded-Proto, -Host and -Uri, and forwards the proof with forward_token', async () => {
    const token = bound();
    const proof = await client.proof({ htm: 'GET', htu: 'https://api.example.com/orders/42', token });
    const res = await rawRequest(behindProxy.port, dpopRequest(token, proof, '/internal/orders/42', forwarded));
    expect(res.status).toBe(200);
    const seen = upstream.seen[0]?.headers ?? {};
    expect({ dpop: seen.dpop, authorization: seen.authorization }).toEqual({ dpop: proof, authorization: `DPoP ${token}` });
  });

  it('refuses a proof for the URI the proxy sent on instead', async () => {
    const token = bound();
    const proof = await client.proof({ htm: 'GET', htu: `${base(behindProxy)}/internal/orders/42`, token });
    await refuses(behindProxy, upstream, dpopRequest(token, proof, '/internal/orders/42', forwarded), badProof('dpop_proof_htu'), [token]);
  });

  it('reads the host and scheme the trusted proxy added, not those a client put before them in the list', async () => {
    const token = bound();
    const appended: [string, string][] = [['X-Forwarded-Proto', 'http, https'], ['X-Forwarded-Host', 'evil.example, api.example.com'], ['X-Forwarded-Uri', '/orders/42']];
    const chosen = await client.proof({ htm: 'GET', htu: 'http://evil.example/orders/42', token });
    await refuses(behindProxy, upstream, dpopRequest(token, chosen, '/internal/orders/42', appended), badProof('dpop_proof_htu'), [token]);
    const proof = await client.proof({ htm: 'GET', htu: 'https://api.example.com/orders/42', token });
    expect((await rawRequest(behindProxy.port, dpopRequest(token, proof, '/internal/orders/42', appended))).status).toBe(200);
  });

  it('refuses every proof when the forwarded URI is no valid target', async () => {
    const token = bound();
    const proof = await client.proof({ htm: 'GET', htu: 'https://api.example.com/x', token });
    const escaping: [string, string][] = [['X-Forwarded-Proto', 'https'], ['X-Forwarded-Host', 'api.example.com'], ['X-Forwarded-Uri', '/../x']];
    await refuses(behindProxy, upstream, dpopRequest(token, proof, '/x', escaping), badProof('dpop_proof_htu'), [token]);
  });
});

describe('forward-auth (traefik)', () => {
  const original: [string, string][] = [['X-Forwarded-Method', 'DELETE'], ['X-Forwarded-Proto', 'https'], ['X-Forwarded-Host', 'shop.example.com'], ['X-Forwarded-Uri', '/carts/9?force=1']];

  it('checks the proof against the original request the proxy describes', async () => {
    const token = bound();
    const proof = await client.proof({ htm: 'DELETE', htu: 'https://shop.example.com/carts/9', token });
    const res = await rawRequest(behindProxy.port, dpopRequest(token, proof, '/_authgate/verify', original));
    expect(res.status).toBe(200);
  });

  it.each([
    ['the check request instead', 'GET', (gw: TestGateway) => `${base(gw)}/_authgate/verify`, 'dpop_proof_htm'],
    ['another method', 'GET', () => 'https://shop.example.com/carts/9', 'dpop_proof_htm'],
    ['another URI', 'DELETE', () => 'https://shop.example.com/carts/10', 'dpop_proof_htu'],
  ])('refuses a proof made for %s', async (_name, htm, htu, reason) => {
    const token = bound();
    const proof = await client.proof({ htm, htu: htu(behindProxy), token });
    await refuses(behindProxy, upstream, dpopRequest(token, proof, '/_authgate/verify', original), badProof(reason), [token]);
  });
});

describe.each([
  {
    family: 'nginx',
    check: (proto: string | undefined): [string, string][] => [
      ['X-Original-Method', 'DELETE'], ['X-Original-Host', 'shop.example.com'], ['X-Original-URI', '/carts/9?force=1'],
      ...(proto === undefined ? [] : [['X-Original-Proto', proto] as [string, string]]),
    ],
    target: '/_authgate/verify',
    method: 'GET',
  },
  {
    family: 'envoy',
    check: (proto: string | undefined): [string, string][] => [
      ['Host', 'shop.example.com'], ...(proto === undefined ? [] : [['X-Forwarded-Proto', proto] as [string, string]]),
    ],
    target: '/_authgate/verify/carts/9?force=1',
    method: 'DELETE',
  },
])('forward-auth ($family): the scheme the client used', ({ family, check, target, method }) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, trusted_proxies: [127.0.0.1/32], forward_auth: ${family} }
admin: { listen: 127.0.0.1:0 }
${issuerYaml('{ algorithms: [ES256] }')}
upstreams:
  api: { url: ${upstream.url} }
routes:
  - { name: api, match: { path: /** }, upstream: api }
`);
  });
  afterAll(async () => {
    await gw?.close();
  });

  const ask = async (scheme: 'http' | 'https', told: string | undefined): Promise<number> => {
    const token = bound();
    const proof = await client.proof({ htm: 'DELETE', htu: `${scheme}://shop.example.com/carts/9`, token });
    const request = dpopRequest(token, proof, target, check(told));
    return (await rawRequest(gw.port, { ...request, method })).status;
  };

  it('is the one the proxy says (TLS ended at the proxy), not the check connection\'s', async () => {
    expect(await ask('https', 'https')).toBe(200);
    expect(await ask('http', 'https')).toBe(401);
  });

  it('is the check connection\'s when the proxy says none', async () => {
    expect(await ask('http', undefined)).toBe(200);
  });
});

describe('the store unreachable', () => {
  it('answers 503 rather than take a proof whose jti it cannot claim', async () => {
    const token = bound();
    const nonce = await nonceFrom(instanceA, token);
    const proof = await client.proof({ htm: 'GET', htu: `${base(instanceA)}/x`, token, nonce });
    await redis.stop();
    try {
      const res = await rawRequest(instanceA.port, dpopRequest(token, proof, '/x'));
      const unavailable: Refusal = {
        status: 503,
        error: 'service_unavailable',
        description: DpopProofDescription.unavailable,
        wwwAuthenticate: undefined,
        reason: 'dpop_replay_store_unavailable',
      };
      await expectRefused(instanceA, upstream, res, unavailable, [token, proof]);
      expect(res.headers['retry-after']).toBe('5');
    } finally {
      await redis.restart();
    }
  });
});
