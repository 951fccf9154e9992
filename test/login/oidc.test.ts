import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyLogoutToken, BACKCHANNEL_LOGOUT_EVENT, type LogoutTokenExpectations } from '../../src/login/backchannel.js';
import { randomId } from '../../src/login/cookies.js';
import { RelyingParty } from '../../src/login/oidc.js';
import { MemorySessionStore } from '../../src/login/sessions/memory.js';
import { PRE_LOGIN_TTL_MS } from '../../src/login/sessions/types.js';
import { generateIdpKey } from '../helpers/idp.js';
import { startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { authorize, issuerOf, relyingParty, releaseKeySets, signaturesOf, signedInSession } from '../helpers/relying-party.js';
import { decodePayload, signRaw, unsecured } from '../helpers/tokens.js';

const REDIRECT_URI = 'http://127.0.0.1:9/.authgate/callback';
const POST_LOGOUT = 'http://127.0.0.1:9/signed-out';
const RESOURCE = 'https://api.example.com';
/** Registered so the provider puts `sid` in ID tokens; nothing listens there in these tests. */
const BACKCHANNEL_URI = 'http://127.0.0.1:9/.authgate/backchannel_logout';

let provider: TestProvider;
let rp: RelyingParty;
beforeAll(async () => {
  provider = await startOidcProvider({ redirectUri: REDIRECT_URI, postLogoutRedirectUri: POST_LOGOUT, backchannelLogoutUri: BACKCHANNEL_URI });
  rp = await relyingParty(provider, REDIRECT_URI);
});
afterAll(async () => {
  releaseKeySets();
  await provider.close();
});

describe('authorization URL', () => {
  it('asks for a code with PKCE S256, random state and nonce, the scopes and the extra parameters', async () => {
    const custom = await relyingParty(provider, REDIRECT_URI, { params: { ui_locales: 'de', audience: RESOURCE } });
    const { url, preLogin } = await custom.begin('/app/x');
    expect(url.origin + url.pathname).toBe(`${provider.issuer}/auth`);
    const params = Object.fromEntries(url.searchParams);
    expect(params).toEqual({
      client_id: provider.clientId, response_type: 'code', redirect_uri: REDIRECT_URI, scope: 'openid email offline_access',
      state: preLogin.state, nonce: preLogin.nonce, code_challenge_method: 'S256',
      code_challenge: createHash('sha256').update(preLogin.codeVerifier).digest('base64url'),
      ui_locales: 'de', audience: RESOURCE,
    });
    expect(Buffer.from(preLogin.state, 'base64url').length).toBeGreaterThanOrEqual(16);
    expect(Buffer.from(preLogin.nonce, 'base64url').length).toBeGreaterThanOrEqual(16);
    expect(preLogin).toMatchObject({ provider: 'corp', returnTo: '/app/x' });
    const again = await custom.begin('/app/x');
    expect(again.preLogin.state).not.toBe(preLogin.state);
    expect(again.preLogin.nonce).not.toBe(preLogin.nonce);
    expect(again.preLogin.codeVerifier).not.toBe(preLogin.codeVerifier);
  });
});

describe('callback', () => {
  it('signs alice in with her verified ID token claims and tokens', async () => {
    const { query, preLogin } = await authorize(provider, rp, 'alice');
    const result = await rp.complete(query, preLogin);
    expect(result).toMatchObject({ ok: true, subject: 'alice', claims: { sub: 'alice', email: 'alice@example.com', roles: ['staff'] } });
    if (!result.ok) return;
    expect(result.idpSid).toEqual(expect.any(String));
    expect(result.tokens.refreshToken).toEqual(expect.any(String));
    expect(result.tokens.accessTokenExpiresAt).toBeGreaterThan(Date.now() + 3_000_000);
    expect(decodePayload(result.tokens.idToken)).toMatchObject({ iss: provider.issuer, aud: provider.clientId, nonce: preLogin.nonce });
  });

  it('signs bob in as bob', async () => {
    const { query, preLogin } = await authorize(provider, rp, 'bob');
    expect(await rp.complete(query, preLogin)).toMatchObject({ ok: true, subject: 'bob', claims: { roles: ['guest'] } });
  });

  it.each([
    ['missing', (q: URLSearchParams) => q.delete('state')],
    ['wrong', (q: URLSearchParams) => q.set('state', randomId())],
    ['empty', (q: URLSearchParams) => q.set('state', '')],
    ['repeated', (q: URLSearchParams) => q.append('state', 'x')],
  ])('refuses a %s state, and the code is never exchanged', async (_label, edit) => {
    const { query, preLogin } = await authorize(provider, rp);
    const params = new URLSearchParams(query);
    edit(params);
    const before = provider.tokenRequests;
    expect(await rp.complete(`?${params}`, preLogin)).toMatchObject({ ok: false, reason: 'state_mismatch' });
    expect(provider.tokenRequests).toBe(before);
  });

  it('refuses a callback for another flow (another tab or an attacker) by its state', async () => {
    const mine = await authorize(provider, rp);
    const other = await rp.begin('/');
    expect(await rp.complete(mine.query, other.preLogin)).toMatchObject({ ok: false, reason: 'state_mismatch' });
  });

  it('a reused flow finds no pre-login record (taken once) and an expired one is gone', async () => {
    let now = Date.now();
    const store = new MemorySessionStore({ idleMs: 60_000, absoluteMs: 120_000 }, () => now);
    const { query, preLogin } = await authorize(provider, rp);
    const flow = randomId();
    await store.savePreLogin(flow, preLogin, PRE_LOGIN_TTL_MS);
    expect(await rp.complete(query, await store.takePreLogin(flow))).toMatchObject({ ok: true });
    expect(await rp.complete(query, await store.takePreLogin(flow))).toMatchObject({ ok: false, reason: 'no_flow' });

    const late = await authorize(provider, rp);
    await store.savePreLogin(flow, late.preLogin, PRE_LOGIN_TTL_MS);
    now += 10 * 60_000;
    expect(await rp.complete(late.query, await store.takePreLogin(flow))).toMatchObject({ ok: false, reason: 'no_flow' });
  });

  it('refuses a code replayed after a successful exchange (the provider answers invalid_grant)', async () => {
    const { query, preLogin } = await authorize(provider, rp);
    expect(await rp.complete(query, preLogin)).toMatchObject({ ok: true });
    const before = provider.tokenRequests;
    expect(await rp.complete(query, preLogin)).toMatchObject({ ok: false, reason: 'code_rejected' });
    expect(provider.tokenRequests).toBe(before + 1);
  });

  it('refuses a code with another flow\'s PKCE verifier', async () => {
    const { query, preLogin } = await authorize(provider, rp);
    const forged = { ...preLogin, codeVerifier: (await rp.begin('/')).preLogin.codeVerifier };
    expect(await rp.complete(query, forged)).toMatchObject({ ok: false, reason: 'code_rejected' });
  });

  it('reports the provider\'s error answer (the user declined)', async () => {
    const { preLogin } = await rp.begin('/');
    const query = `?error=access_denied&state=${preLogin.state}&iss=${encodeURIComponent(provider.issuer)}`;
    expect(await rp.complete(query, preLogin)).toMatchObject({ ok: false, reason: 'provider_error' });
  });
});

describe('ID token checks (the token endpoint answer tampered with)', () => {
  const anotherKey = generateIdpKey('rsa');
  const resign = (edit: (claims: Record<string, unknown>) => void, sign?: (claims: Record<string, unknown>) => string) =>
    (body: Record<string, unknown>): Record<string, unknown> => {
      const claims = decodePayload(body.id_token as string);
      edit(claims);
      return { ...body, id_token: sign?.(claims) ?? provider.sign(claims, { typ: 'JWT' }) };
    };
  const nowS = (): number => Math.floor(Date.now() / 1000);

  afterAll(() => provider.tamperTokenResponse(undefined));

  it('accepts the answer re-signed unchanged with the provider key (the tampering itself is sound)', async () => {
    provider.tamperTokenResponse(resign(() => {}));
    const { query, preLogin } = await authorize(provider, rp);
    expect(await rp.complete(query, preLogin)).toMatchObject({ ok: true, subject: 'alice' });
  });

  it.each([
    ['a wrong nonce', resign((c) => { c.nonce = randomId(); })],
    ['no nonce', resign((c) => { delete c.nonce; })],
    ['another audience', resign((c) => { c.aud = 'another-client'; })],
    ['an extra audience without azp', resign((c) => { c.aud = [c.aud as string, 'another-client']; })],
    ['azp of another client, several audiences', resign((c) => { c.aud = [c.aud as string, 'another-client']; c.azp = 'another-client'; })],
    ['azp of another client, one audience', resign((c) => { c.azp = 'another-client'; })],
    ['another issuer', resign((c) => { c.iss = 'http://127.0.0.1:1'; })],
    ['an expired token', resign((c) => { c.iat = nowS() - 7200; c.exp = nowS() - 3600; })],
    ['no iat', resign((c) => { delete c.iat; })],
    ['an iat an hour ahead', resign((c) => { c.iat = nowS() + 3600; c.exp = nowS() + 7200; })],
    ['an iat that is not a number', resign((c) => { c.iat = String(nowS()); })],
    ['no sub', resign((c) => { delete c.sub; })],
    ['another key (same kid)', resign(() => {}, (c) => signRaw('RS256', anotherKey.privateKey, { alg: 'RS256', typ: 'JWT', kid: provider.key.kid }, c))],
    ['another key (its own kid)', resign(() => {}, (c) => provider.sign(c, { typ: 'JWT' }, anotherKey))],
    ['no signature (alg none)', resign(() => {}, (c) => unsecured(c))],
    ['a truncated signature', resign(() => {}, (c) => provider.sign(c).slice(0, -4))],
  ])('refuses %s', async (_label, tamper) => {
    provider.tamperTokenResponse(tamper);
    const { query, preLogin } = await authorize(provider, rp);
    const result = await rp.complete(query, preLogin);
    expect(result).toMatchObject({ ok: false, reason: 'id_token_invalid' });
  });

  it('refuses an answer without an ID token', async () => {
    provider.tamperTokenResponse((body) => ({ ...body, id_token: undefined }));
    const { query, preLogin } = await authorize(provider, rp);
    expect(await rp.complete(query, preLogin)).toMatchObject({ ok: false });
  });
});

describe('identity_from', () => {
  it('userinfo: the claims the userinfo endpoint returns for the ID token subject', async () => {
    const viaUserinfo = await relyingParty(provider, REDIRECT_URI, { identityFrom: 'userinfo' });
    const { query, preLogin } = await authorize(provider, viaUserinfo, 'bob');
    const result = await viaUserinfo.complete(query, preLogin);
    expect(result).toMatchObject({ ok: true, subject: 'bob', claims: { sub: 'bob', email: 'bob@example.com', roles: ['guest'] } });
    if (result.ok) expect(result.claims).not.toHaveProperty('nonce');
  });

  it('access_token: the verified claims of a JWT access token', async () => {
    const jwtProvider = await startOidcProvider({ redirectUri: REDIRECT_URI, jwtAccessTokensFor: RESOURCE });
    try {
      const viaAccessToken = await relyingParty(jwtProvider, REDIRECT_URI, { identityFrom: 'access_token' });
      const { query, preLogin } = await authorize(jwtProvider, viaAccessToken, 'alice');
      const result = await viaAccessToken.complete(query, preLogin);
      expect(result).toMatchObject({ ok: true, subject: 'alice', claims: { sub: 'alice', aud: RESOURCE, iss: jwtProvider.issuer } });

      jwtProvider.tamperTokenResponse((body) => ({ ...body, access_token: jwtProvider.sign({ ...decodePayload(body.access_token as string), sub: 'bob' }) }));
      const forged = await authorize(jwtProvider, viaAccessToken, 'alice');
      expect(await viaAccessToken.complete(forged.query, forged.preLogin)).toMatchObject({ ok: false, reason: 'identity_invalid' });
    } finally {
      await jwtProvider.close();
    }
  });
});

describe('refresh', () => {
  it('gets new tokens with a rotated refresh token; the old refresh token is then refused (invalid_grant)', async () => {
    const session = await signedInSession(provider, rp);
    const refreshed = await rp.refresh(session);
    expect(refreshed).toMatchObject({ ok: true, claims: { sub: 'alice', roles: ['staff'] } });
    if (!refreshed.ok) return;
    expect(refreshed.tokens.accessToken).not.toBe(session.tokens.accessToken);
    expect(refreshed.tokens.refreshToken).toEqual(expect.any(String));
    expect(refreshed.tokens.refreshToken).not.toBe(session.tokens.refreshToken);
    expect(await rp.refresh(session)).toMatchObject({ ok: false, reason: 'invalid_grant' });
  });

  it('a session without a refresh token cannot refresh', async () => {
    const session = await signedInSession(provider, rp);
    expect(await rp.refresh({ ...session, tokens: { ...session.tokens, refreshToken: undefined } })).toMatchObject({ ok: false, reason: 'invalid_grant' });
  });

  it('refuses a refreshed ID token about another subject', async () => {
    const session = await signedInSession(provider, rp);
    provider.tamperTokenResponse((body) => ({ ...body, id_token: provider.sign({ ...decodePayload(body.id_token as string), sub: 'bob' }, { typ: 'JWT' }) }));
    try {
      expect(await rp.refresh(session)).toMatchObject({ ok: false, reason: 'id_token_invalid' });
    } finally {
      provider.tamperTokenResponse(undefined);
    }
  });

  it('says unavailable when the provider does not answer', async () => {
    const gone = await startOidcProvider({ redirectUri: REDIRECT_URI });
    const goneRp = await relyingParty(gone, REDIRECT_URI);
    const session = await signedInSession(gone, goneRp);
    await gone.close();
    expect(await goneRp.refresh(session)).toMatchObject({ ok: false, reason: 'unavailable' });
  });
});

describe('RP-initiated logout', () => {
  it('points at the provider end_session_endpoint with id_token_hint and post_logout_redirect_uri, which the provider accepts', async () => {
    const { query, preLogin } = await authorize(provider, rp);
    const result = await rp.complete(query, preLogin);
    if (!result.ok) throw new Error(result.detail);
    const url = new URL(rp.endSessionUrl(result.tokens.idToken, POST_LOGOUT) as string);
    expect(url.origin + url.pathname).toBe(`${provider.issuer}/session/end`);
    expect(url.searchParams.get('id_token_hint')).toBe(result.tokens.idToken);
    expect(url.searchParams.get('post_logout_redirect_uri')).toBe(POST_LOGOUT);
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('logout');
  });
});

describe('back-channel logout token', () => {
  let seen: MemorySessionStore;
  let expectations: LogoutTokenExpectations;
  beforeAll(async () => {
    seen = new MemorySessionStore({ idleMs: 60_000, absoluteMs: 60_000 });
    expectations = {
      issuer: provider.issuer, clientId: provider.clientId, signatures: await signaturesOf(issuerOf(provider)),
      clockSkewMs: 30_000, maxAgeMs: 300_000, now: Date.now, firstUse: (jti, ms) => seen.firstUseOfJti('corp', jti, ms),
    };
  });
  const claims = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
    iss: provider.issuer, aud: provider.clientId, iat: Math.floor(Date.now() / 1000), jti: randomId(),
    events: { [BACKCHANNEL_LOGOUT_EVENT]: {} }, sid: 'idp-sid', sub: 'alice', ...overrides,
  });
  const logoutToken = (overrides: Record<string, unknown> = {}, header: Record<string, unknown> = { typ: 'logout+jwt' }): string =>
    provider.sign(claims(overrides), header);

  it('accepts the provider\'s logout token once, naming sid and sub; the replay is refused', async () => {
    const token = logoutToken();
    expect(await verifyLogoutToken(token, expectations)).toEqual({ ok: true, subject: 'alice', idpSid: 'idp-sid' });
    expect(await verifyLogoutToken(token, expectations)).toEqual({ ok: false, reason: 'jti replayed' });
  });

  it.each([
    ['sid only', { sub: undefined }, { subject: undefined, idpSid: 'idp-sid' }],
    ['sub only', { sid: undefined }, { subject: 'alice', idpSid: undefined }],
    ['aud as a list', { aud: ['other', 'authgate'] }, { subject: 'alice', idpSid: 'idp-sid' }],
  ])('accepts %s', async (_label, overrides, expected) => {
    expect(await verifyLogoutToken(logoutToken(overrides), expectations)).toEqual({ ok: true, ...expected });
  });

  it('accepts typ application/logout+jwt', async () => {
    expect(await verifyLogoutToken(logoutToken({}, { typ: 'application/logout+jwt' }), expectations)).toMatchObject({ ok: true });
  });

  const anotherKey = generateIdpKey('rsa');
  it.each([
    ['unsigned (alg none)', () => unsecured(claims(), 'none')],
    ['signed by another key', () => provider.sign(claims(), { typ: 'logout+jwt' }, anotherKey)],
    ['another client\'s', () => logoutToken({ aud: 'another-client' })],
    ['of another issuer', () => logoutToken({ iss: 'http://127.0.0.1:1' })],
    ['carrying a nonce', () => logoutToken({ nonce: 'n-1' })],
    ['without events', () => logoutToken({ events: undefined })],
    ['with events lacking the back-channel member', () => logoutToken({ events: { 'http://schemas.openid.net/event/other': {} } })],
    ['with the member not an object', () => logoutToken({ events: { [BACKCHANNEL_LOGOUT_EVENT]: true } })],
    ['without sid and sub', () => logoutToken({ sid: undefined, sub: undefined })],
    ['without jti', () => logoutToken({ jti: undefined })],
    ['without iat', () => logoutToken({ iat: undefined })],
    ['issued in the future', () => logoutToken({ iat: Math.floor(Date.now() / 1000) + 3600 })],
    ['too old', () => logoutToken({ iat: Math.floor(Date.now() / 1000) - 3600 })],
    ['expired', () => logoutToken({ exp: Math.floor(Date.now() / 1000) - 3600 })],
    ['typed as an ID token', () => logoutToken({}, { typ: 'JWT' })],
    ['untyped', () => logoutToken({}, {})],
  ])('refuses a token %s', async (_label, make) => {
    expect(await verifyLogoutToken(make(), expectations)).toMatchObject({ ok: false });
  });
});

describe('client authentication', () => {
  it('private_key_jwt: signs in with a client assertion from the key file', async () => {
    const key = generateIdpKey('ec');
    const dir = await mkdtemp(join(tmpdir(), 'authgate-rp-'));
    const keyFile = join(dir, 'rp.pem');
    await writeFile(keyFile, key.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const keyed = await startOidcProvider({ redirectUri: REDIRECT_URI, clientAuth: { method: 'private_key_jwt', publicJwk: key.jwk } });
    try {
      const keyedRp = await relyingParty(keyed, REDIRECT_URI, { clientAuth: { method: 'private_key_jwt', keyFile, algorithm: 'ES256' } });
      const { query, preLogin } = await authorize(keyed, keyedRp, 'bob');
      expect(await keyedRp.complete(query, preLogin)).toMatchObject({ ok: true, subject: 'bob' });
      const withSecret = await relyingParty(keyed, REDIRECT_URI);
      const refused = await authorize(keyed, withSecret, 'bob');
      expect(await withSecret.complete(refused.query, refused.preLogin)).toMatchObject({ ok: false, reason: 'provider_error' });
    } finally {
      await keyed.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a public client: PKCE alone', async () => {
    const open = await startOidcProvider({ redirectUri: REDIRECT_URI, clientAuth: { method: 'none' } });
    try {
      const publicRp = await relyingParty(open, REDIRECT_URI, { clientAuth: { method: 'none' } });
      const { query, preLogin } = await authorize(open, publicRp, 'alice');
      expect(await publicRp.complete(query, preLogin)).toMatchObject({ ok: true, subject: 'alice' });
    } finally {
      await open.close();
    }
  });
});
