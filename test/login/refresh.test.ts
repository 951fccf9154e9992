import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelyingParty } from '../../src/login/oidc.js';
import { SessionRefresher } from '../../src/login/refresh.js';
import { MemorySessionStore } from '../../src/login/sessions/memory.js';
import type { RedisSessionStore } from '../../src/login/sessions/redis.js';
import type { Session } from '../../src/login/sessions/types.js';
import { startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { RedisSessionStores } from '../helpers/session-stores.js';
import { relyingParty, releaseKeySets, signedInSession } from '../helpers/relying-party.js';

const REDIRECT_URI = 'http://127.0.0.1:9/.authgate/callback';
const TIMEOUTS = { idleMs: 3_600_000, absoluteMs: 7_200_000 };
/** The provider's access tokens live an hour: with refresh_before 2h every session is due, with 1m none is. */
const ALWAYS_DUE = 2 * 3_600_000;
const NEVER_DUE = 60_000;

let provider: TestProvider;
let rp: RelyingParty;
let providers: Map<string, RelyingParty>;
let redis: RedisServer;
let stores: RedisSessionStores;
beforeAll(async () => {
  provider = await startOidcProvider({ redirectUri: REDIRECT_URI });
  rp = await relyingParty(provider, REDIRECT_URI);
  providers = new Map([['corp', rp]]);
  redis = await startRedis();
  stores = new RedisSessionStores(redis.url);
});
afterAll(async () => {
  stores.close();
  releaseKeySets();
  await provider.close();
  await redis.close();
});

/** What the refreshers reported, for the refresh metric. */
const reported: string[] = [];

function refresher(store: MemorySessionStore | RedisSessionStore, refreshBeforeMs: number, now = Date.now): SessionRefresher {
  return new SessionRefresher(store, providers, { refreshBeforeMs, lockMs: 10_000, now, onRefresh: (name, result) => reported.push(`${name} ${result}`) });
}

async function storeWith(session: Session): Promise<MemorySessionStore> {
  const store = new MemorySessionStore(TIMEOUTS);
  await store.create(session);
  return store;
}

describe('SessionRefresher', () => {
  it('leaves a session alone until refresh_before: no request to the provider', async () => {
    const session = await signedInSession(provider, rp);
    const before = provider.tokenRequests;
    const result = await refresher(await storeWith(session), NEVER_DUE).fresh(session);
    expect(result).toEqual({ ok: true, session });
    expect(provider.tokenRequests).toBe(before);
  });

  it('refreshes a due session once and stores the rotated tokens', async () => {
    const session = await signedInSession(provider, rp);
    const store = await storeWith(session);
    const before = provider.tokenRequests;
    const result = await refresher(store, ALWAYS_DUE).fresh(session);
    expect(provider.tokenRequests).toBe(before + 1);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.session.tokens.accessToken).not.toBe(session.tokens.accessToken);
    expect(result.session.tokens.refreshToken).not.toBe(session.tokens.refreshToken);
    expect((await store.get(session.id))?.tokens).toEqual(result.session.tokens);
    expect(reported.at(-1)).toBe('corp success');
  });

  it('ends the session when the provider refuses the refresh (invalid_grant)', async () => {
    const session = await signedInSession(provider, rp);
    const store = await storeWith(session);
    // Rotated behind the session's back: its refresh token is now a reused one, which the provider refuses.
    expect(await rp.refresh(session)).toMatchObject({ ok: true });
    const ended = new Promise<string>((resolve) => store.onEnd(resolve));
    expect(await refresher(store, ALWAYS_DUE).fresh(session)).toEqual({ ok: false, reason: 'ended' });
    expect(await ended).toBe(session.id);
    expect(await store.get(session.id)).toBeUndefined();
    expect(reported.at(-1)).toBe('corp ended');
  });

  it('with the provider down, goes on with the valid token, then answers unavailable once it expired', async () => {
    const gone = await startOidcProvider({ redirectUri: REDIRECT_URI });
    const goneRp = await relyingParty(gone, REDIRECT_URI);
    const session = await signedInSession(gone, goneRp);
    await gone.close();
    const store = await storeWith(session);
    const viaGone = new Map([['corp', goneRp]]);
    const soon = new SessionRefresher(store, viaGone, { refreshBeforeMs: ALWAYS_DUE, lockMs: 10_000, now: Date.now });
    expect(await soon.fresh(session)).toEqual({ ok: true, session });
    const afterExpiry = (): number => session.tokens.accessTokenExpiresAt + 1;
    const late = new SessionRefresher(store, viaGone, { refreshBeforeMs: ALWAYS_DUE, lockMs: 10_000, now: afterExpiry });
    expect(await late.fresh(session)).toEqual({ ok: false, reason: 'unavailable' });
    expect(await store.get(session.id)).toBeDefined();
  });

  it('refreshes once across instances; the other instance goes on with the still-valid token', async () => {
    const one = await stores.open('refresh:', TIMEOUTS);
    const two = await stores.open('refresh:', TIMEOUTS);
    const session = await signedInSession(provider, rp);
    await one.create(session);
    const before = provider.tokenRequests;
    const results = await Promise.all([refresher(one, ALWAYS_DUE).fresh(session), refresher(two, ALWAYS_DUE).fresh(session)]);
    expect(provider.tokenRequests).toBe(before + 1);
    const tokens = results.map((result) => (result.ok ? result.session.tokens.accessToken : result.reason));
    expect(tokens).toContain(session.tokens.accessToken);
    expect(tokens.filter((token) => token !== session.tokens.accessToken)).toHaveLength(1);
    // A later request on either instance sees the refreshed session, which is no longer due.
    const stored = await two.get(session.id);
    expect(stored?.tokens.accessToken).not.toBe(session.tokens.accessToken);
    expect(await refresher(two, NEVER_DUE).fresh(stored as Session)).toEqual({ ok: true, session: stored });
  });

  it('an instance that locks after another refreshed uses the stored tokens instead of refreshing again', async () => {
    const session = await signedInSession(provider, rp);
    const store = await storeWith(session);
    const first = await refresher(store, ALWAYS_DUE).fresh(session);
    if (!first.ok) throw new Error(first.reason);
    const before = provider.tokenRequests;
    // This instance's copy still has the old tokens, about to expire: due. The re-read after locking finds the
    // refreshed ones (an hour left), so no second refresh.
    const staleCopy = { ...session, tokens: { ...session.tokens, accessTokenExpiresAt: Date.now() + 1_000 } };
    const result = await refresher(store, NEVER_DUE).fresh(staleCopy);
    expect(provider.tokenRequests).toBe(before);
    expect(result).toMatchObject({ ok: true, session: { tokens: first.session.tokens } });
  });
});
