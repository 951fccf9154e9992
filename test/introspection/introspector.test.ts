import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Secret } from '../../src/config/secret.js';
import type { IntrospectionConfig } from '../../src/config/introspection.js';
import { Introspector } from '../../src/mechanisms/authenticators/introspection/introspector.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import { issuerConfigFor } from '../helpers/idp.js';
import { CLIENTS, startOidcProvider, type OidcProvider } from '../helpers/oidc-provider.js';

const AUDIENCE = 'api://orders';
let op: OidcProvider;
let keyFile: string;
/** Every log line any introspector of this file wrote. */
let logText = '';
const logSink = new Writable({ write: (chunk: Buffer, _encoding, done) => ((logText += chunk.toString()), done()) });

beforeAll(async () => {
  op = await startOidcProvider();
  keyFile = join(await mkdtemp(join(tmpdir(), 'authgate-client-key-')), 'client.key');
  await writeFile(keyFile, op.clientKey.export({ type: 'pkcs8', format: 'pem' }));
});
afterAll(() => op.close());

function configFor(overrides: Partial<IntrospectionConfig> = {}): IntrospectionConfig {
  return {
    endpoint: op.introspectionEndpoint,
    clientId: CLIENTS.basic,
    auth: { method: 'client_secret_basic', secret: new Secret(op.secret) },
    cache: { maxTtlMs: 300_000, negativeTtlMs: 10_000, maxEntries: 1000 },
    jwt: false,
    maxConcurrent: 64,
    ...overrides,
  };
}

interface Harness {
  readonly introspector: Introspector;
  readonly metrics: Metrics;
  /** Moves the introspector's clock. */
  advance(ms: number): void;
  count(metric: 'introspection' | 'introspectionCache', result: string): Promise<number>;
}

async function harness(config: IntrospectionConfig = configFor(), issuerUrl = op.issuer): Promise<Harness> {
  const metrics = new Metrics();
  let offsetMs = 0;
  const issuer = issuerConfigFor({ issuer: issuerUrl, audience: AUDIENCE, jwksUri: `${issuerUrl}/jwks` }, { name: 'op' });
  const logger = createLogger('info', logSink);
  const introspector = await Introspector.create(issuer, config, { logger, metrics, nowMs: () => Date.now() + offsetMs });
  return {
    introspector,
    metrics,
    advance: (ms) => void (offsetMs += ms),
    async count(metric, result) {
      const { values } = await metrics[metric].get();
      return values.find((value) => value.labels.result === result)?.value ?? 0;
    },
  };
}

describe('introspection against a certified OpenID provider', () => {
  it('accepts an active token and reads the identity through the claim paths', async () => {
    const { introspector } = await harness();
    const result = await introspector.introspect(await op.issueAccessToken(AUDIENCE));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.identity.issuer.name).toBe('op');
    expect(result.identity.clientId).toBe(CLIENTS.issuer);
    expect(result.identity.scopes).toEqual(['orders:read']);
    expect(result.identity.exp).toBeGreaterThan(Date.now() / 1000);
    expect(Object.isFrozen(result.identity.claims)).toBe(true);
  });

  it('refuses a token the provider does not know (inactive)', async () => {
    const { introspector } = await harness();
    expect(await introspector.introspect('not-a-token-the-provider-issued')).toEqual({ ok: false, reason: 'inactive' });
  });

  it('refuses a token revoked at the provider', async () => {
    const { introspector } = await harness();
    const token = await op.issueAccessToken(AUDIENCE);
    await op.revoke(token);
    expect(await introspector.introspect(token)).toEqual({ ok: false, reason: 'inactive' });
  });

  it('refuses an active answer whose exp has passed by the gateway clock', async () => {
    const { introspector, advance } = await harness();
    advance(3_600_000);
    expect(await introspector.introspect(await op.issueAccessToken(AUDIENCE))).toEqual({ ok: false, reason: 'expired' });
  });

  it('refuses a token issued for another audience (resource indicator)', async () => {
    const { introspector } = await harness();
    expect(await introspector.introspect(await op.issueAccessToken('api://billing'))).toEqual({ ok: false, reason: 'audience' });
  });

  it('refuses an answer that names another issuer', async () => {
    const { introspector } = await harness(configFor(), 'https://someone-else.example/');
    expect(await introspector.introspect(await op.issueAccessToken(AUDIENCE))).toEqual({ ok: false, reason: 'issuer' });
  });

  it('finds the endpoint in the discovery document', async () => {
    const { introspector } = await harness(configFor({ endpoint: undefined }));
    expect((await introspector.introspect(await op.issueAccessToken(AUDIENCE))).ok).toBe(true);
  });

  it.each([
    ['client_secret_basic', CLIENTS.basic],
    ['client_secret_post', CLIENTS.post],
  ] as const)('authenticates with %s', async (method, clientId) => {
    const { introspector } = await harness(configFor({ clientId, auth: { method, secret: new Secret(op.secret) } }));
    expect((await introspector.introspect(await op.issueAccessToken(AUDIENCE))).ok).toBe(true);
  });

  it('authenticates with private_key_jwt (RFC 7523 assertion)', async () => {
    const { introspector } = await harness(configFor({ clientId: CLIENTS.jwt, auth: { method: 'private_key_jwt', keyFile, algorithm: 'ES256' } }));
    expect((await introspector.introspect(await op.issueAccessToken(AUDIENCE))).ok).toBe(true);
  });

  it('a wrong client secret makes the endpoint unavailable, and the secret appears in no log line', async () => {
    const wrong = 'the-wrong-secret-must-never-be-logged';
    const { introspector, count } = await harness(configFor({ auth: { method: 'client_secret_basic', secret: new Secret(wrong) } }));
    expect(await introspector.introspect(await op.issueAccessToken(AUDIENCE))).toEqual({ ok: false, reason: 'unavailable' });
    expect(await count('introspection', 'unavailable')).toBe(1);
    expect(logText).toContain('introspection endpoint unavailable');
    expect(logText).not.toContain(wrong);
    expect(logText).not.toContain(op.secret);
    expect(JSON.stringify(configFor())).not.toContain(op.secret);
  });
});

describe('introspection cache', () => {
  it('answers a second lookup from the cache: one call to the provider', async () => {
    const { introspector, count } = await harness();
    const token = await op.issueAccessToken(AUDIENCE);
    const before = op.introspections;
    const first = await introspector.introspect(token);
    const second = introspector.introspect(token);
    expect(second).toBe(first);
    expect(op.introspections - before).toBe(1);
    expect(await count('introspectionCache', 'hit')).toBe(1);
    expect(await count('introspectionCache', 'miss')).toBe(1);
  });

  it('keeps an inactive result for negative_ttl, then asks again', async () => {
    const { introspector, advance } = await harness();
    const before = op.introspections;
    await introspector.introspect('unknown-token');
    await introspector.introspect('unknown-token');
    expect(op.introspections - before).toBe(1);
    advance(10_001);
    await introspector.introspect('unknown-token');
    expect(op.introspections - before).toBe(2);
  });

  it('keeps an active result no longer than max_ttl', async () => {
    const { introspector, advance } = await harness(configFor({ cache: { maxTtlMs: 1000, negativeTtlMs: 0, maxEntries: 10 } }));
    const token = await op.issueAccessToken(AUDIENCE);
    const before = op.introspections;
    await introspector.introspect(token);
    advance(1001);
    expect((await introspector.introspect(token)).ok).toBe(true);
    expect(op.introspections - before).toBe(2);
  });

  it('sends one request for N concurrent lookups of the same token', async () => {
    const { introspector, count } = await harness();
    const token = await op.issueAccessToken(AUDIENCE);
    const before = op.introspections;
    const results = await Promise.all(Array.from({ length: 20 }, () => introspector.introspect(token)));
    expect(op.introspections - before).toBe(1);
    expect(new Set(results).size).toBe(1);
    expect(results[0]?.ok).toBe(true);
    expect(await count('introspectionCache', 'shared')).toBe(19);
  });

  it('holds at most max_entries results', async () => {
    const { introspector } = await harness(configFor({ cache: { maxTtlMs: 300_000, negativeTtlMs: 300_000, maxEntries: 2 } }));
    const before = op.introspections;
    for (const token of ['t1', 't2', 't3', 't1']) await introspector.introspect(token);
    expect(op.introspections - before).toBe(4);
  });

  it('with the provider down: cached tokens keep working, uncached ones are unavailable, until it is back', async () => {
    const { introspector, count } = await harness();
    const cachedToken = await op.issueAccessToken(AUDIENCE);
    const uncachedToken = await op.issueAccessToken(AUDIENCE);
    expect((await introspector.introspect(cachedToken)).ok).toBe(true);
    await op.stop();
    try {
      expect((await introspector.introspect(cachedToken)).ok).toBe(true);
      expect(await introspector.introspect(uncachedToken)).toEqual({ ok: false, reason: 'unavailable' });
      expect(await count('introspection', 'unavailable')).toBe(1);
    } finally {
      await op.start();
    }
    // Unavailable is never cached: the next lookup asks again and succeeds.
    expect((await introspector.introspect(uncachedToken)).ok).toBe(true);
  });
});

describe('answers of other shapes (a loopback endpoint)', () => {
  let server: Server;
  let answer: Record<string, unknown> = {};
  let status = 200;
  let endpoint = '';
  beforeAll(async () => {
    server = createServer((_req, res) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(answer)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  // The certified provider leaves token_type out for refresh tokens; these are how other providers mark them.
  it.each([
    ['RFC 7662 token_type', { token_type: 'refresh_token' }],
    ['RFC 8693 token type URN', { token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }],
    ['Ory Hydra token_use', { token_use: 'refresh_token' }],
  ])('refuses a refresh token (%s)', async (_name, marker) => {
    answer = { active: true, iss: op.issuer, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600, sub: 'alice', ...marker };
    const { introspector } = await harness(configFor({ endpoint }));
    expect(await introspector.introspect('a-refresh-token')).toEqual({ ok: false, reason: 'type' });
  });

  it('refuses an answer whose nbf is ahead of the clock (RFC 7662 §2.2), and takes one whose nbf has passed', async () => {
    const now = Math.floor(Date.now() / 1000);
    answer = { active: true, iss: op.issuer, aud: AUDIENCE, exp: now + 600, nbf: now + 300, sub: 'alice' };
    const { introspector } = await harness(configFor({ endpoint }));
    expect(await introspector.introspect('a-token-not-yet-valid')).toEqual({ ok: false, reason: 'claims' });
    answer = { ...answer, nbf: now - 10 };
    expect((await introspector.introspect('a-token-valid-now')).ok).toBe(true);
  });

  it('accepts the same answer for an access token (the marker alone decides)', async () => {
    answer = { active: true, iss: op.issuer, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600, sub: 'alice', token_type: 'Bearer' };
    const { introspector } = await harness(configFor({ endpoint }));
    expect((await introspector.introspect('an-access-token')).ok).toBe(true);
  });

  it('a 5xx answer: the cached token keeps working, an uncached one is unavailable', async () => {
    answer = { active: true, iss: op.issuer, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600, sub: 'alice' };
    status = 200;
    const { introspector } = await harness(configFor({ endpoint }));
    expect((await introspector.introspect('cached-token')).ok).toBe(true);
    status = 503;
    try {
      expect((await introspector.introspect('cached-token')).ok).toBe(true);
      expect(await introspector.introspect('uncached-token')).toEqual({ ok: false, reason: 'unavailable' });
    } finally {
      status = 200;
    }
  });

  it('treats an answer without a boolean active as the endpoint failing, not the token', async () => {
    answer = { error: 'server_error' };
    const { introspector } = await harness(configFor({ endpoint }));
    expect(await introspector.introspect('some-token')).toEqual({ ok: false, reason: 'unavailable' });
  });
});

describe('a flood of distinct tokens (a loopback endpoint that holds its answers)', () => {
  let server: Server;
  let endpoint = '';
  let inFlight = 0;
  let mostInFlight = 0;
  let held: (() => void)[] = [];
  let holding = true;
  /** Resolves once this many requests are held at the endpoint. */
  let whenHeld: { count: number; resolve: () => void } | undefined;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      inFlight += 1;
      mostInFlight = Math.max(mostInFlight, inFlight);
      const answer = (): void => {
        inFlight -= 1;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ active: true, iss: op.issuer, aud: AUDIENCE, sub: 'alice' }));
      };
      if (!holding) return answer();
      held.push(answer);
      if (whenHeld !== undefined && held.length >= whenHeld.count) whenHeld.resolve();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('asks at most max_concurrent at once, lets as many wait, and refuses the rest at once as unavailable', async () => {
    const { introspector, count } = await harness(configFor({ endpoint, maxConcurrent: 2 }));
    const logBefore = logText.length;
    const heldTwo = new Promise<void>((resolve) => (whenHeld = { count: 2, resolve }));
    const admitted = ['t1', 't2', 't3', 't4'].map((token) => introspector.introspect(token));
    // Distinct tokens past those are refused without a request and without waiting.
    for (const token of ['t5', 't6', 't7']) expect(introspector.introspect(token)).toEqual({ ok: false, reason: 'unavailable' });
    // The same token as one under way joins it instead.
    expect(introspector.introspect('t1')).toBe(admitted[0]);
    await heldTwo;
    holding = false;
    for (const answer of held) answer();
    held = [];
    const results = await Promise.all(admitted);
    expect(results.map((result) => result.ok)).toEqual([true, true, true, true]);
    expect(mostInFlight).toBe(2);
    expect(await count('introspectionCache', 'shed')).toBe(3);
    expect(await count('introspectionCache', 'miss')).toBe(4);
    // Drained: a new token is asked about again.
    expect((await introspector.introspect('t8')).ok).toBe(true);
    // A second flood within the minute: refused the same, and no second warning.
    holding = true;
    const heldAgain = new Promise<void>((resolve) => (whenHeld = { count: 2, resolve }));
    const second = ['t9', 't10', 't11', 't12'].map((token) => introspector.introspect(token));
    expect(introspector.introspect('t13')).toEqual({ ok: false, reason: 'unavailable' });
    await heldAgain;
    holding = false;
    for (const answer of held.splice(0)) answer();
    await Promise.all(second);
    expect(logText.slice(logBefore).match(/introspection endpoint busy/g)).toHaveLength(1);
  });
});
