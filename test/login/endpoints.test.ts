import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKCHANNEL_LOGOUT_EVENT } from '../../src/login/backchannel.js';
import { CookieJar, randomId } from '../../src/login/cookies.js';
import { BrowserSignIn, type LoginAnswer } from '../../src/login/endpoints.js';
import type { RelyingParty } from '../../src/login/oidc.js';
import { MemorySessionStore } from '../../src/login/sessions/memory.js';
import type { RedisSessionStore } from '../../src/login/sessions/redis.js';
import type { SessionStore } from '../../src/login/sessions/types.js';
import { startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { RedisSessionStores } from '../helpers/session-stores.js';
import { relyingParty, releaseKeySets } from '../helpers/relying-party.js';

const ORIGIN = 'http://127.0.0.1:9';
const PREFIX = '/.authgate';
/** The address sign-ins come from. */
const CLIENT = '192.0.2.10';
const REDIRECT_URI = `${ORIGIN}${PREFIX}/callback`;
const TIMEOUTS = { idleMs: 600_000, absoluteMs: 3_600_000 };
const KEY = 'a-session-key-of-at-least-32-bytes!!';

let provider: TestProvider;
let rp: RelyingParty;
let redis: RedisServer;
let stores: RedisSessionStores;
beforeAll(async () => {
  provider = await startOidcProvider({ redirectUri: REDIRECT_URI, postLogoutRedirectUri: `${ORIGIN}/`, backchannelLogoutUri: `${ORIGIN}${PREFIX}/backchannel_logout` });
  rp = await relyingParty(provider, REDIRECT_URI);
  redis = await startRedis();
  stores = new RedisSessionStores(redis.url);
});
afterAll(async () => {
  stores.close();
  releaseKeySets();
  await provider.close();
  await redis.close();
});

function endpoints(store: SessionStore = new MemorySessionStore(TIMEOUTS), keys = [KEY]): BrowserSignIn {
  return new BrowserSignIn({
    providers: new Map([['corp', rp]]), store, jar: new CookieJar({ name: 'authgate', sameSite: 'lax', secure: false, keys }),
    redirects: { origin: ORIGIN, allowed: [] }, reservedPrefix: PREFIX, timeouts: TIMEOUTS, now: Date.now,
  });
}

/** name → value of every Set-Cookie of an answer ('' for a cleared one). */
function setCookies(answer: LoginAnswer): Map<string, string> {
  const lines = ([] as string[]).concat((answer.headers['set-cookie'] as string[] | undefined) ?? []);
  return new Map(lines.map((line) => {
    const pair = line.split(';')[0] ?? '';
    return [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)];
  }));
}

function cookieHeader(cookies: Map<string, string>): NodeJS.Dict<string[]> {
  return { cookie: [[...cookies].filter(([, value]) => value !== '').map(([name, value]) => `${name}=${value}`).join('; ')] };
}

/** Starts a flow as a navigation would, signs in at the provider: the callback query and the browser's cookies. */
async function throughProvider(signIn: BrowserSignIn, returnTo = '/app', user = 'alice'): Promise<{ query: string; cookies: Map<string, string> }> {
  const start = await signIn.redirectToSignIn(['corp'], returnTo, CLIENT);
  expect(start.status).toBe(302);
  const callback = await provider.signIn(start.headers.location as string, user);
  return { query: callback.search, cookies: setCookies(start) };
}

async function signedIn(signIn: BrowserSignIn, user = 'alice'): Promise<Map<string, string>> {
  const { query, cookies } = await throughProvider(signIn, '/app', user);
  const answer = await signIn.callback(query, cookieHeader(cookies));
  expect(answer.status).toBe(302);
  return setCookies(answer);
}

describe('sign-in redirect and chooser', () => {
  it('one provider: straight to it, with a per-flow pre-login cookie for 10 minutes', async () => {
    const answer = await endpoints().redirectToSignIn(['corp'], '/app/x', CLIENT);
    expect(answer.status).toBe(302);
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(new URL(answer.headers.location as string).origin).toBe(provider.issuer);
    const [line] = answer.headers['set-cookie'] as string[];
    expect(line).toMatch(/^authgate-login-[\w-]{12}=[\w-]{43}\.[\w-]{43}; Max-Age=600; Path=\/; HttpOnly; SameSite=Lax$/);
  });

  it('starts at most 600 sign-ins a minute from one address (each holds a record ten minutes), then answers 429', async () => {
    const store = new MemorySessionStore(TIMEOUTS);
    const signIn = endpoints(store);
    for (let started = 0; started < 600; started++) expect((await signIn.redirectToSignIn(['corp'], '/app', CLIENT)).status).toBe(302);
    const refused = await signIn.signIn('provider=corp&rd=%2Fapp', CLIENT);
    expect(refused).toMatchObject({ status: 429, headers: { 'retry-after': '60', 'content-type': 'text/html; charset=utf-8' } });
    expect(refused.headers['set-cookie']).toBeUndefined();
    expect((await signIn.redirectToSignIn(['corp'], '/app', '192.0.2.11')).status).toBe(302);
  });

  it('past 2,000 sign-ins a minute in one process, from any addresses, keeps new pre-login records a minute instead of ten', async () => {
    const signIn = endpoints(await stores.open('flood:', TIMEOUTS));
    const maxAge = (answer: LoginAnswer): string | undefined => /Max-Age=(\d+)/.exec(String((answer.headers['set-cookie'] as string[])[0]))?.[1];
    for (let started = 0; started < 2000; started++) {
      const address = `2001:db8:${Math.floor(started / 500)}:${started % 500}::1`;
      const answer = await signIn.redirectToSignIn(['corp'], '/app', address);
      expect({ status: answer.status, maxAge: maxAge(answer) }).toEqual({ status: 302, maxAge: '600' });
    }
    // Nobody is refused: the flood only shortens how long new flows last.
    const flooded = await signIn.redirectToSignIn(['corp'], '/app', '192.0.2.12');
    expect({ status: flooded.status, maxAge: maxAge(flooded) }).toEqual({ status: 302, maxAge: '60' });
    const raw = new Redis(redis.url);
    try {
      const keys = await raw.keys('flood:login-flow:*');
      const ttls = await Promise.all(keys.map((key) => raw.pttl(key)));
      expect(ttls.filter((ttl) => ttl <= 60_000)).toHaveLength(1);
      expect(ttls.filter((ttl) => ttl > 60_000)).toHaveLength(2000);
    } finally {
      await raw.quit();
    }
  });

  it('several providers: to the chooser, which links each with the checked return-to', async () => {
    const signIn = endpoints();
    const answer = await signIn.redirectToSignIn(['corp', 'partner'], '/app/x', CLIENT);
    expect(answer).toMatchObject({ status: 302, headers: { location: `${PREFIX}/sign_in?rd=%2Fapp%2Fx&providers=corp%2Cpartner` } });
    const chooser = await signIn.signIn('rd=//evil.example&providers=corp,unknown', CLIENT);
    expect(chooser.status).toBe(200);
    expect(chooser.body).toContain(`<a href="${PREFIX}/sign_in?provider=corp&amp;rd=%2F">corp</a>`);
    expect(chooser.body).not.toContain('unknown');
    const started = await signIn.signIn('provider=corp&rd=%2Fapp', CLIENT);
    expect(new URL(started.headers.location as string).origin).toBe(provider.issuer);
  });
});

describe('callback', () => {
  it('creates a new session and returns to the page first asked for', async () => {
    const signIn = endpoints();
    const { query, cookies } = await throughProvider(signIn, '/app/reports?q=1');
    const answer = await signIn.callback(query, cookieHeader(cookies));
    expect(answer).toMatchObject({ status: 302, headers: { location: '/app/reports?q=1' } });
    const set = setCookies(answer);
    const flowCookie = [...cookies.keys()][0] as string;
    expect(set.get(flowCookie)).toBe('');
    expect(signIn.sessionId(cookieHeader(set))).toEqual(expect.any(String));
  });

  it('a page asked for with a target over 2 KiB (which the store would hold for anyone) returns to / instead', async () => {
    const signIn = endpoints();
    const { query, cookies } = await throughProvider(signIn, `/app/${'x'.repeat(4000)}`);
    expect(await signIn.callback(query, cookieHeader(cookies))).toMatchObject({ status: 302, headers: { location: '/' } });
  });

  it('two tabs signing in at once both succeed, each with its own flow cookie', async () => {
    const signIn = endpoints();
    const first = await throughProvider(signIn, '/one');
    const second = await throughProvider(signIn, '/two');
    const both = cookieHeader(new Map([...first.cookies, ...second.cookies]));
    expect((await signIn.callback(second.query, both)).headers.location).toBe('/two');
    expect((await signIn.callback(first.query, both)).headers.location).toBe('/one');
  });

  it.each([
    ['no flow cookie', (_c: Map<string, string>) => new Map<string, string>()],
    ['a flow cookie signed with another key', (c: Map<string, string>) => {
      const [name, value] = [...c][0] as [string, string];
      const foreign = new CookieJar({ name: 'authgate', sameSite: 'lax', secure: false, keys: ['another-key-of-at-least-32-bytes!!!!'] });
      return new Map([[name, foreign.issue(name, value.slice(0, 43), 600).split(';')[0]?.split('=')[1] as string]]);
    }],
    ['a truncated flow cookie', (c: Map<string, string>) => new Map([...c].map(([n, v]) => [n, v.slice(0, -2)]))],
    ['another flow\'s cookie under this flow\'s name', (c: Map<string, string>) => new Map([...c].map(([n]) => [n, `${randomId()}.${randomId()}`]))],
  ])('refuses a callback with %s: 400 page, no session', async (_label, edit) => {
    const signIn = endpoints();
    const { query, cookies } = await throughProvider(signIn);
    const before = provider.tokenRequests;
    const answer = await signIn.callback(query, cookieHeader(edit(cookies)));
    expect(answer.status).toBe(400);
    expect(answer.headers['content-security-policy']).toMatch(/^default-src 'none'/);
    expect(answer.body).toContain('Sign-in failed');
    expect(signIn.sessionId(cookieHeader(setCookies(answer)))).toBeUndefined();
    expect(provider.tokenRequests).toBe(before);
  });

  it('refuses a callback replayed with the same flow cookie (the pre-login record is gone)', async () => {
    const signIn = endpoints();
    const { query, cookies } = await throughProvider(signIn);
    expect((await signIn.callback(query, cookieHeader(cookies))).status).toBe(302);
    const before = provider.tokenRequests;
    expect((await signIn.callback(query, cookieHeader(cookies))).status).toBe(400);
    expect(provider.tokenRequests).toBe(before);
  });

  it('never keeps a session ID from before sign-in: a new one, and the old session ends', async () => {
    const store = new MemorySessionStore(TIMEOUTS);
    const signIn = endpoints(store);
    const planted = await signedIn(signIn, 'bob');
    const plantedId = signIn.sessionId(cookieHeader(planted)) as string;
    const { query, cookies } = await throughProvider(signIn, '/app', 'alice');
    const answer = await signIn.callback(query, cookieHeader(new Map([...cookies, ...planted])));
    const newId = signIn.sessionId(cookieHeader(setCookies(answer)));
    expect(newId).toEqual(expect.any(String));
    expect(newId).not.toBe(plantedId);
    expect(await store.get(plantedId)).toBeUndefined();
    expect((await store.get(newId as string))?.subject).toBe('alice');
  });

  it('an open redirect in the return-to comes back to /', async () => {
    const signIn = endpoints();
    const start = await signIn.signIn(`provider=corp&rd=${encodeURIComponent('/\\evil.example')}`, CLIENT);
    const callback = await provider.signIn(start.headers.location as string, 'alice');
    expect((await signIn.callback(callback.search, cookieHeader(setCookies(start)))).headers.location).toBe('/');
  });
});

describe('sign_out', () => {
  it('ends the session, clears the cookie and goes to the provider end-session endpoint, coming back to rd', async () => {
    const store = new MemorySessionStore(TIMEOUTS);
    const signIn = endpoints(store);
    const cookies = await signedIn(signIn);
    const id = signIn.sessionId(cookieHeader(cookies)) as string;
    const answer = await signIn.signOut(`rd=${encodeURIComponent('/bye')}`, cookieHeader(cookies));
    const location = new URL(answer.headers.location as string);
    expect(location.origin + location.pathname).toBe(`${provider.issuer}/session/end`);
    expect(location.searchParams.get('post_logout_redirect_uri')).toBe(`${ORIGIN}/bye`);
    expect(location.searchParams.get('id_token_hint')).toEqual(expect.any(String));
    expect(setCookies(answer).get('authgate')).toBe('');
    expect(await store.get(id)).toBeUndefined();
  });

  it('without a session, to rd when it is safe, else /', async () => {
    const signIn = endpoints();
    expect((await signIn.signOut('rd=%2Fbye', {})).headers.location).toBe('/bye');
    expect((await signIn.signOut(`rd=${encodeURIComponent('https:evil.example')}`, {})).headers.location).toBe('/');
    expect((await signIn.signOut(`rd=${encodeURIComponent('/%2F%2Fevil.example')}`, {})).headers.location).toBe('/');
  });
});

describe('backchannel_logout', () => {
  const logoutToken = (claims: Record<string, unknown>): string => provider.sign({
    iss: provider.issuer, aud: provider.clientId, iat: Math.floor(Date.now() / 1000), jti: randomId(),
    events: { [BACKCHANNEL_LOGOUT_EVENT]: {} }, ...claims,
  }, { typ: 'logout+jwt' });

  async function redisEndpoints(prefix: string): Promise<{ signIn: BrowserSignIn; store: RedisSessionStore }> {
    const store = await stores.open(prefix, TIMEOUTS);
    return { signIn: endpoints(store), store };
  }

  it('ends the session the provider names (sid) on every instance; the cookie then opens nothing; a replay is a 400', async () => {
    const one = await redisEndpoints('bcl:');
    const two = await redisEndpoints('bcl:');
    const cookies = await signedIn(one.signIn);
    const id = two.signIn.sessionId(cookieHeader(cookies)) as string;
    const session = await two.store.get(id);
    expect(two.store.cached(id)).toBeDefined();
    const ended = new Promise<string>((resolve) => two.store.onEnd(resolve));
    const body = `logout_token=${logoutToken({ sid: session?.idpSid, sub: 'alice' })}`;
    expect(await one.signIn.backchannelLogout(body)).toEqual({ status: 200, headers: { 'cache-control': 'no-store' }, body: '' });
    expect(await ended).toBe(id);
    expect(two.store.cached(id)).toBeUndefined();
    expect(await two.store.get(id)).toBeUndefined();
    expect((await two.signIn.backchannelLogout(body)).status).toBe(400);
  });

  it('sub only: ends every session of that user with this provider', async () => {
    const store = new MemorySessionStore(TIMEOUTS);
    const signIn = endpoints(store);
    const a = signIn.sessionId(cookieHeader(await signedIn(signIn, 'alice'))) as string;
    const b = signIn.sessionId(cookieHeader(await signedIn(signIn, 'alice'))) as string;
    const bob = signIn.sessionId(cookieHeader(await signedIn(signIn, 'bob'))) as string;
    expect((await signIn.backchannelLogout(`logout_token=${logoutToken({ sub: 'alice' })}`)).status).toBe(200);
    expect(await store.get(a)).toBeUndefined();
    expect(await store.get(b)).toBeUndefined();
    expect(await store.get(bob)).toBeDefined();
  });

  it.each([
    ['no logout_token', ''],
    ['two logout_tokens', `logout_token=${'a.b.c'}&logout_token=${'a.b.c'}`],
    ['garbage', 'logout_token=not-a-jwt'],
    ['a token with a nonce', `logout_token=PLACEHOLDER_NONCE`],
  ])('answers 400 to %s and ends nothing', async (_label, body) => {
    const store = new MemorySessionStore(TIMEOUTS);
    const signIn = endpoints(store);
    const id = signIn.sessionId(cookieHeader(await signedIn(signIn))) as string;
    const sent = body.replace('PLACEHOLDER_NONCE', logoutToken({ sub: 'alice', nonce: 'n' }));
    const answer = await signIn.backchannelLogout(sent);
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toEqual({ error: 'invalid_request', error_description: 'The logout token is invalid' });
    expect(await store.get(id)).toBeDefined();
  });
});
