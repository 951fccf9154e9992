import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startIdp, type Idp } from '../helpers/idp.js';
import { createLatch, startRecordingUpstream, type Latch, type RecordingUpstream } from '../helpers/upstream.js';
import { bearer, expectRefused, invalidToken, refuses } from './auth-fixture.js';

/**
 * The verified-token cache through a running gateway: counted by `authgate_token_cache_total{result}`, where
 * `miss` is a verification, `hit` a cached identity and `shared` a request that waited for a verification of
 * the same token already under way. A reload keeps the tokens of unchanged issuers verified; a changed issuer's
 * tokens are verified again and a removed issuer's are refused.
 */

let main: Idp;
let partner: Idp;
let upstream: RecordingUpstream;
let gw: TestGateway;

/** Serves the main IdP's JWKS, or holds each answer until the test releases it. */
let jwks: Server;
let jwksUrl: string;
let held: Latch | undefined;

function yaml(options: { partner: boolean; mainAudiences?: string[] }): string {
  const partnerIssuer = `
  partner: { issuer: ${partner.issuer}, jwks_uri: ${partner.jwksUri}, audiences: [${partner.audience}] }`;
  return `
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  main:
    issuer: ${main.issuer}
    jwks_uri: ${jwksUrl}
    audiences: [${(options.mainAudiences ?? [main.audience]).join(', ')}]
    jwks_cache: { min_refetch_interval: 0s }${options.partner ? partnerIssuer : ''}
upstreams:
  api: { url: ${upstream.url}, timeout: 2s }
identity:
  headers: { X-User-Id: subject }
routes:
  - { name: api, match: { path: /** }, upstream: api }
`;
}

beforeAll(async () => {
  [main, partner] = await Promise.all([startIdp({ keys: ['rsa'] }), startIdp({ keys: ['rsa'] })]);
  upstream = await startRecordingUpstream();
  jwks = createServer((_req, res) => {
    void (async () => {
      const document = await (await fetch(main.jwksUri)).text();
      await held?.released;
      res.writeHead(200, { 'content-type': 'application/json' }).end(document);
    })();
  });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
  gw = await startTestGateway(yaml({ partner: true }));
});

afterAll(async () => {
  await gw?.close();
  await new Promise((resolve) => jwks?.close(resolve));
  await Promise.all([upstream?.close(), main?.close(), partner?.close()]);
});

beforeEach(async () => {
  upstream.seen.length = 0;
  held = undefined;
  await reload(yaml({ partner: true }));
});

async function reload(config: string): Promise<void> {
  await writeFile(gw.file, config);
  const loaded = await loadConfig(gw.file, {});
  await gw.gateway.reload(loaded.config as GatewayConfig);
}

type Counts = Record<'hit' | 'miss' | 'shared', number>;

async function cacheCounts(): Promise<Counts> {
  const { values } = await gw.metrics.tokenCache.get();
  const count = (result: string): number => values.find((value) => value.labels.result === result)?.value ?? 0;
  return { hit: count('hit'), miss: count('miss'), shared: count('shared') };
}

/** What the cache counters did while `action` ran. */
async function countsDuring(action: () => Promise<void>): Promise<Counts> {
  const before = await cacheCounts();
  await action();
  const after = await cacheCounts();
  return { hit: after.hit - before.hit, miss: after.miss - before.miss, shared: after.shared - before.shared };
}

async function status(token: string): Promise<number> {
  return (await rawRequest(gw.port, { target: '/api/x', headers: [bearer(token)] })).status;
}

describe('concurrent requests with one fresh token', () => {
  /** A key the gateway has not loaded yet: its first token makes the gateway refetch the JWKS, which is held. */
  function tokenWithNewKey(publish: boolean): string {
    const key = main.generateKey('rsa');
    if (publish) main.publish(key);
    return main.sign({ sub: 'crowd' }, { key });
  }

  async function sendTogether(token: string, count: number): Promise<number[]> {
    held = createLatch();
    const before = await cacheCounts();
    const responses = Array.from({ length: count }, () => status(token));
    // Every request is inside the authenticator (counted) before the keys arrive; within the gateway's 5 s JWKS
    // fetch timeout, which the held refetch is running against.
    await expect.poll(async () => {
      const now = await cacheCounts();
      return now.miss + now.shared - before.miss - before.shared;
    }, { timeout: 4000 }).toBe(count);
    held.release();
    return Promise.all(responses);
  }

  it('are verified once: one miss, the others share its result, and all pass', async () => {
    const token = tokenWithNewKey(true);
    let statuses: number[] = [];
    const counts = await countsDuring(async () => {
      statuses = await sendTogether(token, 12);
    });
    expect({ statuses, counts, forwarded: upstream.seen.length }).toEqual({
      statuses: Array(12).fill(200),
      counts: { hit: 0, miss: 1, shared: 11 },
      forwarded: 12,
    });
  });

  it('share a failure too, which is not cached: all refused, nothing forwarded, and the next request verifies again', async () => {
    const token = tokenWithNewKey(false);
    let statuses: number[] = [];
    const counts = await countsDuring(async () => {
      statuses = await sendTogether(token, 8);
    });
    expect({ statuses, counts, forwarded: upstream.seen.length }).toEqual({
      statuses: Array(8).fill(401),
      counts: { hit: 0, miss: 1, shared: 7 },
      forwarded: 0,
    });
    expect(await countsDuring(async () => {
      await refuses(gw, upstream, { target: '/api/x', headers: [bearer(token)] }, invalidToken('signature', 'unknown_kid'), [token]);
    })).toEqual({ hit: 0, miss: 1, shared: 0 });
  });
});

describe('a reload', () => {
  it('keeps the tokens of unchanged issuers verified: the next request is a cache hit', async () => {
    const tokens = [main.sign(), partner.sign()];
    for (const token of tokens) expect(await status(token)).toBe(200);
    await reload(yaml({ partner: true }));
    expect(await countsDuring(async () => {
      for (const token of tokens) expect(await status(token)).toBe(200);
    })).toEqual({ hit: 2, miss: 0, shared: 0 });
  });

  it('verifies the tokens of a changed issuer again, under its new settings', async () => {
    const accepted = main.sign();
    const nowRefused = main.sign({ aud: 'https://old.example' });
    await reload(yaml({ partner: true, mainAudiences: [main.audience, 'https://old.example'] }));
    for (const token of [accepted, nowRefused]) expect(await status(token)).toBe(200);
    const partnerToken = partner.sign();
    expect(await status(partnerToken)).toBe(200);

    await reload(yaml({ partner: true }));
    upstream.seen.length = 0;
    expect(await countsDuring(async () => {
      await refuses(gw, upstream, { target: '/api/y', headers: [bearer(nowRefused)] }, invalidToken('audience', 'audience'), [nowRefused]);
      expect(await status(accepted)).toBe(200);
      expect(await status(partnerToken)).toBe(200);
    })).toEqual({ hit: 1, miss: 2, shared: 0 });
  });

  it('refuses the cached tokens of a removed issuer (401), and the upstream sees none of them', async () => {
    const token = partner.sign();
    expect(await status(token)).toBe(200);
    await reload(yaml({ partner: false }));
    upstream.seen.length = 0;
    const res = await rawRequest(gw.port, { target: '/api/x', headers: [bearer(token)] });
    await expectRefused(gw, upstream, res, invalidToken('issuer', 'unknown_issuer'), [token]);
  });
});
