import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIssuer, type DevIssuer } from '../../src/testing/dev-issuer.js';

/**
 * The dev issuer's browser sign-in, with openid-client as the relying party: discovery, the page to pick a user,
 * the code exchange with PKCE, the tokens, RP-initiated logout, and every refusal a real provider would make.
 */
const CALLBACK = 'http://127.0.0.1:9/app/callback';
const USERS = { alice: { email: 'alice@example.com', roles: ['admin'] }, bob: { email: 'bob@example.com', roles: ['user'] } };

let issuer: DevIssuer;
let client: oidc.Configuration;

beforeAll(async () => {
  issuer = await startDevIssuer({ algorithm: 'RS256', audience: 'default-api', users: USERS });
  issuer.registerClient({ clientId: 'app', redirectUris: [CALLBACK], audience: 'orders-api' });
  client = await oidc.discovery(new URL(issuer.issuer), 'app', undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
});

afterAll(async () => {
  await issuer?.close();
});

interface Flow {
  readonly url: URL;
  readonly verifier: string;
  readonly state: string;
  readonly nonce: string;
}

async function flow(extra: Record<string, string> = {}): Promise<Flow> {
  const verifier = oidc.randomPKCECodeVerifier();
  const [state, nonce] = [oidc.randomState(), oidc.randomNonce()];
  const url = oidc.buildAuthorizationUrl(client, {
    redirect_uri: CALLBACK, scope: 'openid email', state, nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra,
  });
  return { url, verifier, state, nonce };
}

function tokenRequest(form: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(client.serverMetadata().token_endpoint as string, { method: 'POST', body: new URLSearchParams(form), headers });
}

describe('dev issuer sign-in', () => {
  it('publishes the endpoints of the authorization code flow with PKCE in its discovery document', () => {
    expect(client.serverMetadata()).toMatchObject({
      issuer: issuer.issuer,
      authorization_endpoint: `${issuer.issuer}/authorize`,
      token_endpoint: `${issuer.issuer}/token`,
      end_session_endpoint: `${issuer.issuer}/end_session`,
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['none'],
    });
  });

  it('shows a page to pick a user: a form, no script, a CSP that lets it post only here and to the client', async () => {
    const page = await fetch((await flow()).url);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toBe(
      "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self' http://127.0.0.1:9",
    );
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    const html = await page.text();
    expect(html).not.toMatch(/<script|style=|on\w+=/i);
    expect(html).toMatch(/<form method="post">/);
    expect([...html.matchAll(/<button type="submit" name="user" value="(\w+)">/g)].map((match) => match[1])).toEqual(['alice', 'bob']);
  });

  it('signs alice in: an ID token for the client with her claims and the nonce, an access token for its audience', async () => {
    const started = await flow();
    const back = await issuer.signInAs(started.url, 'alice');
    expect(back.origin + back.pathname).toBe(CALLBACK);
    const tokens = await oidc.authorizationCodeGrant(client, back, { pkceCodeVerifier: started.verifier, expectedState: started.state, expectedNonce: started.nonce });
    expect(tokens.claims()).toMatchObject({ iss: issuer.issuer, aud: 'app', sub: 'alice', email: 'alice@example.com', roles: ['admin'], nonce: started.nonce });
    const { payload } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(issuer.jwksUri)), { issuer: issuer.issuer, audience: 'orders-api', typ: 'at+jwt' });
    expect(payload).toMatchObject({ sub: 'alice', client_id: 'app', scope: 'openid email', roles: ['admin'] });
    expect(tokens.expires_in).toBe(3600);
  });

  it('a code works once, only with its PKCE verifier, client and redirect URI, and never with a client secret', async () => {
    /** A fresh code for bob and the exchange that would be right for it. */
    const exchange = async (): Promise<Record<string, string>> => {
      const started = await flow();
      const code = (await issuer.signInAs(started.url, 'bob')).searchParams.get('code') as string;
      return { grant_type: 'authorization_code', code, client_id: 'app', redirect_uri: CALLBACK, code_verifier: started.verifier };
    };
    const wrong: ((good: Record<string, string>) => Record<string, string>)[] = [
      (good) => ({ ...good, code_verifier: oidc.randomPKCECodeVerifier() }),
      (good) => ({ ...good, client_id: 'other' }),
      (good) => ({ ...good, redirect_uri: 'http://127.0.0.1:9/elsewhere' }),
    ];
    for (const spoil of wrong) {
      const answer = await tokenRequest(spoil(await exchange()));
      expect([answer.status, ((await answer.json()) as { error: string }).error]).toEqual([400, 'invalid_grant']);
    }
    const good = await exchange();
    const secret = await tokenRequest(good, { authorization: `Basic ${Buffer.from('app:secret').toString('base64')}` });
    expect(secret.status).toBe(401);
    expect(await (await tokenRequest(good)).json()).toMatchObject({ token_type: 'Bearer' });
    const replay = await tokenRequest(good);
    expect([replay.status, ((await replay.json()) as { error: string }).error]).toEqual([400, 'invalid_grant']);
  });

  it('never redirects to an unregistered place; tells a registered client what is wrong with its request', async () => {
    for (const url of [(await flow({ redirect_uri: 'http://127.0.0.1:9/evil' })).url, new URL((await flow()).url.href.replace('client_id=app', 'client_id=nobody'))]) {
      const answer = await fetch(url, { redirect: 'manual' });
      expect(answer.status).toBe(400);
      expect(answer.headers.get('location')).toBeNull();
    }
    const noPkce = (await flow()).url;
    noPkce.searchParams.delete('code_challenge');
    const refused = new URL((await fetch(noPkce, { redirect: 'manual' })).headers.get('location') as string);
    expect(Object.fromEntries(refused.searchParams)).toMatchObject({ error: 'invalid_request', iss: issuer.issuer });
    const noOpenid = await issuer.signInAs((await flow({ scope: 'email' })).url, 'alice');
    expect(noOpenid.searchParams.get('error')).toBe('invalid_scope');
  });

  it('sends a signed-out browser back only to a page of the client that the ID token names', async () => {
    const started = await flow();
    const tokens = await oidc.authorizationCodeGrant(client, await issuer.signInAs(started.url, 'alice'), {
      pkceCodeVerifier: started.verifier, expectedState: started.state, expectedNonce: started.nonce,
    });
    const endSession = (back: string) => fetch(oidc.buildEndSessionUrl(client, { id_token_hint: tokens.id_token as string, post_logout_redirect_uri: back, state: 's1' }), { redirect: 'manual' });
    const home = await endSession('http://127.0.0.1:9/app/');
    expect([home.status, home.headers.get('location')]).toEqual([302, 'http://127.0.0.1:9/app/?state=s1']);
    expect((await endSession('https://evil.example/')).status).toBe(400);
    const forged = await fetch(`${issuer.issuer}/end_session?id_token_hint=${tokens.id_token?.slice(0, -4)}AAAA&post_logout_redirect_uri=http://127.0.0.1:9/`, { redirect: 'manual' });
    expect(forged.status).toBe(400);
  });

  it('needs users for sign-in, and an asymmetric key for them', async () => {
    const plain = await startDevIssuer();
    expect(() => plain.registerClient({ clientId: 'x', redirectUris: [CALLBACK] })).toThrow('start the dev issuer with users');
    expect(((await (await fetch(plain.discoveryUri)).json()) as Record<string, unknown>).authorization_endpoint).toBeUndefined();
    await plain.close();
    await expect(startDevIssuer({ algorithm: 'HS256', users: USERS })).rejects.toThrow('sign-in needs an asymmetric algorithm');
  });
});
