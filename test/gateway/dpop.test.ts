import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DpopProofDescription, InvalidTokenDescription } from '../../src/http/responses.js';
import { athOf, dpopClient, type DpopClient } from '../helpers/dpop.js';
import { rawRequest, startTestGateway, type RawRequest, type TestGateway } from '../helpers/gateway.js';
import { startIdp, type Idp } from '../helpers/idp.js';
import { assemble, signRaw } from '../helpers/tokens.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { bearer, invalidRequest, refuses, type Refusal } from './auth-fixture.js';

/**
 * DPoP (RFC 9449) through a running gateway: tokens signed by a real IdP and bound to a client key (`cnf.jkt`),
 * proofs made with jose as a client makes them, a real upstream that must never see a refused request.
 */

const ALGS = 'DPoP algs="ES256 EdDSA PS256"';
const OPAQUE_ISSUER = 'https://opaque.example';

/** 401 for a proof that fails its own checks: the DPoP challenge alone. */
function badProof(reason: string, description: string = DpopProofDescription.invalid): Refusal {
  return {
    status: 401,
    error: 'invalid_dpop_proof',
    description,
    wwwAuthenticate: `${ALGS}, error="invalid_dpop_proof", error_description="${description}"`,
    reason,
  };
}

/** 401 invalid_token on a route that takes Bearer and DPoP: both challenges carry the error. */
function badToken(reason: string, description: string, algs = ALGS): Refusal {
  const params = `error="invalid_token", error_description="${description}"`;
  return { status: 401, error: 'invalid_token', description, wwwAuthenticate: `Bearer realm="authgate", ${params}, ${algs}, ${params}`, reason };
}

let idp: Idp;
let strictIdp: Idp;
let plainIdp: Idp;
let introspection: { server: Server; url: string; answers: Map<string, object> };
let upstream: RecordingUpstream;
let gw: TestGateway;
let client: DpopClient;
let base: string;

async function startIntrospection(): Promise<typeof introspection> {
  const answers = new Map<string, object>();
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const token = new URLSearchParams(body).get('token') ?? '';
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answers.get(token) ?? { active: false }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`, answers };
}

beforeAll(async () => {
  [idp, strictIdp, plainIdp, introspection, upstream, client] = await Promise.all([
    startIdp({ keys: ['rsa'] }),
    startIdp({ keys: ['rsa'], issuerPath: '/strict/' }),
    startIdp({ keys: ['rsa'], issuerPath: '/plain/' }),
    startIntrospection(),
    startRecordingUpstream(),
    dpopClient(),
  ]);
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  bank:
    issuer: ${idp.issuer}
    jwks_uri: ${idp.jwksUri}
    audiences: [${idp.audience}]
    dpop: { mode: allowed, max_age: 60s, algorithms: [ES256, EdDSA, PS256] }
  strict:
    issuer: ${strictIdp.issuer}
    jwks_uri: ${strictIdp.jwksUri}
    audiences: [${strictIdp.audience}]
    dpop: { mode: required, algorithms: [ES256] }
  plain:
    issuer: ${plainIdp.issuer}
    jwks_uri: ${plainIdp.jwksUri}
    audiences: [${plainIdp.audience}]
  opaque:
    issuer: ${OPAQUE_ISSUER}
    introspection: { endpoint: ${introspection.url}, client_id: gw, client_secret: s, auth: client_secret_post }
    audiences: [api]
    dpop: { algorithms: [ES256, EdDSA, PS256] }
upstreams:
  api: { url: ${upstream.url} }
identity:
  headers: { X-User-Id: subject }
routes:
  - { name: strict, match: { path: /strict/** }, upstream: api, issuers: [strict] }
  - { name: plain, match: { path: /plain/** }, upstream: api, issuers: [plain] }
  - { name: mixed, match: { path: /mixed/** }, upstream: api, issuers: [bank, plain] }
  - { name: opaque, match: { path: /opaque/** }, upstream: api, issuers: [opaque] }
  - { name: api, match: { path: /** }, upstream: api, issuers: [bank] }
`);
  base = `http://127.0.0.1:${gw.port}`;
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([upstream?.close(), idp?.close(), strictIdp?.close(), plainIdp?.close(), new Promise((resolve) => introspection?.server.close(resolve))]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

const bound = (key: DpopClient = client, claims: Record<string, unknown> = {}): string => idp.sign({ sub: 'alice', cnf: { jkt: key.jkt }, ...claims });

/** A request with DPoP credentials; `proof` undefined leaves the DPoP header out. */
function dpopRequest(token: string, proof: string | undefined, target = '/accounts/7', method = 'GET'): RawRequest {
  const headers: [string, string][] = [['Authorization', `DPoP ${token}`]];
  if (proof !== undefined) headers.push(['DPoP', proof]);
  return { method, target, headers };
}

describe('a DPoP-bound token with a proof', () => {
  it('is forwarded with the identity, without the DPoP header or the token', async () => {
    const token = bound();
    const res = await rawRequest(gw.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base}/accounts/7`, token })));
    expect(res.status).toBe(200);
    const seen = upstream.seen[0]?.headers ?? {};
    expect({ user: seen['x-user-id'], dpop: seen.dpop, authorization: seen.authorization }).toEqual({ user: 'alice', dpop: undefined, authorization: undefined });
  });

  it.each(['EdDSA', 'PS256'] as const)('works with an %s proof key', async (alg) => {
    const other = await dpopClient(alg);
    const token = bound(other);
    const res = await rawRequest(gw.port, dpopRequest(token, await other.proof({ htm: 'POST', htu: `${base}/accounts`, token }), '/accounts', 'POST'));
    expect(res.status).toBe(200);
  });

  it('verifies the token once (the cache) and the proof on every request', async () => {
    const token = bound();
    const hits = async (): Promise<number> => (await gw.metrics.tokenCache.get()).values.find((value) => value.labels.result === 'hit')?.value ?? 0;
    expect((await rawRequest(gw.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base}/a`, token }), '/a'))).status).toBe(200);
    const before = await hits();
    expect((await rawRequest(gw.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base}/b`, token }), '/b'))).status).toBe(200);
    expect(await hits()).toBe(before + 1);
    upstream.seen.length = 0;
    await refuses(gw, upstream, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base}/b`, token }), '/c'), badProof('dpop_proof_htu'), [token]);
  });

  it('matches an htu with a query, a fragment, a default port or dot segments to the normalized URI', async () => {
    const token = bound();
    const htu = `HTTP://127.0.0.1:${gw.port}/accounts/./7?page=2#top`;
    expect((await rawRequest(gw.port, dpopRequest(token, await client.proof({ htm: 'GET', htu, token }), '/accounts/%37?page=2'))).status).toBe(200);
  });

  it('passes an introspected token bound to the proof key', async () => {
    const token = 'opaque-dpop-token-0123456789abcdef';
    introspection.answers.set(token, { active: true, sub: 'carol', cnf: { jkt: client.jkt }, exp: Math.floor(Date.now() / 1000) + 600 });
    const res = await rawRequest(gw.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base}/opaque/x`, token }), '/opaque/x'));
    expect(res.status).toBe(200);
    expect(upstream.seen[0]?.headers['x-user-id']).toBe('carol');
  });
});

describe('refused DPoP requests never reach the upstream', () => {
  it('a proof replayed (the same jti again)', async () => {
    const token = bound();
    const proof = await client.proof({ htm: 'GET', htu: `${base}/accounts/7`, token });
    expect((await rawRequest(gw.port, dpopRequest(token, proof))).status).toBe(200);
    upstream.seen.length = 0;
    await refuses(gw, upstream, dpopRequest(token, proof), badProof('dpop_proof_replayed'), [token, proof]);
  });

  it.each<[string, string, (token: string) => Promise<string>]>([
    ['another method', 'dpop_proof_htm', (token) => client.proof({ htm: 'POST', htu: `${base}/accounts/7`, token })],
    ['another URI', 'dpop_proof_htu', (token) => client.proof({ htm: 'GET', htu: `${base}/accounts/8`, token })],
    ['another host', 'dpop_proof_htu', (token) => client.proof({ htm: 'GET', htu: `http://api.example.com/accounts/7`, token })],
    ['a proof too old', 'dpop_proof_iat', (token) => client.proof({ htm: 'GET', htu: `${base}/accounts/7`, token, claims: { iat: Math.floor(Date.now() / 1000) - 120 } })],
    ['a proof from the future', 'dpop_proof_iat', (token) => client.proof({ htm: 'GET', htu: `${base}/accounts/7`, token, claims: { iat: Math.floor(Date.now() / 1000) + 120 } })],
    ['a proof without ath', 'dpop_proof_ath', (token) => client.proof({ htm: 'GET', htu: `${base}/accounts/7`, token, claims: { ath: undefined } })],
    ["a proof with another token's ath", 'dpop_proof_ath', (token) => client.proof({ htm: 'GET', htu: `${base}/accounts/7`, token, claims: { ath: athOf(bound()) } })],
    ['a private key in the jwk header', 'dpop_proof_header', async (token) => {
      const { exportJWK } = await import('jose');
      return client.proof({ htm: 'GET', htu: `${base}/accounts/7`, token, header: { jwk: await exportJWK(client.privateKey) } });
    }],
    ['alg none', 'dpop_proof_malformed', async (token) =>
      assemble({ typ: 'dpop+jwt', alg: 'none', jwk: client.jwk }, { htm: 'GET', htu: `${base}/accounts/7`, ath: athOf(token), jti: 'none-1', iat: Math.floor(Date.now() / 1000) })],
    ['HS256 with a symmetric key', 'dpop_proof_header', async (token) =>
      signRaw('HS256', 'a-shared-secret-of-at-least-32-bytes', { typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: 'YS1zaGFyZWQtc2VjcmV0' } },
        { htm: 'GET', htu: `${base}/accounts/7`, ath: athOf(token), jti: 'hs-1', iat: Math.floor(Date.now() / 1000) })],
    ['a proof that is not a JWS', 'dpop_proof_malformed', async () => 'not-a-proof'],
  ])('%s', async (_name, reason, makeProof) => {
    const token = bound();
    const proof = await makeProof(token);
    await refuses(gw, upstream, dpopRequest(token, proof), badProof(reason), [token]);
  });

  it('a proof signed with a key other than the one in cnf.jkt', async () => {
    const token = bound();
    const thief = await dpopClient();
    const proof = await thief.proof({ htm: 'GET', htu: `${base}/accounts/7`, token });
    await refuses(gw, upstream, dpopRequest(token, proof), badToken('dpop_key_mismatch', InvalidTokenDescription.unbound), [token]);
  });

  it('an introspected token bound to another key', async () => {
    const token = 'opaque-dpop-token-bound-elsewhere-0123';
    const other = await dpopClient();
    introspection.answers.set(token, { active: true, sub: 'carol', cnf: { jkt: other.jkt } });
    const proof = await client.proof({ htm: 'GET', htu: `${base}/opaque/x`, token });
    await refuses(gw, upstream, dpopRequest(token, proof, '/opaque/x'), badToken('dpop_key_mismatch', InvalidTokenDescription.unbound), [token]);
  });

  it('a DPoP-bound token sent as Bearer', async () => {
    const token = bound();
    await refuses(gw, upstream, { target: '/accounts/7', headers: [bearer(token)] }, badToken('dpop_bound_token_as_bearer', InvalidTokenDescription.unbound), [token]);
  });

  it('two DPoP headers', async () => {
    const token = bound();
    const proof = await client.proof({ htm: 'GET', htu: `${base}/accounts/7`, token });
    const request: RawRequest = { target: '/accounts/7', headers: [['Authorization', `DPoP ${token}`], ['DPoP', proof], ['DPoP', proof]] };
    const params = `error="invalid_request", error_description="${invalidRequest('').description}"`;
    await refuses(gw, upstream, request, { ...invalidRequest('multiple_dpop_proofs'), wwwAuthenticate: `Bearer realm="authgate", ${params}, ${ALGS}, ${params}` }, [token]);
  });

  it('the DPoP scheme without a DPoP header', async () => {
    const token = bound();
    await refuses(gw, upstream, dpopRequest(token, undefined), badProof('dpop_proof_missing', DpopProofDescription.missing), [token]);
  });

  it('an unbound token in the DPoP scheme', async () => {
    const token = idp.sign({ sub: 'alice' });
    const proof = await client.proof({ htm: 'GET', htu: `${base}/accounts/7`, token });
    await refuses(gw, upstream, dpopRequest(token, proof), badToken('dpop_token_unbound', InvalidTokenDescription.unbound), [token]);
  });

  it('the DPoP scheme for an issuer without dpop', async () => {
    const token = plainIdp.sign({ sub: 'alice', cnf: { jkt: client.jkt } });
    const proof = await client.proof({ htm: 'GET', htu: `${base}/plain/x`, token });
    const description = DpopProofDescription.notAccepted;
    const refusal: Refusal = {
      status: 401,
      error: 'invalid_token',
      description,
      wwwAuthenticate: `Bearer realm="authgate", error="invalid_token", error_description="${description}"`,
      reason: 'dpop_not_accepted',
    };
    await refuses(gw, upstream, dpopRequest(token, proof, '/plain/x'), refusal, [token]);
  });

  it('the DPoP scheme with a token of an issuer without dpop, on a route that also takes one with it', async () => {
    const token = plainIdp.sign({ sub: 'alice', cnf: { jkt: client.jkt } });
    const proof = await client.proof({ htm: 'GET', htu: `${base}/mixed/x`, token });
    await refuses(gw, upstream, dpopRequest(token, proof, '/mixed/x'), badToken('dpop_not_accepted', DpopProofDescription.notAccepted), [token]);
  });

  it('mode: required refuses a Bearer token without cnf.jkt, and takes it bound with a proof', async () => {
    const strictAlgs = 'DPoP algs="ES256"';
    const unbound = strictIdp.sign({ sub: 'alice' });
    const description = DpopProofDescription.required;
    const refusal: Refusal = {
      status: 401,
      error: 'invalid_token',
      description,
      wwwAuthenticate: `${strictAlgs}, error="invalid_token", error_description="${description}"`,
      reason: 'dpop_required',
    };
    await refuses(gw, upstream, { target: '/strict/x', headers: [bearer(unbound)] }, refusal, [unbound]);
    const token = strictIdp.sign({ sub: 'alice', cnf: { jkt: client.jkt } });
    expect((await rawRequest(gw.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base}/strict/x`, token }), '/strict/x'))).status).toBe(200);
  });

  it('a route of a DPoP issuer asks for either scheme when no token comes', async () => {
    const res = await rawRequest(gw.port, { target: '/accounts/7' });
    expect({ status: res.status, challenge: res.headers['www-authenticate'] }).toEqual({ status: 401, challenge: `Bearer realm="authgate", ${ALGS}` });
    expect(upstream.seen).toEqual([]);
  });
});

describe('logout with DPoP credentials', () => {
  it('needs the proof too, then revokes the token', async () => {
    const token = bound(client, { jti: `logout-${Date.now()}` });
    const htu = `${base}/_authgate/logout`;
    const without = await rawRequest(gw.port, dpopRequest(token, undefined, '/_authgate/logout', 'POST'));
    expect({ status: without.status, error: without.json().error }).toEqual({ status: 401, error: 'invalid_dpop_proof' });
    const res = await rawRequest(gw.port, dpopRequest(token, await client.proof({ htm: 'POST', htu, token }), '/_authgate/logout', 'POST'));
    expect(res.status).toBe(204);
    const after = await rawRequest(gw.port, dpopRequest(token, await client.proof({ htm: 'GET', htu: `${base}/accounts/7`, token })));
    expect({ status: after.status, description: after.json().error_description }).toEqual({ status: 401, description: InvalidTokenDescription.revoked });
    expect(upstream.seen).toEqual([]);
  });
});
