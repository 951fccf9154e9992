import { afterEach, describe, expect, it } from 'vitest';
import type { RateLimitConfig } from '../../src/config/types.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import { createStore, JTI_RETENTION_GRACE_S, SUBJECT_RETENTION_S, type RevocationSubject, type Store } from '../../src/store/index.js';
import { limiterShape } from '../../src/store/rate-limits.js';

const T = 1_700_000_000; // epoch seconds the table is written against
const HOUR = 3600;

type Revocation =
  | { jti: string; exp: number; issuer?: string }
  | { subject: string; before: number; issuer?: string };

function token(overrides: Partial<RevocationSubject>): RevocationSubject {
  return { issuer: 'auth0', jti: undefined, subject: undefined, iat: undefined, ...overrides };
}

const cases: { name: string; revoke: Revocation[]; token: RevocationSubject; at?: number; revoked: boolean }[] = [
  { name: 'nothing revoked', revoke: [], token: token({ jti: 'a', subject: 'alice', iat: T }), revoked: false },
  { name: 'jti under its issuer', revoke: [{ jti: 'a', exp: T + HOUR, issuer: 'auth0' }], token: token({ jti: 'a' }), revoked: true },
  { name: 'jti under every issuer', revoke: [{ jti: 'a', exp: T + HOUR }], token: token({ issuer: 'okta', jti: 'a' }), revoked: true },
  { name: 'jti of another issuer', revoke: [{ jti: 'a', exp: T + HOUR, issuer: 'okta' }], token: token({ jti: 'a' }), revoked: false },
  { name: 'another jti', revoke: [{ jti: 'a', exp: T + HOUR }], token: token({ jti: 'b' }), revoked: false },
  { name: 'jti during the skew grace after exp', revoke: [{ jti: 'a', exp: T }], token: token({ jti: 'a' }), at: T + JTI_RETENTION_GRACE_S - 1, revoked: true },
  { name: 'jti after exp and grace', revoke: [{ jti: 'a', exp: T }], token: token({ jti: 'a' }), at: T + JTI_RETENTION_GRACE_S, revoked: false },
  { name: 'subject: token issued before the cut-off', revoke: [{ subject: 'alice', before: T }], token: token({ subject: 'alice', iat: T - 1 }), revoked: true },
  { name: 'subject: token issued at the cut-off', revoke: [{ subject: 'alice', before: T }], token: token({ subject: 'alice', iat: T }), revoked: true },
  { name: 'subject: token issued after the cut-off', revoke: [{ subject: 'alice', before: T }], token: token({ subject: 'alice', iat: T + 1 }), revoked: false },
  { name: 'subject: token without iat fails closed', revoke: [{ subject: 'alice', before: T }], token: token({ subject: 'alice' }), revoked: true },
  { name: 'subject: another subject', revoke: [{ subject: 'alice', before: T }], token: token({ subject: 'bob', iat: T - 1 }), revoked: false },
  { name: 'subject: scoped to its issuer', revoke: [{ subject: 'alice', before: T, issuer: 'okta' }], token: token({ subject: 'alice', iat: T - 1 }), revoked: false },
  { name: 'subject: under its issuer', revoke: [{ subject: 'alice', before: T, issuer: 'auth0' }], token: token({ subject: 'alice', iat: T - 1 }), revoked: true },
  {
    name: 'subject: the later of two cut-offs wins',
    revoke: [{ subject: 'alice', before: T + 10, issuer: 'auth0' }, { subject: 'alice', before: T }],
    token: token({ subject: 'alice', iat: T + 5 }),
    revoked: true,
  },
  { name: 'subject: cut-off forgotten after retention', revoke: [{ subject: 'alice', before: T }], token: token({ subject: 'alice', iat: T - 1 }), at: T + SUBJECT_RETENTION_S, revoked: false },
  { name: 'subject: token without subject', revoke: [{ subject: 'alice', before: T }], token: token({ jti: 'a', iat: T - 1 }), revoked: false },
];

const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});

function memoryStore(clock: { nowS: number }, rateLimits = new Map<string, RateLimitConfig>()): Store {
  const store = createStore({ redis: undefined, prefix: 'test:' }, rateLimits, {
    logger: createLogger('silent'),
    metrics: new Metrics(),
    now: () => clock.nowS * 1000,
  });
  stores.push(store);
  return store;
}

describe('memory store revocations', () => {
  it.each(cases)('$name → revoked: $revoked', async ({ revoke, token: subject, at, revoked }) => {
    const clock = { nowS: T };
    const store = memoryStore(clock);
    for (const r of revoke) {
      if ('jti' in r) await store.revocations.revokeJti(r.jti, r.exp, r.issuer);
      else await store.revocations.revokeSubject(r.subject, r.before, r.issuer);
    }
    clock.nowS = at ?? T;
    expect(store.revocations.isRevoked(subject)).toBe(revoked);
  });

  it('answers jti lookups for one issuer or for any', async () => {
    const store = memoryStore({ nowS: T });
    await store.revocations.revokeJti('scoped', T + HOUR, 'okta');
    await store.revocations.revokeJti('global', T + HOUR);
    expect([
      store.revocations.isJtiRevoked('scoped', 'okta'),
      store.revocations.isJtiRevoked('scoped', 'auth0'),
      store.revocations.isJtiRevoked('scoped'),
      store.revocations.isJtiRevoked('global', 'auth0'),
      store.revocations.isJtiRevoked('global'),
      store.revocations.isJtiRevoked('unknown'),
    ]).toEqual([true, false, true, true, true, false]);
  });

  it('reports memory health and is ready at once', async () => {
    const store = memoryStore({ nowS: T });
    await store.ready();
    expect(store.health()).toEqual({ status: 'memory' });
  });
});

describe('rate limiter shape', () => {
  it.each([
    { limit: 100, windowMs: 1000, points: 100, durationS: 1 },
    { limit: 5, windowMs: 60_000, points: 5, durationS: 60 },
    { limit: 5, windowMs: 1500, points: 5, durationS: 2 },
    { limit: 10, windowMs: 100, points: 100, durationS: 1 },
    { limit: 3, windowMs: 500, points: 6, durationS: 1 },
    { limit: 1, windowMs: 10_000, points: 1, durationS: 10 },
    { limit: 1, windowMs: 999, points: 1, durationS: 1 },
  ])('$limit per $windowMs ms → $points per $durationS s', ({ limit, windowMs, points, durationS }) => {
    expect(limiterShape({ limit, windowMs })).toEqual({ points, durationS });
  });
});

describe('memory store rate limits', () => {
  const limits = new Map<string, RateLimitConfig>([
    ['login', { name: 'login', key: { kind: 'ip' }, limit: 3, windowMs: 60_000, maxKeys: 1000, mode: 'exact' }],
  ]);

  it('allows the limit, then refuses with the time to reset', async () => {
    const store = memoryStore({ nowS: T }, limits);
    const decisions = [];
    for (let i = 0; i < 4; i++) decisions.push(await store.rateLimits.consume('login', '192.0.2.1'));
    expect(decisions.map((d) => [d.allowed, d.limit, d.remaining])).toEqual([
      [true, 3, 2],
      [true, 3, 1],
      [true, 3, 0],
      [false, 3, 0],
    ]);
    expect(decisions[3]?.resetMs).toBeGreaterThan(0);
    expect(decisions[3]?.resetMs).toBeLessThanOrEqual(60_000);
  });

  it('counts each key on its own, long keys included', async () => {
    const store = memoryStore({ nowS: T }, limits);
    const longKey = 'x'.repeat(5000);
    for (let i = 0; i < 3; i++) await store.rateLimits.consume('login', longKey);
    expect((await store.rateLimits.consume('login', longKey)).allowed).toBe(false);
    expect((await store.rateLimits.consume('login', `${longKey}y`)).allowed).toBe(true);
    expect((await store.rateLimits.consume('login', '192.0.2.2')).allowed).toBe(true);
  });
});
