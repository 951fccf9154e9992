import { copyFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';
import { rawRequest, startTestGateway, type RawResponse, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml, startIdp, type Idp } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { makeCertificate, type TestCertificate } from './certs.js';

/** SPEC §7 headers every response authgate makes itself carries. */
const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

const APP = 'https://app.test';

let idp: Idp;
let upstream: RecordingUpstream;

beforeAll(async () => {
  idp = await startIdp({ keys: ['rsa'] });
  upstream = await startRecordingUpstream();
});
afterAll(async () => {
  await upstream?.close();
  await idp?.close();
});
beforeEach(() => {
  upstream.seen.length = 0;
});

function baseYaml(extra: { server?: string; top?: string; routes: string }): string {
  return `
version: 1
server:
  listen: 127.0.0.1:0
  shutdown_grace: 1s
${extra.server ?? ''}
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: false }
issuers:
${issuerYaml(idp)}
upstreams:
  api: { url: ${upstream.url} }
${extra.top ?? ''}
routes:
${extra.routes}
`;
}

describe('CORS', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(
      baseYaml({
        top: `cors: { origins: [${APP}], methods: [GET, POST], headers: [Authorization, Content-Type], credentials: true, max_age: 10m }`,
        routes: `
  - name: data
    match: { path: /data/**, methods: [GET, POST] }
    upstream: api
  - name: internal
    match: { path: /internal/** }
    upstream: api
    cors: false
  - name: widgets
    match: { path: /widgets/** }
    upstream: api
    auth: none
    cors: { origins: ["*"], methods: [GET] }
  - name: options-passthrough
    match: { path: /opts, methods: [OPTIONS] }
    upstream: api
    auth: none
    cors: false
`,
      }),
    );
  });
  afterAll(() => gw?.close());

  const preflight = (target: string, origin: string, method: string, requestHeaders?: string): Promise<RawResponse> =>
    rawRequest(gw.port, {
      method: 'OPTIONS',
      target,
      headers: [
        ['Origin', origin],
        ['Access-Control-Request-Method', method],
        ...(requestHeaders ? ([['Access-Control-Request-Headers', requestHeaders]] as const) : []),
      ],
    });

  it('answers an allowed preflight itself, without a token, with the configured policy', async () => {
    const res = await preflight('/data/items', APP, 'POST', 'authorization, content-type');
    expect(res.status).toBe(204);
    expect(res.body).toBe('');
    expect(res.headers).toMatchObject({
      'access-control-allow-origin': APP,
      'access-control-allow-methods': 'GET, POST',
      'access-control-allow-headers': 'Authorization, Content-Type',
      'access-control-allow-credentials': 'true',
      'access-control-max-age': '600',
      ...SECURITY_HEADERS,
    });
    expect(res.headers.vary).toContain('Origin');
    expect(res.headers['content-length']).toBeUndefined();
    expect(upstream.seen).toHaveLength(0);
  });

  it.each([
    { case: 'an origin not on the list', origin: 'https://evil.test', method: 'GET', headers: undefined, status: 403 },
    { case: 'an origin differing only by scheme', origin: 'http://app.test', method: 'GET', headers: undefined, status: 403 },
    { case: 'a request header the policy does not allow', origin: APP, method: 'GET', headers: 'x-user-id', status: 403 },
    // The route takes GET and POST only: no route would serve the request, so there is nothing to grant.
    { case: 'a method no route takes', origin: APP, method: 'PUT', headers: undefined, status: 404 },
  ])('refuses a preflight with $case (no CORS grant, upstream untouched)', async ({ origin, method, headers, status }) => {
    const res = await preflight('/data/items', origin, method, headers);
    expect(res.status).toBe(status);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(res.headers).toMatchObject(SECURITY_HEADERS);
    expect(upstream.seen).toHaveLength(0);
  });

  it('puts the grant on actual responses for an allowed origin, with credentials and Vary: Origin', async () => {
    const res = await rawRequest(gw.port, {
      target: '/data/items',
      headers: [['Origin', APP], ['Authorization', `Bearer ${idp.sign()}`]],
    });
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe(APP);
    expect(res.headers['access-control-allow-credentials']).toBe('true');
    expect(res.headers.vary).toContain('Origin');
    expect(upstream.seen).toHaveLength(1);
  });

  it('lets a browser read a refusal (401 with the grant), and the upstream never sees it', async () => {
    const res = await rawRequest(gw.port, { target: '/data/items', headers: [['Origin', APP]] });
    expect(res.status).toBe(401);
    expect(res.headers['access-control-allow-origin']).toBe(APP);
    expect(upstream.seen).toHaveLength(0);
  });

  it('grants nothing to another origin on an actual response, but still varies on Origin', async () => {
    const res = await rawRequest(gw.port, {
      target: '/data/items',
      headers: [['Origin', 'https://evil.test'], ['Authorization', `Bearer ${idp.sign()}`]],
    });
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
    expect(res.headers.vary).toContain('Origin');
  });

  it('sends "*" only for a wildcard policy without credentials', async () => {
    const res = await rawRequest(gw.port, { target: '/widgets/1', headers: [['Origin', 'https://anyone.test']] });
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
  });

  it('on a route with cors: false, a preflight is an ordinary OPTIONS request that needs a token', async () => {
    const res = await preflight('/internal/x', APP, 'GET');
    expect(res.status).toBe(401);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(upstream.seen).toHaveLength(0);

    const passthrough = await preflight('/opts', APP, 'GET');
    expect(passthrough.status).toBe(200);
    expect(upstream.seen.map((seen) => seen.method)).toEqual(['OPTIONS']);
  });

  it('refuses a preflight whose target is a path trick, like any request', async () => {
    const res = await preflight('/public/..%2fdata/items', APP, 'GET');
    expect(res.status).toBe(400);
    expect(upstream.seen).toHaveLength(0);
  });
});

describe('allowed_hosts', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(
      baseYaml({
        server: '  allowed_hosts: [api.test, "*.apps.test"]',
        routes: `
  - name: public
    match: { path: /public/** }
    upstream: api
    auth: none
`,
      }),
    );
  });
  afterAll(() => gw?.close());

  it.each(['api.test', 'API.test', 'api.test:8443', 'one.apps.test'])('serves Host %s', async (host) => {
    const res = await rawRequest(gw.port, { target: '/public/x', headers: [['Host', host]] });
    expect(res.status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
  });

  it.each(['evil.test', 'apps.test', 'api.test.evil.test', '127.0.0.1'])('answers 421 to Host %s before anything else', async (host) => {
    const res = await rawRequest(gw.port, { target: '/public/x', headers: [['Host', host]] });
    expect(res.status).toBe(421);
    expect(res.json()).toMatchObject({ error: 'misdirected_request' });
    expect(res.headers).toMatchObject(SECURITY_HEADERS);
    expect(upstream.seen).toHaveLength(0);
  });
});

describe('TLS termination', () => {
  let gw: TestGateway;
  let first: TestCertificate;

  beforeAll(async () => {
    first = await makeCertificate('authgate-first');
    gw = await startTestGateway(
      baseYaml({
        server: `  tls: { cert_file: ${first.certFile}, key_file: ${first.keyFile} }`,
        routes: `
  - name: public
    match: { path: /public/** }
    upstream: api
    auth: none
  - name: private
    match: { path: /private/** }
    upstream: api
`,
      }),
    );
  });
  afterAll(() => gw?.close());

  function handshake(options: { maxVersion?: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3'; ca?: Buffer }): Promise<{ protocol: string | null; cert: PeerCertificate } | { error: string }> {
    return new Promise((resolve) => {
      const socket = tlsConnect({
        port: gw.port,
        host: '127.0.0.1',
        servername: 'localhost',
        minVersion: 'TLSv1',
        maxVersion: options.maxVersion ?? 'TLSv1.3',
        // Lets this client offer TLS 1.0/1.1 at all, so a refusal can only come from the server.
        ciphers: 'DEFAULT@SECLEVEL=0',
        ca: options.ca,
        rejectUnauthorized: options.ca !== undefined,
      });
      socket.once('secureConnect', () => {
        resolve({ protocol: socket.getProtocol(), cert: socket.getPeerCertificate() });
        socket.destroy();
      });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
    });
  }

  function get(target: string, ca: Buffer): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port: gw.port, path: target, servername: 'localhost', ca, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('refuses TLS 1.1 with a protocol_version alert', async () => {
    expect(await handshake({ maxVersion: 'TLSv1.1' })).toEqual({ error: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
  });

  it('accepts TLS 1.2 and 1.3 with the configured certificate', async () => {
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const result = await handshake({ maxVersion, ca: first.certPem });
      expect(result).toMatchObject({ protocol: maxVersion });
    }
  });

  it('sends HSTS on proxied and gateway-made responses, and tells the upstream the request came over https', async () => {
    const proxied = await get('/public/a', first.certPem);
    expect(proxied.status).toBe(200);
    expect(proxied.headers['strict-transport-security']).toBe('max-age=31536000');
    expect(upstream.seen[0]?.headers['x-forwarded-proto']).toBe('https');

    const refused = await get('/private/a', first.certPem);
    expect(refused.status).toBe(401);
    expect(refused.headers['strict-transport-security']).toBe('max-age=31536000');
    expect(upstream.seen).toHaveLength(1);
  });

  it('serves a renewed certificate after a reload, on new connections', async () => {
    const renewed = await makeCertificate('authgate-renewed');
    await copyFile(renewed.certFile, first.certFile);
    await copyFile(renewed.keyFile, first.keyFile);
    const reloaded = await loadConfig(gw.file);
    await gw.gateway.reload(reloaded.config as GatewayConfig);

    const after = await handshake({ ca: renewed.certPem });
    expect(after).toMatchObject({ cert: { subject: { CN: 'authgate-renewed' } } });
  });
});
