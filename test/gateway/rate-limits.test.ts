import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml, startIdp, type Idp } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

let upstream: RecordingUpstream;
let idp: Idp;
let gw: TestGateway;

/** An upstream with rate limits of its own says so on requests to /keyed/own/**. */
const UPSTREAM_LIMIT = { 'RateLimit-Limit': '7', 'RateLimit-Remaining': '6' };

beforeAll(async () => {
  upstream = await startRecordingUpstream((req) => (req.url.startsWith('/keyed/own/') ? { headers: UPSTREAM_LIMIT } : undefined));
  idp = await startIdp({ keys: ['rsa'] });
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s, trusted_proxies: [127.0.0.1/32] }
admin: { listen: 127.0.0.1:0 }
issuers:
${issuerYaml(idp)}
upstreams:
  api: { url: ${upstream.url} }
  dead: { url: "http://127.0.0.1:9", timeout: 1s }
rate_limits:
  per-key: { key: header.X-Api-Key, limit: 2, window: 1m }
  per-tenant: { key: claims.tenant, limit: 2, window: 1m }
  per-client: { key: client_id, limit: 1, window: 1m }
  per-address: { key: ip, limit: 2, window: 1m }
  per-credential: { key: header.Authorization, limit: 2, window: 1m }
routes:
  - { name: by-credential, match: { path: /by-credential/** }, upstream: api, auth: none, rate_limit: per-credential }
  - { name: by-address, match: { path: /by-address/** }, upstream: api, auth: none, rate_limit: per-address }
  - { name: tenant, match: { path: /tenant/** }, upstream: api, auth: optional, rate_limit: per-tenant }
  - { name: client, match: { path: /client/** }, upstream: api, rate_limit: per-client }
  - { name: keyed, match: { path: /keyed/** }, upstream: api, auth: none, rate_limit: per-key }
  - { name: dead, match: { path: /dead/** }, upstream: dead, auth: none, rate_limit: per-key }
`);
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  await idp?.close();
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

  it('count one value however it is spelt where servers read it alike: whitespace, the case of an auth scheme', async () => {
    const send = (value: string) => rawRequest(gw.port, { target: '/by-credential/x', headers: [['Authorization', value]] });
    const statuses = [];
    for (const value of ['Bearer abc.def', 'bearer  abc.def ', 'BEARER abc.def', 'Bearer other']) statuses.push((await send(value)).status);
    expect(statuses).toEqual([200, 200, 429, 200]);
    expect(upstream.seen).toHaveLength(3);
  });

  it('count a request without the header against its client IP, not a bucket shared with everyone', async () => {
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await rawRequest(gw.port, { target: '/keyed/anon' })).status);
    expect(statuses).toEqual([200, 200, 429]);
    expect(upstream.seen).toHaveLength(2);
    expect((await rawRequest(gw.port, { target: '/keyed/x', headers: [['X-Api-Key', 'carol']] })).status).toBe(200);
  });
});

describe('address-keyed rate limits', () => {
  it('count an IPv6 client by its /64: rotating the address inside it gets no new allowance', async () => {
    const from = (address: string) => rawRequest(gw.port, { target: '/by-address/x', headers: [['X-Forwarded-For', address]] });
    const statuses = [];
    for (const address of ['2001:db8::1', '2001:DB8:0:0::2', '2001:db8::ffff:3', '2001:db8:0:1::1']) statuses.push((await from(address)).status);
    expect(statuses).toEqual([200, 200, 429, 200]);
    expect(upstream.seen).toHaveLength(3);
  });
});

describe('RateLimit-* on answers of a limited route', () => {
  const send = (target: string, key: string) => rawRequest(gw.port, { target, headers: [['X-Api-Key', key]] });

  it('go on the proxied answer once each, beside the upstream\'s headers', async () => {
    const res = await send('/keyed/x', 'dave');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers).toMatchObject({ 'ratelimit-limit': '2', 'ratelimit-remaining': '1', 'ratelimit-reset': '60' });
  });

  it('give way to an upstream that sends its own: the client reads one value of each, the upstream\'s', async () => {
    const res = await send('/keyed/own/x', 'erin');
    expect(res.status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
    // Repeated headers would read "7, 2" here.
    expect(res.headers['ratelimit-limit']).toBe('7');
    expect(res.headers['ratelimit-remaining']).toBe('6');
    expect(res.headers['ratelimit-reset']).toBe('60');
  });

  it('go on the 502 of an upstream that refuses the connection too', async () => {
    const res = await send('/dead/x', 'frank');
    expect(res.status).toBe(502);
    expect(res.json<{ error: string }>().error).toBe('bad_gateway');
    expect(res.headers).toMatchObject({ 'ratelimit-limit': '2', 'ratelimit-remaining': '1' });
  });
});

describe('identity-keyed rate limits', () => {
  const send = (target: string, token?: string) =>
    rawRequest(gw.port, { target, headers: token === undefined ? [] : [['Authorization', `Bearer ${token}`]] });
  const statuses = async (requests: readonly (() => Promise<{ status: number }>)[]): Promise<number[]> => {
    const seen: number[] = [];
    for (const request of requests) seen.push((await request()).status);
    return seen;
  };

  it('count every identity with the same claim value against one bucket, each token every time it comes back', async () => {
    const [ann, bob, cid] = [idp.sign({ sub: 'ann', tenant: 'acme' }), idp.sign({ sub: 'bob', tenant: 'acme' }), idp.sign({ sub: 'cid', tenant: 'globex' })];
    const sent = await statuses([() => send('/tenant/a', ann), () => send('/tenant/b', bob), () => send('/tenant/c', ann), () => send('/tenant/d', cid)]);
    expect(sent).toEqual([200, 200, 429, 200]);
    expect(upstream.seen.map((seen) => seen.url)).toEqual(['/tenant/a', '/tenant/b', '/tenant/d']);
  });

  it('count an identity without the claim, like a request without a token, against its client IP', async () => {
    const untenanted = idp.sign({ sub: 'dee' });
    const sent = await statuses([() => send('/tenant/e', untenanted), () => send('/tenant/f'), () => send('/tenant/g', untenanted), () => send('/tenant/h')]);
    expect(sent).toEqual([200, 200, 429, 429]);
    expect(upstream.seen.map((seen) => seen.url)).toEqual(['/tenant/e', '/tenant/f']);
  });

  it('count the tokens of one client (azp) against one bucket', async () => {
    const [first, second, other] = [idp.sign({ sub: 'eve', azp: 'app-1' }), idp.sign({ sub: 'fay', azp: 'app-1' }), idp.sign({ sub: 'gus', azp: 'app-2' })];
    expect(await statuses([() => send('/client/a', first), () => send('/client/b', second), () => send('/client/c', other)])).toEqual([200, 429, 200]);
    expect(upstream.seen.map((seen) => seen.url)).toEqual(['/client/a', '/client/c']);
  });
});
