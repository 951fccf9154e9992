import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import type { Page } from 'playwright-core';
import { rawRequest } from './gateway.js';
import { generateIdpKey, type IdpKey } from './idp.js';
import { signRaw } from './tokens.js';

/**
 * A real OpenID provider (panva's oidc-provider) on loopback: one confidential client, the users alice (staff) and
 * bob (guest) with `roles` claims, authorization code + PKCE, refresh tokens rotated on every use, RP-initiated
 * logout and back-channel logout. Its signing key is generated here, so a test can also mint tokens "of the
 * provider" (logout tokens, tampered ID tokens) with the very key it publishes.
 */

export interface ProviderInstance {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  use(middleware: (ctx: KoaContext, next: () => Promise<void>) => Promise<void>): void;
}

interface KoaContext {
  path: string;
  method: string;
  body: unknown;
}

export const USERS: Readonly<Record<string, { readonly email: string; readonly roles: readonly string[] }>> = {
  alice: { email: 'alice@example.com', roles: ['staff'] },
  bob: { email: 'bob@example.com', roles: ['guest'] },
};

export interface OidcProviderOptions {
  /** Where the provider sends the browser back (the gateway's callback). */
  readonly redirectUri: string;
  readonly postLogoutRedirectUri?: string;
  readonly backchannelLogoutUri?: string;
  readonly clientId?: string;
  readonly clientSecret?: string;
  /** Seconds an access token lives (refresh tests use short ones). */
  readonly accessTokenTtlS?: number;
  /** Access tokens as JWTs (RFC 9068) for this resource, instead of opaque ones. */
  readonly jwtAccessTokensFor?: string;
  /** How the client authenticates at the token endpoint; default client_secret_basic. */
  readonly clientAuth?: { readonly method: 'private_key_jwt'; readonly publicJwk: Record<string, unknown> } | { readonly method: 'none' };
}

/** Rewrites the token endpoint's JSON answer before it leaves the provider (a compromised or buggy IdP). */
export type TokenResponseTamper = (body: Record<string, unknown>) => Record<string, unknown>;

export interface TestProvider {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** The published signing key (RS256), private part included. */
  readonly key: IdpKey;
  /** Token endpoint answers that carried a code exchange or a refresh. */
  readonly tokenRequests: number;
  /** Requests for the provider's JWK Set (its signing keys). */
  readonly jwksRequests: number;
  tamperTokenResponse(tamper: TokenResponseTamper | undefined): void;
  /** Signs `payload` with the provider's key (or `key`): `typ` and other header members via `header`. */
  sign(payload: Record<string, unknown>, header?: Record<string, unknown>, key?: IdpKey): string;
  /** Drives the provider's own login and consent pages over HTTP as `user`; resolves with the redirect to the client. */
  signIn(authorizationUrl: URL | string, user: string): Promise<URL>;
  close(): Promise<void>;
}

export async function startOidcProvider(options: OidcProviderOptions): Promise<TestProvider> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const key = generateIdpKey('rsa');
  const clientId = options.clientId ?? 'authgate';
  const clientSecret = options.clientSecret ?? 'a-client-secret-for-tests-only-0123456789';
  const provider = new Provider(issuer, providerConfiguration(options, key, clientId, clientSecret));
  let tamper: TokenResponseTamper | undefined;
  let tokenRequests = 0;
  let jwksRequests = 0;
  provider.use(async (ctx, next) => {
    if (ctx.path === '/jwks') jwksRequests++;
    await next();
    if (ctx.method !== 'POST' || ctx.path !== '/token') return;
    tokenRequests++;
    if (tamper !== undefined && typeof ctx.body === 'object' && ctx.body !== null) ctx.body = tamper(ctx.body as Record<string, unknown>);
  });
  server.on('request', provider.callback());
  return {
    issuer,
    clientId,
    clientSecret,
    key,
    get tokenRequests() {
      return tokenRequests;
    },
    get jwksRequests() {
      return jwksRequests;
    },
    tamperTokenResponse(next) {
      tamper = next;
    },
    sign: (payload, header = {}, signer = key) => signRaw(signer.alg, signer.privateKey, { alg: signer.alg, kid: signer.kid, ...header }, payload),
    signIn: (url, user) => scriptedSignIn(new URL(url), user, options.redirectUri),
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function providerConfiguration(options: OidcProviderOptions, key: IdpKey, clientId: string, clientSecret: string): Record<string, unknown> {
  return {
    clients: [{
      client_id: clientId,
      redirect_uris: [options.redirectUri],
      post_logout_redirect_uris: options.postLogoutRedirectUri === undefined ? [] : [options.postLogoutRedirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      ...clientAuthMetadata(options, clientSecret),
      ...(options.backchannelLogoutUri === undefined ? {} : { backchannel_logout_uri: options.backchannelLogoutUri, backchannel_logout_session_required: true }),
    }],
    jwks: { keys: [{ ...key.privateKey.export({ format: 'jwk' }), kid: key.kid, alg: key.alg, use: 'sig' }] },
    cookies: { keys: ['cookie-key-for-the-test-provider-0123456789'] },
    // Its outgoing requests (back-channel logout) refuse loopback addresses by default; the tests' RP lives there.
    fetch: (url: string, { dispatcher: _ssrfGuard, ...init }: RequestInit & { dispatcher?: unknown }) => fetch(url, init),
    findAccount: (_ctx: unknown, id: string) => {
      const user = USERS[id];
      if (user === undefined) return undefined;
      return { accountId: id, claims: () => ({ sub: id, email: user.email, email_verified: true, roles: user.roles }) };
    },
    claims: { openid: ['sub', 'roles'], email: ['email', 'email_verified'] },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    rotateRefreshToken: true,
    // Refresh tokens whether or not the request asked for consent (oidc-provider drops offline_access without it).
    issueRefreshToken: (_ctx: unknown, client: { grantTypeAllowed(grant: string): boolean }) => client.grantTypeAllowed('refresh_token'),
    ttl: { AccessToken: options.accessTokenTtlS ?? 3600, IdToken: 3600, RefreshToken: 86400, Interaction: 600, Session: 86400, Grant: 86400 },
    features: {
      devInteractions: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      ...(options.jwtAccessTokensFor === undefined ? {} : { resourceIndicators: jwtResource(options.jwtAccessTokensFor) }),
    },
  };
}

function clientAuthMetadata(options: OidcProviderOptions, clientSecret: string): Record<string, unknown> {
  switch (options.clientAuth?.method) {
    case undefined:
      return { token_endpoint_auth_method: 'client_secret_basic', client_secret: clientSecret };
    case 'none':
      return { token_endpoint_auth_method: 'none' };
    case 'private_key_jwt':
      return { token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [options.clientAuth.publicJwk] } };
  }
}

function jwtResource(resource: string): Record<string, unknown> {
  return {
    enabled: true,
    defaultResource: () => resource,
    useGrantedResource: () => true,
    getResourceServerInfo: () => ({ scope: 'api', audience: resource, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
  };
}

/**
 * The provider's devInteractions pages as a browser would use them: follow redirects keeping cookies, fill the
 * login form (any password) and confirm consent, until the provider redirects to the client.
 */
async function scriptedSignIn(start: URL, user: string, redirectUri: string): Promise<URL> {
  const cookies = new Map<string, string>();
  let url = start;
  for (let step = 0; step < 12; step++) {
    const response = await fetch(url, { redirect: 'manual', headers: { cookie: cookieHeader(cookies) } });
    remember(cookies, response);
    const location = response.headers.get('location');
    if (location !== null) {
      url = new URL(location, url);
      if (url.href.startsWith(redirectUri)) return url;
      continue;
    }
    const html = await response.text();
    const prompt = /name="prompt" value="(\w+)"/.exec(html)?.[1];
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    if (prompt === undefined || action === undefined) throw new Error(`unexpected provider page at ${url.pathname}: ${response.status}`);
    const form = new URLSearchParams(prompt === 'login' ? { prompt, login: user, password: 'any' } : { prompt });
    const posted = await fetch(new URL(action, url), {
      method: 'POST', redirect: 'manual', body: form, headers: { cookie: cookieHeader(cookies) },
    });
    remember(cookies, posted);
    url = new URL(posted.headers.get('location') ?? '', url);
  }
  throw new Error('the provider did not redirect back within 12 steps');
}

function remember(cookies: Map<string, string>, response: Response): void {
  for (const line of response.headers.getSetCookie()) {
    const pair = line.split(';')[0] ?? '';
    const equals = pair.indexOf('=');
    cookies.set(pair.slice(0, equals), pair.slice(equals + 1));
  }
}

function cookieHeader(cookies: Map<string, string>): string {
  return [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
}

/**
 * Signs `user` in at the gateway on `gatewayPort` the way a browser would, with the provider's pages driven over
 * HTTP: a navigation to `path` (a login route), the provider, the gateway's callback. Resolves with the session
 * cookie as `name=value`.
 */
export async function signInThroughGateway(gatewayPort: number, provider: TestProvider, user: string, path = '/app/x'): Promise<string> {
  const start = await rawRequest(gatewayPort, { target: path, headers: [['Sec-Fetch-Mode', 'navigate']] });
  const flowCookie = (start.headers['set-cookie'] ?? '').split(';')[0] as string;
  const callback = await provider.signIn(new URL(start.headers.location ?? ''), user);
  const done = await rawRequest(gatewayPort, { target: `/_authgate/callback${callback.search}`, headers: [['Cookie', flowCookie]] });
  if (done.status !== 302) throw new Error(`the gateway's callback answered ${done.status}`);
  return (done.headers['set-cookie'] ?? '').split(';')[0] as string;
}

/**
 * Goes through the provider's login and consent pages (whichever it shows) until the browser is back at `landing`,
 * directly or through a page of the gateway's own that moves on by itself.
 */
export async function signInAtProvider(page: Page, user: string, landing: string): Promise<void> {
  for (let step = 0; step < 4 && page.url() !== landing && (await page.locator('button[type=submit]').count()) > 0; step++) {
    const at = page.url();
    if ((await page.locator('input[name=login]').count()) > 0) {
      await page.fill('input[name=login]', user);
      await page.fill('input[name=password]', 'any');
    }
    await page.click('button[type=submit]');
    await page.waitForURL((url) => url.href !== at);
  }
  await page.waitForURL(landing);
}
