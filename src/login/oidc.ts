import { createPrivateKey, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { importPKCS8 } from 'jose';
import * as oidc from 'openid-client';
import type { LoginProviderConfig } from '../config/login.js';
import type { IssuerConfig } from '../config/types.js';
import { verifyLogoutToken, type LogoutTokenCheck } from './backchannel.js';
import { randomId } from './cookies.js';
import type { PreLogin, Session, SessionTokens } from './sessions/types.js';
import type { SignatureVerifier } from './signatures.js';

/**
 * One OpenID provider seen as a relying party (authorization code + PKCE S256) through openid-client. openid-client
 * checks the protocol: the callback's `state` and `iss`, the code exchange, and the ID token's `iss`, `aud`,
 * `exp`, `iat`, `nonce` (and `azp` with several audiences). The ID token's signature, `azp` whenever present, and
 * JWT access tokens are checked here with the issuer's keys as the gateway holds them (signatures.ts).
 */
export interface RelyingPartyOptions {
  readonly provider: LoginProviderConfig;
  /** The `issuers:` entry the provider names (discovery). */
  readonly issuer: IssuerConfig;
  /** `{external_url}{reserved_prefix}/callback`. */
  readonly redirectUri: string;
  readonly signatures: SignatureVerifier;
  readonly timeoutS?: number;
  readonly now?: () => number;
}

export type SignInFailure =
  | 'no_flow'             // no pre-login record: no cookie, expired, or already used
  | 'state_mismatch'
  | 'provider_error'      // the provider answered with an error (access_denied, invalid_client…)
  | 'code_rejected'       // invalid_grant: a replayed, expired or foreign code, or a wrong PKCE verifier
  | 'id_token_invalid'
  | 'identity_invalid'    // identity_from access_token/userinfo did not verify or names another subject
  | 'unavailable'         // the provider did not answer
  | 'invalid_response';

export type Failure<R extends string> = { readonly ok: false; readonly reason: R; readonly detail: string };

export interface SignedIn {
  readonly ok: true;
  readonly subject: string;
  readonly idpSid: string | undefined;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly tokens: SessionTokens;
}

export interface Refreshed {
  readonly ok: true;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly tokens: SessionTokens;
}

type TokenResponse = oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;

const DEFAULT_TIMEOUT_S = 5;
/** A provider sends the logout token as the session ends: an older one is a replay or a stuck queue. */
const LOGOUT_TOKEN_MAX_AGE_MS = 5 * 60_000;

export class RelyingParty {
  private readonly now: () => number;

  private constructor(
    private readonly config: oidc.Configuration,
    private readonly options: RelyingPartyOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Reads the provider's discovery document (once per config load). */
  static async discover(options: RelyingPartyOptions): Promise<RelyingParty> {
    const issuerUrl = new URL(options.issuer.issuer);
    const config = await oidc.discovery(issuerUrl, options.provider.clientId, undefined, await clientAuth(options.provider), {
      timeout: options.timeoutS ?? DEFAULT_TIMEOUT_S,
      // The config only accepts an http issuer on loopback (development); anything else stays https-only.
      execute: issuerUrl.protocol === 'http:' ? [oidc.allowInsecureRequests] : [],
    });
    return new RelyingParty(config, options);
  }

  get name(): string {
    return this.options.provider.name;
  }

  /** A new flow: its pre-login record (to store under a fresh flow ID) and where to send the browser. */
  async begin(returnTo: string): Promise<{ readonly url: URL; readonly preLogin: PreLogin }> {
    const preLogin: PreLogin = {
      provider: this.options.provider.name, state: randomId(), nonce: randomId(), codeVerifier: oidc.randomPKCECodeVerifier(), returnTo,
    };
    const url = oidc.buildAuthorizationUrl(this.config, {
      ...this.options.provider.params,
      redirect_uri: this.options.redirectUri,
      scope: this.options.provider.scopes.join(' '),
      state: preLogin.state,
      nonce: preLogin.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(preLogin.codeVerifier),
      code_challenge_method: 'S256',
    });
    return { url, preLogin };
  }

  /** The callback: `query` is the callback request's query string; `preLogin` the record its flow cookie named. */
  async complete(query: string, preLogin: PreLogin | undefined): Promise<SignedIn | Failure<SignInFailure>> {
    if (preLogin === undefined) return failure('no_flow', 'no pre-login record for this flow');
    const callback = new URL(this.options.redirectUri);
    callback.search = query;
    const states = callback.searchParams.getAll('state');
    if (states.length !== 1 || !sameText(states[0] as string, preLogin.state)) return failure('state_mismatch', 'state differs from the flow');
    let tokens: TokenResponse;
    try {
      tokens = await oidc.authorizationCodeGrant(this.config, callback, {
        pkceCodeVerifier: preLogin.codeVerifier, expectedState: preLogin.state, expectedNonce: preLogin.nonce, idTokenExpected: true,
      }, { redirect_uri: this.options.redirectUri });
    } catch (error) {
      return failure(classify(error, 'code_rejected'), describe(error));
    }
    const idToken = await this.checkIdToken(tokens.id_token, undefined);
    if (!idToken.ok) return idToken;
    const claims = await this.identityClaims(tokens, idToken.payload);
    if (!claims.ok) return claims;
    const subject = idToken.payload.sub as string;
    const idpSid = typeof idToken.payload.sid === 'string' ? idToken.payload.sid : undefined;
    return { ok: true, subject, idpSid, claims: claims.claims, tokens: this.sessionTokens(tokens, undefined, idToken.payload) };
  }

  /** New tokens for `session`; `invalid_grant` means the provider ended the grant, and so the session ends. */
  async refresh(session: Session): Promise<Refreshed | Failure<'invalid_grant' | 'unavailable' | 'invalid_response' | 'id_token_invalid' | 'identity_invalid'>> {
    const refreshToken = session.tokens.refreshToken;
    if (refreshToken === undefined) return failure('invalid_grant', 'the session has no refresh token');
    let tokens: TokenResponse;
    try {
      tokens = await oidc.refreshTokenGrant(this.config, refreshToken);
    } catch (error) {
      const reason = classify(error, 'invalid_grant');
      return failure(reason === 'invalid_grant' || reason === 'unavailable' ? reason : 'invalid_response', describe(error));
    }
    let idClaims = session.claims;
    if (tokens.id_token !== undefined) {
      const idToken = await this.checkIdToken(tokens.id_token, session.subject);
      if (!idToken.ok) return idToken;
      idClaims = idToken.payload;
    }
    const claims = this.options.provider.identityFrom === 'id_token' ? { ok: true as const, claims: idClaims } : await this.identityClaims(tokens, idClaims);
    if (!claims.ok) return claims;
    return { ok: true, claims: claims.claims, tokens: this.sessionTokens(tokens, session.tokens, idClaims) };
  }

  /** RP-initiated logout at the provider, when it offers it. */
  endSessionUrl(idToken: string, postLogoutRedirectUri: string): string | undefined {
    if (this.config.serverMetadata().end_session_endpoint === undefined) return undefined;
    return oidc.buildEndSessionUrl(this.config, { id_token_hint: idToken, post_logout_redirect_uri: postLogoutRedirectUri }).href;
  }

  /** A back-channel `logout_token` of this provider, for this client; `firstUse` remembers jtis store-wide. */
  verifyLogoutToken(token: string, firstUse: (jti: string, rememberMs: number) => Promise<boolean>): Promise<LogoutTokenCheck> {
    return verifyLogoutToken(token, {
      issuer: this.options.issuer.issuer, clientId: this.options.provider.clientId, signatures: this.options.signatures,
      clockSkewMs: this.options.issuer.clockSkewMs, maxAgeMs: LOGOUT_TOKEN_MAX_AGE_MS, now: this.now, firstUse,
    });
  }

  /** The signature with the issuer's keys, `azp` when present, `iat` not ahead, and (on refresh) the same subject as before. */
  private async checkIdToken(jws: string | undefined, subject: string | undefined): Promise<{ ok: true; payload: Readonly<Record<string, unknown>> } | Failure<'id_token_invalid'>> {
    if (jws === undefined) return failure('id_token_invalid', 'no ID token');
    const checked = await this.options.signatures.verify(jws);
    if (!checked.ok) return failure('id_token_invalid', `signature: ${checked.reason}`);
    const { payload } = checked;
    if (payload.azp !== undefined && payload.azp !== this.options.provider.clientId) return failure('id_token_invalid', 'azp is another client');
    if (typeof payload.sub !== 'string') return failure('id_token_invalid', 'no sub');
    if (typeof payload.iat !== 'number' || payload.iat * 1000 > this.now() + this.options.issuer.clockSkewMs) {
      return failure('id_token_invalid', 'iat is missing or in the future');
    }
    if (subject !== undefined && payload.sub !== subject) return failure('id_token_invalid', 'a refreshed ID token names another subject');
    return { ok: true, payload };
  }

  /** Whose verified claims make the identity (`identity_from`); always about the ID token's subject. */
  private async identityClaims(tokens: TokenResponse, idClaims: Readonly<Record<string, unknown>>): Promise<{ ok: true; claims: Readonly<Record<string, unknown>> } | Failure<'identity_invalid' | 'unavailable'>> {
    switch (this.options.provider.identityFrom) {
      case 'id_token':
        return { ok: true, claims: idClaims };
      case 'access_token':
        return this.accessTokenClaims(tokens.access_token, idClaims.sub);
      case 'userinfo':
        try {
          return { ok: true, claims: await oidc.fetchUserInfo(this.config, tokens.access_token, idClaims.sub as string) };
        } catch (error) {
          return failure(classify(error, 'identity_invalid') === 'unavailable' ? 'unavailable' : 'identity_invalid', describe(error));
        }
    }
  }

  private async accessTokenClaims(jws: string, subject: unknown): Promise<{ ok: true; claims: Readonly<Record<string, unknown>> } | Failure<'identity_invalid'>> {
    const checked = await this.options.signatures.verify(jws);
    if (!checked.ok) return failure('identity_invalid', `access token signature: ${checked.reason}`);
    const { payload } = checked;
    if (payload.iss !== this.options.issuer.issuer) return failure('identity_invalid', 'access token of another issuer');
    if (typeof payload.exp !== 'number' || payload.exp * 1000 <= this.now()) return failure('identity_invalid', 'access token expired');
    if (payload.sub !== subject) return failure('identity_invalid', 'access token of another subject');
    return { ok: true, claims: payload };
  }

  /** Tokens to keep: a refresh without a new refresh or ID token keeps the previous ones. */
  private sessionTokens(tokens: TokenResponse, previous: SessionTokens | undefined, idClaims: Readonly<Record<string, unknown>>): SessionTokens {
    const expiresIn = tokens.expiresIn();
    const idExp = typeof idClaims.exp === 'number' ? idClaims.exp * 1000 : this.now();
    return {
      idToken: tokens.id_token ?? previous?.idToken ?? '',
      accessToken: tokens.access_token,
      accessTokenExpiresAt: expiresIn === undefined ? idExp : this.now() + expiresIn * 1000,
      refreshToken: tokens.refresh_token ?? previous?.refreshToken,
    };
  }
}

async function clientAuth(provider: LoginProviderConfig): Promise<oidc.ClientAuth> {
  switch (provider.clientAuth.method) {
    case 'client_secret_basic':
      return oidc.ClientSecretBasic(provider.clientAuth.secret.reveal());
    case 'none':
      return oidc.None();
    case 'private_key_jwt': {
      const key = createPrivateKey(await readFile(provider.clientAuth.keyFile));
      const pem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
      return oidc.PrivateKeyJwt(await importPKCS8(pem, provider.clientAuth.algorithm));
    }
  }
}

function failure<R extends string>(reason: R, detail: string): Failure<R> {
  return { ok: false, reason, detail };
}

function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

const TOKEN_CLAIM_CODES = new Set(['OAUTH_JWT_CLAIM_COMPARISON_FAILED', 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED', 'OAUTH_INVALID_RESPONSE']);

/** What went wrong, for the log, the metric and the answer; `rejected` is the reason for an `invalid_grant`. */
function classify<R extends string>(error: unknown, rejected: R): R | 'provider_error' | 'id_token_invalid' | 'unavailable' | 'invalid_response' {
  if (error instanceof oidc.ResponseBodyError) return error.error === 'invalid_grant' ? rejected : 'provider_error';
  // A refused client (401 invalid_client) comes as a WWW-Authenticate challenge rather than a body.
  if (error instanceof oidc.AuthorizationResponseError || error instanceof oidc.WWWAuthenticateChallengeError) return 'provider_error';
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && TOKEN_CLAIM_CODES.has(code)) return 'id_token_invalid';
  const name = (error as { name?: unknown }).name;
  if (name === 'AbortError' || name === 'TimeoutError' || (error instanceof TypeError && error.message === 'fetch failed')) return 'unavailable';
  return 'invalid_response';
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
