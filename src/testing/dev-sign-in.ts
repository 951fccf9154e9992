/**
 * Browser sign-in at the dev issuer (OpenID Connect, authorization code with PKCE S256, public clients only): a page
 * to pick one of the configured users (no passwords: it is a development issuer), a token endpoint that checks the
 * code, the client, the redirect URI and the PKCE verifier, and an end-session endpoint that sends the browser back.
 * Everything it refuses, it refuses as a real provider would, so a relying party's tests of those paths mean
 * something.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { compactVerify, type CryptoKey, type JWTPayload, type KeyObject } from 'jose';
import { escapeHtml } from '../login/pages.js';

/** A relying party allowed to sign people in: a public client (PKCE alone) with its exact redirect URIs. */
export interface DevClient {
  readonly clientId: string;
  /** Codes go only to these, compared exactly. A post-logout redirect may go to any page of their origins. */
  readonly redirectUris: readonly string[];
  /** `aud` of the access tokens this client gets; default the issuer's `audience`. */
  readonly audience?: string | readonly string[];
}

/** What the sign-in endpoints need of the issuer around them. */
export interface DevSignInSettings {
  readonly issuer: string;
  /** Who can sign in: name → claims (`sub` defaults to the name). */
  readonly users: Readonly<Record<string, JWTPayload>>;
  /** Signs a token of this issuer: `typ` JWT for ID tokens, at+jwt for access tokens. */
  sign(claims: JWTPayload, options: { audience: string | readonly string[] | undefined; typ: 'JWT' | 'at+jwt' }): Promise<string>;
  /** The issuer's public key, to check an `id_token_hint`. */
  readonly publicKey: CryptoKey | KeyObject;
  /** Seconds the tokens live. */
  readonly ttlSeconds: number;
}

interface Grant {
  readonly clientId: string;
  readonly redirectUri: string;
  readonly codeChallenge: string;
  readonly nonce: string | undefined;
  readonly scope: string;
  readonly user: string;
  readonly expiresAt: number;
}

/** An authorization request, as its page and its form post carry it. */
type AuthorizationParams = Readonly<Record<(typeof AUTHORIZATION_PARAMS)[number], string>>;

const AUTHORIZATION_PARAMS = ['response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'nonce', 'code_challenge', 'code_challenge_method'] as const;
const CODE_TTL_MS = 60_000;
const MAX_FORM_BYTES = 16 * 1024;
const PKCE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const PKCE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

export class DevSignIn {
  private readonly clients = new Map<string, DevClient>();
  private readonly codes = new Map<string, Grant>();

  constructor(private readonly s: DevSignInSettings) {}

  registerClient(client: DevClient): void {
    this.clients.set(client.clientId, client);
  }

  /** GET shows the page to pick a user; POST (its form) picks one and sends the browser back with a code. */
  async authorize(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = req.method === 'POST' ? new URLSearchParams(await readForm(req)) : new URLSearchParams(queryOf(req));
    const params = Object.fromEntries(AUTHORIZATION_PARAMS.map((name) => [name, form.get(name) ?? ''])) as AuthorizationParams;
    const client = this.clients.get(params.client_id);
    // A request that names no registered redirect URI is never redirected anywhere (RFC 6749 §4.1.2.1).
    if (client === undefined || !client.redirectUris.includes(params.redirect_uri)) {
      return sendPage(res, 400, 'Sign-in refused', '<p>Unknown client, or a redirect URI it did not register.</p>');
    }
    const refusal = authorizationRefusal(params);
    if (refusal !== undefined) return redirectBack(res, params, { error: refusal[0], error_description: refusal[1] }, this.s.issuer);
    const user = form.get('user');
    if (req.method !== 'POST' || user === null || this.s.users[user] === undefined) return this.pickUser(res, params);
    const code = randomBytes(32).toString('base64url');
    this.pruneCodes();
    this.codes.set(code, {
      clientId: client.clientId, redirectUri: params.redirect_uri, codeChallenge: params.code_challenge, scope: params.scope,
      nonce: params.nonce === '' ? undefined : params.nonce, user, expiresAt: Date.now() + CODE_TTL_MS,
    });
    return redirectBack(res, params, { code }, this.s.issuer);
  }

  /** POST: a code (once, within a minute, for its client, redirect URI and PKCE verifier) for an ID and an access token. */
  async token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'invalid_request', error_description: 'POST only' });
    if (req.headers.authorization !== undefined) {
      return sendJson(res, 401, { error: 'invalid_client', error_description: 'the dev issuer has public clients only (PKCE, no secret)' });
    }
    const form = new URLSearchParams(await readForm(req));
    if (form.get('grant_type') !== 'authorization_code') return sendJson(res, 400, { error: 'unsupported_grant_type' });
    const code = form.get('code') ?? '';
    const grant = this.codes.get(code);
    this.codes.delete(code);
    const verifier = form.get('code_verifier') ?? '';
    const valid = grant !== undefined && grant.expiresAt > Date.now() && grant.clientId === form.get('client_id')
      && grant.redirectUri === form.get('redirect_uri') && PKCE_VERIFIER.test(verifier) && s256(verifier) === grant.codeChallenge;
    if (!valid) return sendJson(res, 400, { error: 'invalid_grant', error_description: 'unknown, used or expired code, or another client, redirect URI or PKCE verifier' });
    return sendJson(res, 200, await this.tokensFor(grant));
  }

  /**
   * GET, RP-initiated logout. The dev issuer keeps no session of its own, so there is nothing to end here: the
   * browser goes back to `post_logout_redirect_uri` when it belongs to the client the hint (or `client_id`) names.
   */
  async endSession(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const params = new URLSearchParams(queryOf(req));
    const back = params.get('post_logout_redirect_uri');
    if (back === null) return sendPage(res, 200, 'Signed out', '<p>You are signed out.</p>');
    const client = this.clients.get((await this.hintedClient(params.get('id_token_hint'))) ?? params.get('client_id') ?? '');
    const origin = URL.canParse(back) ? new URL(back).origin : undefined;
    if (client === undefined || !client.redirectUris.some((uri) => new URL(uri).origin === origin)) {
      return sendPage(res, 400, 'Sign-out refused', '<p>The page to return to does not belong to a registered client.</p>');
    }
    const target = new URL(back);
    const state = params.get('state');
    if (state !== null) target.searchParams.set('state', state);
    res.writeHead(302, { location: target.href, 'cache-control': 'no-store' }).end();
  }

  private pickUser(res: ServerResponse, params: AuthorizationParams): void {
    const hidden = AUTHORIZATION_PARAMS.map((name) => `<input type="hidden" name="${name}" value="${escapeHtml(params[name])}">`).join('\n');
    const buttons = Object.keys(this.s.users).map((name) => `<button type="submit" name="user" value="${escapeHtml(name)}">${escapeHtml(name)}</button>`);
    const body = `<p>Development issuer ${escapeHtml(this.s.issuer)}: choose who you are. There are no passwords here.</p>\n`
      + `<form method="post">\n${hidden}\n${buttons.join('\n')}\n</form>\n`;
    // The form posts here, and the answer redirects to the client: CSP form-action covers that redirect too.
    sendPage(res, 200, 'Sign in', body, `form-action 'self' ${new URL(params.redirect_uri).origin}`);
  }

  private async tokensFor(grant: Grant): Promise<Record<string, unknown>> {
    const client = this.clients.get(grant.clientId) as DevClient;
    const claims = { sub: grant.user, ...this.s.users[grant.user] };
    const idToken = await this.s.sign({ ...claims, ...(grant.nonce === undefined ? {} : { nonce: grant.nonce }) }, { audience: client.clientId, typ: 'JWT' });
    const accessToken = await this.s.sign({ ...claims, client_id: client.clientId, scope: grant.scope }, { audience: client.audience, typ: 'at+jwt' });
    return { access_token: accessToken, token_type: 'Bearer', expires_in: this.s.ttlSeconds, id_token: idToken, scope: grant.scope };
  }

  /** The `aud` of an ID token this issuer signed (expired or not: a hint, not a credential). */
  private async hintedClient(hint: string | null): Promise<string | undefined> {
    if (hint === null) return undefined;
    try {
      const { payload } = await compactVerify(hint, this.s.publicKey);
      const aud = (JSON.parse(new TextDecoder().decode(payload)) as JWTPayload).aud;
      return typeof aud === 'string' ? aud : undefined;
    } catch {
      return undefined;
    }
  }

  private pruneCodes(): void {
    const now = Date.now();
    for (const [code, grant] of this.codes) if (grant.expiresAt <= now) this.codes.delete(code);
  }
}

/** What is wrong with an authorization request from a registered client, as an OAuth error and its description. */
function authorizationRefusal(params: AuthorizationParams): [string, string] | undefined {
  if (params.response_type !== 'code') return ['unsupported_response_type', 'only the authorization code flow'];
  if (params.code_challenge_method !== 'S256' || !PKCE_CHALLENGE.test(params.code_challenge)) return ['invalid_request', 'PKCE with S256 is required'];
  if (!params.scope.split(' ').includes('openid')) return ['invalid_scope', 'the openid scope is required'];
  return undefined;
}

function redirectBack(res: ServerResponse, params: AuthorizationParams, answer: Record<string, string>, issuer: string): void {
  const target = new URL(params.redirect_uri);
  for (const [name, value] of Object.entries(answer)) target.searchParams.set(name, value);
  if (params.state !== '') target.searchParams.set('state', params.state);
  // RFC 9207: the client can tell which issuer answered.
  target.searchParams.set('iss', issuer);
  res.writeHead(302, { location: target.href, 'cache-control': 'no-store' }).end();
}

function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

function queryOf(req: IncomingMessage): string {
  const url = req.url ?? '';
  const at = url.indexOf('?');
  return at < 0 ? '' : url.slice(at + 1);
}

async function readForm(req: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > MAX_FORM_BYTES) throw new Error('form too large');
  }
  return body;
}

const PAGE_HEADERS: Readonly<OutgoingHttpHeaders> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

/** A small page without scripts or styles: CSP `default-src 'none'`, plus `extraCsp` (where its form may post). */
function sendPage(res: ServerResponse, status: number, title: string, content: string, extraCsp = ''): void {
  const body = `<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>\n`
    + `<body>\n<h1>${escapeHtml(title)}</h1>\n${content}</body>\n</html>\n`;
  const csp = `default-src 'none'; base-uri 'none'; frame-ancestors 'none'${extraCsp === '' ? '' : `; ${extraCsp}`}`;
  res.writeHead(status, { ...PAGE_HEADERS, 'content-security-policy': csp }).end(body);
}

function sendJson(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}
