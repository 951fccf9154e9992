import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { main as cli } from '../../src/cli/main.js';
import { rawRequest, startTestGateway, type RawRequest, type TestGateway } from '../helpers/gateway.js';
import { startIdp, type Idp } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream, type SeenRequest } from '../helpers/upstream.js';
import { bearer, expectRefused, invalidRequest, refuses, upgrade } from './auth-fixture.js';

/**
 * With `forward_token: false` the upstream never gets the token, whichever source it came in and whichever route
 * it reached: the token header, the token cookie and the token query parameter (in every spelling an upstream
 * decodes to that name) are taken out on `auth: none`, `auth: optional` and protected routes alike, and on
 * WebSocket upgrades. `authgate explain` and forward-auth run the same chain and say the same.
 */

let idp: Idp;
let upstream: RecordingUpstream;
let gw: TestGateway;
/** The same routes without a query source: `access_token` in the query is still kept from the upstream. */
let plain: TestGateway;
/** `forward_token: true` with a custom token header. */
let forwarding: TestGateway;

function yaml(tokens: string, forwardToken = false): string {
  return `
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s, trusted_proxies: [127.0.0.1/32], forward_auth: nginx }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
tokens:
${tokens}
issuers:
  main: { issuer: ${idp.issuer}, jwks_uri: ${idp.jwksUri}, audiences: [${idp.audience}] }
upstreams:
  api: { url: ${upstream.url}, timeout: 2s }
identity:
  headers: { X-User-Id: subject }
  forward_token: ${forwardToken}
routes:
  - { name: public, match: { path: /public/** }, upstream: api, auth: none }
  - { name: optional, match: { path: /optional/** }, upstream: api, auth: optional }
  - { name: api, match: { path: /** }, upstream: api }
`;
}

const WITH_QUERY = '  - header: Authorization\n  - cookie: access_token\n  - query: access_token\n  - query: token';
const WITHOUT_QUERY = '  - header: Authorization\n  - cookie: access_token';

beforeAll(async () => {
  idp = await startIdp({ keys: ['rsa'] });
  upstream = await startRecordingUpstream();
  [gw, plain, forwarding] = await Promise.all([
    startTestGateway(yaml(WITH_QUERY)),
    startTestGateway(yaml(WITHOUT_QUERY)),
    startTestGateway(yaml('  - header: X-Access-Token\n  - query: access_token', true)),
  ]);
});

afterAll(async () => {
  await Promise.all([gw?.close(), plain?.close(), forwarding?.close()]);
  await Promise.all([upstream?.close(), idp?.close()]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

/** Every spelling of `access_token` an upstream decodes to that name, each with its own token. */
function tokenParameters(tokens: readonly string[]): string {
  const names = ['access_token', 'access%5Ftoken', '%61ccess_token', 'access%5ftoken', '%61%63%63%65%73%73%5F%74%6F%6B%65%6E'];
  return names.map((name, index) => `${name}=${tokens[index % tokens.length]}`).join('&');
}

/** What reached the upstream for one forwarded request: the target and the token-bearing headers. */
async function forwarded(target: TestGateway, request: RawRequest): Promise<{ url: string; authorization: unknown; cookie: unknown }> {
  const res = await rawRequest(target.port, request);
  expect(res.status).toBe(200);
  expect(upstream.seen).toHaveLength(1);
  const seen = upstream.seen[0] as SeenRequest;
  return { url: seen.url, authorization: seen.headers.authorization, cookie: seen.headers.cookie };
}

describe('an auth: none route', () => {
  it('forwards no token: every token parameter in every spelling and copy, the Authorization header and the token cookie go', async () => {
    const tokens = [idp.sign(), idp.sign(), idp.sign()];
    const seen = await forwarded(gw, {
      target: `/public/feed?page=2&${tokenParameters(tokens)}&sort=asc&%74oken=${tokens[2]}`,
      headers: [bearer(tokens[0] as string), ['Cookie', `theme=dark; access_token=${tokens[1]}`]],
    });
    expect(seen).toEqual({ url: '/public/feed?page=2&sort=asc', authorization: undefined, cookie: 'theme=dark' });
  });

  it('forwards no access_token parameter when no query source is configured either', async () => {
    const token = idp.sign();
    expect(await forwarded(plain, { target: `/public/feed?${tokenParameters([token])}&page=2` })).toEqual({
      url: '/public/feed?page=2',
      authorization: undefined,
      cookie: undefined,
    });
  });

  it('keeps other parameters byte for byte, including look-alikes no framework reads as the name', async () => {
    const target = '/public/feed?access_token_hint=1&x=%41&accesstoken=2&raccess_token=3&&flag';
    expect((await forwarded(gw, { target })).url).toBe(target);
  });

  it('removes the spellings upstream frameworks read as the name: any case, . + or [ for _, [], after a ;', async () => {
    const token = idp.sign();
    const spellings = ['Access_Token', 'access.token', 'access+token', 'access[token', 'access_token[]'].map((name) => `${name}=${token}`);
    const seen = await forwarded(gw, { target: `/public/feed?page=2&${spellings.join('&')}&q=1;access_token=${token}` });
    expect(seen.url).toBe('/public/feed?page=2&q=1');
  });
});

describe('an auth: optional route without a token', () => {
  it('forwards no other credentials: a Basic Authorization header and an empty token cookie go', async () => {
    const seen = await forwarded(gw, {
      target: '/optional/feed?page=2',
      headers: [['Authorization', 'Basic dXNlcjpwYXNz'], ['Cookie', 'access_token=; keep=1']],
    });
    expect(seen).toEqual({ url: '/optional/feed?page=2', authorization: undefined, cookie: 'keep=1' });
  });
});

describe('a WebSocket upgrade with its token in the query', () => {
  it.each(['access_token', 'access%5Ftoken', '%61ccess_token'])('under the name %s: accepted, and the upstream gets the target without it', async (name) => {
    const token = idp.sign({ sub: 'ws-user' });
    const result = await upgrade(gw.port, `/ws/chat?room=1&${name}=${token}&x=2`);
    expect(result).toEqual({ upgraded: true, status: 101, echo: 'ping-bytes' });
    expect(upstream.seen.map((seen) => [seen.upgrade, seen.url, seen.headers['x-user-id']])).toEqual([[true, '/ws/chat?room=1&x=2', 'ws-user']]);
  });

  it('sent twice under two spellings: refused (400), nothing reaches the upstream', async () => {
    const token = idp.sign();
    const result = await upgrade(gw.port, `/ws/chat?access_token=${token}&access%5Ftoken=${token}`);
    expect(result.upgraded).toBe(false);
    if (!result.upgraded) await expectRefused(gw, upstream, result.response, invalidRequest('multiple_query_tokens'), [token]);
  });
});

describe('forward_token: true', () => {
  it('forwards the token as it was verified, and not a second copy under an underscore spelling of the header', async () => {
    const [token, other] = [idp.sign({ sub: 'verified' }), idp.sign({ sub: 'smuggled' })];
    const res = await rawRequest(forwarding.port, { target: '/api/x', headers: [['X-Access-Token', token], ['X_Access_Token', other]] });
    expect(res.status).toBe(200);
    const seen = upstream.seen[0] as SeenRequest;
    const tokenHeaders = seen.rawHeaders.filter((_, index) => index % 2 === 0 && /^x[-_]access[-_]token$/i.test(seen.rawHeaders[index] as string));
    expect({ names: tokenHeaders, value: seen.headers['x-access-token'], user: seen.headers['x-user-id'] }).toEqual({
      names: ['x-access-token'],
      value: token,
      user: 'verified',
    });
  });

  it('keeps the token parameter in the query', async () => {
    const token = idp.sign();
    expect((await forwarded(forwarding, { target: `/public/feed?access%5Ftoken=${token}&a=1` })).url).toBe(`/public/feed?access%5Ftoken=${token}&a=1`);
  });
});

describe('explain and forward-auth run the same chain', () => {
  async function explain(url: string): Promise<string> {
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    expect(await cli(['explain', '-c', gw.file, '--claims', '{"sub":"x"}', 'GET', url], { stdout, stderr: new PassThrough() })).toBe(0);
    return out;
  }

  async function verify(uri: string, headers: Array<[string, string]> = []): Promise<number> {
    const res = await rawRequest(gw.port, { target: '/_authgate/verify', headers: [['X-Original-URI', uri], ['X-Original-Method', 'GET'], ...headers] });
    return res.status;
  }

  it('explain shows the public request forwarded without the token parameter, as the proxy forwards it', async () => {
    const token = idp.sign();
    const target = `/public/feed?${tokenParameters([token])}&page=2`;
    const out = await explain(`http://api.local${target}`);
    expect(out).toContain('result: forwarded to upstream api as /public/feed?page=2\n');
    expect((await forwarded(gw, { target })).url).toBe('/public/feed?page=2');
  });

  it('forward-auth lets the same public request through, and refuses a query token on a protected plain request as the proxy does', async () => {
    const token = idp.sign();
    expect(await verify(`/public/feed?access%5Ftoken=${token}`)).toBe(200);
    expect(await verify(`/api/x?access%5Ftoken=${token}`)).toBe(400);
    await refuses(gw, upstream, { target: `/api/x?access%5Ftoken=${token}` }, invalidRequest('query_token_not_upgrade'), [token]);
  });
});
