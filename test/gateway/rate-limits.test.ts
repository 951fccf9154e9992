import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

let upstream: RecordingUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
upstreams: { api: { url: ${upstream.url} } }
rate_limits:
  per-key: { key: header.X-Api-Key, limit: 2, window: 1m }
routes:
  - { name: keyed, match: { path: /keyed/** }, upstream: api, auth: none, rate_limit: per-key }
`);
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});
beforeEach(() => {
  upstream.seen.length = 0;
});

describe('header-keyed rate limits', () => {
  it('give every header value its own bucket, whatever the case the config names it in', async () => {
    const send = (key: string) => rawRequest(gw.port, { target: '/keyed/x', headers: [['X-Api-Key', key]] });
    const statuses = [];
    for (const key of ['alice', 'alice', 'alice', 'bob']) statuses.push((await send(key)).status);
    expect(statuses).toEqual([200, 200, 429, 200]);
    expect(upstream.seen.map((r) => r.headers['x-api-key'])).toEqual(['alice', 'alice', 'bob']);
  });

  it('count a request without the header against its client IP, not a bucket shared with everyone', async () => {
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await rawRequest(gw.port, { target: '/keyed/anon' })).status);
    expect(statuses).toEqual([200, 200, 429]);
    expect(upstream.seen).toHaveLength(2);
    expect((await rawRequest(gw.port, { target: '/keyed/x', headers: [['X-Api-Key', 'carol']] })).status).toBe(200);
  });
});
