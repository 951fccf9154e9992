import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml, startIdp, type Idp } from '../helpers/idp.js';
import { freePort, startRedis } from '../helpers/redis.js';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import { startGateway } from '../../src/server/listener.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/** SPEC §11: readiness that follows the issuers and the store, and metrics that follow real requests. */

interface Readiness {
  status: string;
  checks: { config: string; issuers: Record<string, { state: string }>; store: { status: string } };
}

async function readyz(gw: TestGateway): Promise<{ status: number; body: Readiness }> {
  const res = await fetch(`${gw.adminUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as Readiness };
}

function yaml(idp: Idp, upstream: RecordingUpstream, extra = ''): string {
  return `
version: 1
server:
  listen: 127.0.0.1:0
  shutdown_grace: 1s
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: false }
${extra}
issuers:
${issuerYaml(idp, ['jwks_cache: { max_age: 10m, min_refetch_interval: 100ms, stale_if_error: 1h }'])}
upstreams:
  api: { url: ${upstream.url} }
  dead: { url: "http://127.0.0.1:9", timeout: 1s }
rate_limits:
  tight: { key: ip, limit: 1, window: 1m }
routes:
  - name: data
    match: { path: /data/** }
    upstream: api
  - name: limited
    match: { path: /limited }
    upstream: api
    auth: none
    rate_limit: [tight]
  - name: dead
    match: { path: /dead }
    upstream: dead
    auth: none
`;
}

let upstream: RecordingUpstream;
beforeAll(async () => {
  upstream = await startRecordingUpstream();
});
afterAll(() => upstream?.close());

describe('readiness', () => {
  it('is 503 "starting" until the gateway listens on its own port, however far the admin listener got', async () => {
    const idp = await startIdp({ keys: ['rsa'] });
    // Start-up waits on the first key fetch: the admin listener is up meanwhile, the gateway's port not yet.
    idp.setJwksBehaviour('hang');
    const admin = { adminUrl: `http://127.0.0.1:${await freePort()}` } as TestGateway;
    const dir = await mkdtemp(join(tmpdir(), 'authgate-ready-'));
    await writeFile(join(dir, 'gateway.yaml'), yaml(idp, upstream).replace('127.0.0.1:0 }', `${new URL(admin.adminUrl).host} }`));
    const { config } = await loadConfig(join(dir, 'gateway.yaml'));
    const quiet = new Writable({ write: (_chunk, _enc, done) => done() });
    const starting = startGateway(config!, { logger: createLogger('info', quiet), metrics: new Metrics() });
    try {
      await expect.poll(() => readyz(admin).then((report) => report.body.checks.config, () => 'no answer'), { timeout: 10_000 }).toBe('starting');
      expect(await readyz(admin)).toMatchObject({ status: 503, body: { status: 'not_ready' } });
    } finally {
      // Closing the IdP ends the hanging fetch, so the start-up finishes and the gateway can be closed.
      await idp.close();
      await (await starting).close();
    }
  });

  it('is 503 while the IdP is unreachable at start-up, 503 for its tokens too, and 200 once keys load', async () => {
    const idp = await startIdp({ keys: ['rsa'] });
    idp.setJwksBehaviour('error-500');
    const gw = await startTestGateway(yaml(idp, upstream));
    try {
      const down = await readyz(gw);
      expect(down.status).toBe(503);
      expect(down.body).toMatchObject({ status: 'not_ready', checks: { config: 'ok', issuers: { idp: { state: 'unavailable' } }, store: { status: 'memory' } } });
      expect((await fetch(`${gw.adminUrl}/healthz`)).status).toBe(200);

      const refused = await rawRequest(gw.port, { target: '/data/x', headers: [['Authorization', `Bearer ${idp.sign()}`]] });
      expect(refused.status).toBe(503);
      expect(refused.headers['retry-after']).toBeDefined();
      expect(upstream.seen.filter((seen) => seen.url === '/data/x')).toHaveLength(0);

      idp.setJwksBehaviour('ok');
      await expect.poll(async () => (await readyz(gw)).status, { timeout: 10_000 }).toBe(200);
      expect((await readyz(gw)).body.checks.issuers.idp?.state).toBe('ok');
    } finally {
      await gw.close();
      await idp.close();
    }
  });

  it('turns 503 with the store degraded when Redis goes away, and 200 again when it is back', async () => {
    const idp = await startIdp({ keys: ['rsa'] });
    const redis = await startRedis();
    const gw = await startTestGateway(yaml(idp, upstream, `store: { redis: "${redis.url}", prefix: "ops-ready:" }`));
    try {
      expect(await readyz(gw)).toMatchObject({ status: 200, body: { checks: { store: { status: 'ok' } } } });
      await redis.stop();
      await expect.poll(async () => (await readyz(gw)).body.checks.store.status, { timeout: 10_000 }).toBe('degraded');
      expect((await readyz(gw)).status).toBe(503);
      await redis.restart();
      await expect.poll(async () => (await readyz(gw)).status, { timeout: 15_000 }).toBe(200);
    } finally {
      await gw.close();
      await redis.stop();
      await idp.close();
    }
  });
});

/** The value of one sample of the Prometheus text exposition, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = line.slice(name.length).split(' ')[0] ?? '';
    if (wanted.every((pair) => labelText.includes(pair))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

describe('metrics', () => {
  let idp: Idp;
  let gw: TestGateway;
  beforeAll(async () => {
    idp = await startIdp({ keys: ['rsa'] });
    gw = await startTestGateway(yaml(idp, upstream));
  });
  afterAll(async () => {
    await gw?.close();
    await idp?.close();
  });

  const scrape = async (): Promise<string> => {
    const res = await fetch(`${gw.adminUrl}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    return res.text();
  };

  it('counts real requests by route, method and status; denials by reason; limits, upstream errors, cache and JWKS', async () => {
    const token = idp.sign();
    const send = (target: string, headers: [string, string][] = []) => rawRequest(gw.port, { target, headers });
    expect((await send('/data/secret-123', [['Authorization', `Bearer ${token}`]])).status).toBe(200);
    expect((await send('/data/secret-123', [['Authorization', `Bearer ${token}`]])).status).toBe(200);
    expect((await send('/data/x')).status).toBe(401);
    expect((await send('/data/x', [['Authorization', `Bearer ${token.slice(0, -4)}AAAA`]])).status).toBe(401);
    expect((await send('/limited')).status).toBe(200);
    expect((await send('/limited')).status).toBe(429);
    expect((await send('/dead')).status).toBe(502);
    expect((await send('/nowhere')).status).toBe(404);

    const text = await scrape();
    expect(sample(text, 'authgate_requests_total', { route: 'data', method: 'GET', status: '200' })).toBe(2);
    expect(sample(text, 'authgate_requests_total', { route: 'data', method: 'GET', status: '401' })).toBe(2);
    expect(sample(text, 'authgate_requests_total', { route: 'limited', status: '429' })).toBe(1);
    expect(sample(text, 'authgate_requests_total', { route: '-', status: '404' })).toBe(1);
    expect(sample(text, 'authgate_request_duration_seconds_count', { route: 'data' })).toBe(4);
    expect(sample(text, 'authgate_auth_denied_total', { reason: 'no_token' })).toBe(1);
    expect(sample(text, 'authgate_auth_denied_total', { reason: 'bad_signature' })).toBe(1);
    expect(sample(text, 'authgate_rate_limited_total', { limit: 'tight' })).toBe(1);
    expect(sample(text, 'authgate_upstream_errors_total', { upstream: 'dead', kind: 'refused' })).toBe(1);
    expect(sample(text, 'authgate_token_cache_total', { result: 'hit' })).toBe(1);
    expect(sample(text, 'authgate_jwks_refresh_total', { issuer: 'idp', result: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(text).toContain('# TYPE authgate_store_errors_total counter');
    // Labels are bounded: paths, subjects and tokens never become label values.
    expect(text).not.toContain('secret-123');
    expect(text).not.toContain('user-1');
  });
});

describe('admin answers', () => {
  /** The headers of every response authgate writes itself, on the admin listener as on the gateway's. */
  const SECURITY_HEADERS = {
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
    'referrer-policy': 'no-referrer',
  };
  const SPEC_ERROR = { error: expect.any(String), error_description: expect.any(String), request_id: expect.any(String) };
  let idp: Idp;
  let gw: TestGateway;
  beforeAll(async () => {
    idp = await startIdp({ keys: ['rsa'] });
    gw = await startTestGateway(yaml(idp, upstream));
  });
  afterAll(async () => {
    await gw?.close();
    await idp?.close();
  });

  it.each([
    { path: '/healthz', status: 200, body: { status: 'ok' } },
    { path: '/readyz', status: 200, body: expect.objectContaining({ status: 'ready' }) },
    { path: '/nowhere', status: 404, body: { ...SPEC_ERROR, error: 'not_found' } },
    { path: '/revocations/jti/unknown', status: 404, body: { ...SPEC_ERROR, error: 'not_found' } },
    { path: '/revocations/elsewhere', status: 404, body: { ...SPEC_ERROR, error: 'not_found' } },
    // No identity.assertion here: there are no keys to publish.
    { path: '/jwks.json', status: 404, body: { ...SPEC_ERROR, error: 'not_found' } },
  ])('GET $path → $status, JSON with every security header', async ({ path, status, body }) => {
    const res = await fetch(`${gw.adminUrl}${path}`);
    expect(res.status).toBe(status);
    expect(Object.fromEntries(res.headers)).toMatchObject({ 'content-type': 'application/json', ...SECURITY_HEADERS });
    expect(await res.json()).toEqual(body);
  });

  it.each([
    ['POST', '/healthz'], ['PUT', '/readyz'], ['DELETE', '/metrics'], ['POST', '/jwks.json'],
  ])('%s %s → 405 naming GET and HEAD; an unknown path stays 404', async (method, path) => {
    const res = await fetch(`${gw.adminUrl}${path}`, { method });
    expect({ status: res.status, allow: res.headers.get('allow'), body: await res.json() })
      .toEqual({ status: 405, allow: 'GET, HEAD', body: { ...SPEC_ERROR, error: 'method_not_allowed' } });
    expect((await fetch(`${gw.adminUrl}/nowhere`, { method })).status).toBe(404);
  });
});
