import { mkdtemp, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeCertificateAuthority, type IssuedCertificate } from '../helpers/client-certs.js';
import { startTestGateway, type RawResponse, type TestGateway } from '../helpers/gateway.js';
import { startIdp, type Idp } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { expectRefused, unboundToken } from './auth-fixture.js';

/**
 * Certificate-bound tokens (RFC 8705) through a gateway listening on real TLS, with client certificates made by
 * openssl: the token's `cnf["x5t#S256"]` must be the certificate the client presented on this connection.
 */

const certificateBinding = unboundToken('certificate_binding');

let idp: Idp;
let upstream: RecordingUpstream;
let alice: IssuedCertificate;
let mallory: IssuedCertificate;
/** Signed by a CA the gateway does not trust: `client_auth: optional` admits the handshake, the binding does not count it. */
let stranger: IssuedCertificate;
const gateways: TestGateway[] = [];

async function gatewayWith(clientAuth: 'optional' | 'require'): Promise<TestGateway> {
  const ca = await makeCertificateAuthority();
  const server = await ca.issue('/CN=localhost', 'server');
  alice = await ca.issue('/O=Acme/CN=alice', 'alice');
  mallory = await ca.issue('/O=Acme/CN=mallory', 'mallory');
  const dir = await mkdtemp(join(tmpdir(), 'authgate-mtls-'));
  await Promise.all([writeFile(join(dir, 'tls.crt'), server.certPem), writeFile(join(dir, 'tls.key'), server.keyPem)]);
  const gw = await startTestGateway(`
version: 1
server:
  listen: 127.0.0.1:0
  tls: { cert_file: ${join(dir, 'tls.crt')}, key_file: ${join(dir, 'tls.key')}, client_auth: ${clientAuth}, client_ca_file: ${ca.certFile} }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  bank:
    issuer: ${idp.issuer}
    jwks_uri: ${idp.jwksUri}
    audiences: [${idp.audience}]
    certificate_bound: true
upstreams:
  api: { url: ${upstream.url} }
identity:
  headers: { X-User-Id: subject, X-Client-Cert-Subject: client_cert_subject, X-Client-Cert-Fingerprint: client_cert_fingerprint }
routes:
  - name: api
    match: { path: /** }
    upstream: api
`);
  gateways.push(gw);
  return gw;
}

/** One request over a fresh TLS connection, presenting `client`'s certificate if given. */
function tlsRequest(gw: TestGateway, token: string, client: IssuedCertificate | undefined): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(`${gw.url}/accounts`, {
      headers: { authorization: `Bearer ${token}` },
      cert: client?.certPem,
      key: client?.keyPem,
      rejectUnauthorized: false,
      agent: false,
    }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => {
        const headers = Object.fromEntries(Object.entries(res.headers).map(([name, value]) => [name, String(value)]));
        resolve({ status: res.statusCode ?? 0, headers, body, json: <T>() => JSON.parse(body) as T });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

let gw: TestGateway;

beforeAll(async () => {
  [idp, upstream] = await Promise.all([startIdp({ keys: ['rsa'] }), startRecordingUpstream()]);
  gw = await gatewayWith('optional');
  stranger = await (await makeCertificateAuthority()).issue('/O=Acme/CN=alice', 'stranger');
});

afterAll(async () => {
  await Promise.all(gateways.map((each) => each.close()));
  await Promise.all([upstream?.close(), idp?.close()]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

describe('certificate-bound tokens over real TLS (client_auth: optional)', () => {
  it('forwards a token bound to the certificate presented, with the certificate identity fields', async () => {
    const token = idp.sign({ sub: 'alice', cnf: { 'x5t#S256': alice.x5tS256 } });
    const res = await tlsRequest(gw, token, alice);
    expect(res.status).toBe(200);
    const seen = upstream.seen[0]?.headers ?? {};
    expect({ subject: seen['x-client-cert-subject'], fingerprint: seen['x-client-cert-fingerprint'] })
      .toEqual({ subject: 'O=Acme, CN=alice', fingerprint: alice.x5tS256 });
  });

  it('forwards an unbound token with no client certificate', async () => {
    expect((await tlsRequest(gw, idp.sign({ sub: 'bob' }), undefined)).status).toBe(200);
    expect(upstream.seen[0]?.headers['x-client-cert-subject']).toBeUndefined();
  });

  it('refuses a bound token on a connection without a client certificate', async () => {
    const token = idp.sign({ sub: 'alice', cnf: { 'x5t#S256': alice.x5tS256 } });
    await expectRefused(gw, upstream, await tlsRequest(gw, token, undefined), certificateBinding, [token]);
  });

  it('refuses a bound token presented with another certificate of the same CA', async () => {
    const token = idp.sign({ sub: 'alice', cnf: { 'x5t#S256': alice.x5tS256 } });
    await expectRefused(gw, upstream, await tlsRequest(gw, token, mallory), certificateBinding, [token]);
  });

  it('refuses a certificate the client CA did not sign, even when the token names its thumbprint', async () => {
    const token = idp.sign({ sub: 'alice', cnf: { 'x5t#S256': stranger.x5tS256 } });
    await expectRefused(gw, upstream, await tlsRequest(gw, token, stranger), certificateBinding, [token]);
  });
});

describe('client_auth: require', () => {
  it('completes no handshake without a client certificate, and serves one with it', async () => {
    const strict = await gatewayWith('require');
    const token = idp.sign({ sub: 'alice', cnf: { 'x5t#S256': alice.x5tS256 } });
    await expect(tlsRequest(strict, token, undefined)).rejects.toThrow();
    expect((await tlsRequest(strict, token, alice)).status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
  });
});
