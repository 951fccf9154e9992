import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trustedOrigins } from '../../src/login/browser.js';
import { CookieJar, randomId } from '../../src/login/cookies.js';
import { SessionRefresher } from '../../src/login/refresh.js';
import { SessionAuthenticator, type SessionRequest } from '../../src/login/session-authenticator.js';
import { MemorySessionStore } from '../../src/login/sessions/memory.js';
import type { Session, SessionStore } from '../../src/login/sessions/types.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { RedisSessionStores } from '../helpers/session-stores.js';

const ORIGIN = 'https://app.example.com';
const TIMEOUTS = { idleMs: 600_000, absoluteMs: 3_600_000 };
const jar = new CookieJar({ name: '__Host-authgate', sameSite: 'lax', secure: true, keys: ['a-session-key-of-at-least-32-bytes!!'] });

function session(now: number, overrides: Partial<Session> = {}): Session {
  return {
    id: randomId(), provider: 'corp', subject: 'alice', idpSid: 'sid', claims: { sub: 'alice' },
    tokens: { idToken: 'i', accessToken: 'a', accessTokenExpiresAt: now + 3_600_000, refreshToken: 'r' },
    createdAt: now, lastSeenAt: now, ...overrides,
  };
}

/** Authentication without a provider: sessions here are never due for refresh, or have no provider to refresh with. */
function authenticator(store: SessionStore, now = Date.now): SessionAuthenticator {
  const refresher = new SessionRefresher(store, new Map(), { refreshBeforeMs: 60_000, lockMs: 10_000, now });
  return new SessionAuthenticator(jar, store, refresher, trustedOrigins(ORIGIN, ['https://spa.example.com']));
}

function request(cookie: string | undefined, method = 'GET', headers: Record<string, string> = {}): SessionRequest {
  const lines = cookie === undefined ? undefined : [cookie];
  return { method, headers: { ...headers, cookie }, headersDistinct: { cookie: lines } };
}

function cookieFor(id: string): string {
  return jar.issue(jar.sessionName, id, 60).split(';')[0] as string;
}

describe('SessionAuthenticator', () => {
  it('finds the session of a signed cookie', async () => {
    const store = new MemorySessionStore(TIMEOUTS);
    const s = session(Date.now());
    await store.create(s);
    expect(await authenticator(store).authenticate(request(cookieFor(s.id)))).toEqual({ ok: true, session: s });
  });

  it.each([
    ['no cookie at all', undefined, 'no_cookie'],
    ['other cookies only', 'theme=dark', 'no_cookie'],
    ['an unsigned ID', `__Host-authgate=${randomId()}`, 'invalid_cookie'],
    ['a forged signature', `__Host-authgate=${randomId()}.${randomId()}`, 'invalid_cookie'],
    ['two session cookies', `__Host-authgate=a; __Host-authgate=b`, 'invalid_cookie'],
    ['a validly signed ID with no session (guessed, or ended)', cookieFor(randomId()), 'no_session'],
  ])('%s → %s', async (_label, cookie, reason) => {
    expect(await authenticator(new MemorySessionStore(TIMEOUTS)).authenticate(request(cookie))).toEqual({ ok: false, reason });
  });

  it('a genuine cookie seen before vouches for nothing else: the same ID under another signature is refused', async () => {
    const store = new MemorySessionStore(TIMEOUTS);
    const s = session(Date.now());
    await store.create(s);
    const auth = authenticator(store);
    const genuine = cookieFor(s.id);
    for (let seen = 0; seen < 2; seen++) expect(await auth.authenticate(request(genuine))).toEqual({ ok: true, session: s });
    const mac = genuine.split('.')[1] as string;
    const forged = `${genuine.split('.')[0]}.${mac.slice(0, -1)}${mac.endsWith('A') ? 'B' : 'A'}`;
    expect(await auth.authenticate(request(forged))).toEqual({ ok: false, reason: 'invalid_cookie' });
    const otherKey = new CookieJar({ name: '__Host-authgate', sameSite: 'lax', secure: true, keys: ['another-session-key-of-32-bytes-or-more'] });
    expect(await auth.authenticate(request(otherKey.issue(otherKey.sessionName, s.id, 60).split(';')[0]))).toEqual({ ok: false, reason: 'invalid_cookie' });
  });

  it('a cookie sent after sign-out opens nothing', async () => {
    const store = new MemorySessionStore(TIMEOUTS);
    const s = session(Date.now());
    await store.create(s);
    const auth = authenticator(store);
    expect((await auth.authenticate(request(cookieFor(s.id)))).ok).toBe(true);
    await store.end(s.id);
    expect(await auth.authenticate(request(cookieFor(s.id)))).toEqual({ ok: false, reason: 'no_session' });
  });

  it.each([
    ['POST', { origin: ORIGIN }, true],
    ['DELETE', { origin: 'https://spa.example.com' }, true],
    ['PUT', { referer: `${ORIGIN}/app/form` }, true],
    ['GET', { origin: 'https://evil.example' }, true],
    ['POST', {}, false],
    ['POST', { origin: 'https://evil.example' }, false],
    ['DELETE', { origin: 'null' }, false],
    ['PATCH', { referer: 'https://evil.example/' }, false],
  ])('%s with %j riding on the session cookie → allowed %s', async (method, headers, allowed) => {
    const store = new MemorySessionStore(TIMEOUTS);
    const s = session(Date.now());
    await store.create(s);
    const result = await authenticator(store).authenticate(request(cookieFor(s.id), method, headers));
    expect(result).toEqual(allowed ? { ok: true, session: s } : { ok: false, reason: 'csrf' });
  });

  it('a due session whose provider is gone ends (no way to refresh it)', async () => {
    const store = new MemorySessionStore(TIMEOUTS);
    const s = session(Date.now(), { tokens: { idToken: 'i', accessToken: 'a', accessTokenExpiresAt: Date.now() + 1_000, refreshToken: 'r' } });
    await store.create(s);
    expect(await authenticator(store).authenticate(request(cookieFor(s.id)))).toEqual({ ok: false, reason: 'ended' });
    expect(await store.get(s.id)).toBeUndefined();
  });

  it('keeps the idle timeout moving with use', async () => {
    let now = Date.now();
    const store = new MemorySessionStore(TIMEOUTS, () => now);
    const s = session(now);
    await store.create(s);
    const auth = authenticator(store, () => now);
    for (let i = 0; i < 5; i++) {
      now += TIMEOUTS.idleMs - 1_000;
      expect((await auth.authenticate(request(cookieFor(s.id)))).ok).toBe(true);
    }
    now += TIMEOUTS.idleMs;
    expect(await auth.authenticate(request(cookieFor(s.id)))).toEqual({ ok: false, reason: 'no_session' });
  });
});

describe('SessionAuthenticator on Redis', () => {
  let redis: RedisServer;
  let stores: RedisSessionStores;
  beforeAll(async () => {
    redis = await startRedis();
    stores = new RedisSessionStores(redis.url);
  });
  afterAll(async () => {
    stores.close();
    await redis.close();
  });

  it('after the first request, answers from its copy: Redis going down does not stop the session', async () => {
    const s = session(Date.now());
    await (await stores.open('auth:', TIMEOUTS)).create(s);
    // Another instance: its first request for the session reads Redis once, then it holds a copy.
    const auth = authenticator(await stores.open('auth:', TIMEOUTS));
    expect(await auth.authenticate(request(cookieFor(s.id)))).toEqual({ ok: true, session: s });
    await redis.stop();
    expect(await auth.authenticate(request(cookieFor(s.id)))).toEqual({ ok: true, session: s });
    // An instance without a copy cannot know: 503, never a pass.
    expect(await authenticator(stores.unstarted('auth:', TIMEOUTS)).authenticate(request(cookieFor(s.id)))).toEqual({ ok: false, reason: 'unavailable' });
  });
});
