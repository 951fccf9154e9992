import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startIdp, type Idp } from '../helpers/idp.js';
import { withPadding, withSpareBits } from '../helpers/tokens.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import {
  bearer,
  expectNoTokenText,
  expectRefused,
  invalidRequest,
  invalidToken,
  noCredentials,
  refuses,
  tokenCookie,
  upgrade,
} from './auth-fixture.js';

/**
 * Authentication through a running gateway, the allowed side and revocation: identity headers exactly as
 * configured, the token kept from the upstream, `auth: optional`, per-route issuers, query tokens on WebSocket
 * upgrades only, and tokens revoked by logout and by the admin API (SPEC §3–§5, §8).
 */

const ADMIN_TOKEN = 'auth-suite-admin-token-0123456789';

/** A list value holding the list separator: joined, it would read as more values than the token holds. */
const identityNotExpressible = {
  status: 403,
  error: 'forbidden',
  description: 'The identity cannot be passed to the upstream',
  wwwAuthenticate: undefined,
  reason: 'identity_list_separator',
};

let main: Idp;
let partner: Idp;
let upstream: RecordingUpstream;
let gw: TestGateway;

function gatewayYaml(): string {
  return `
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s }  # a proxied WebSocket the test upstream keeps half-open holds close() for the grace
admin: { listen: 127.0.0.1:0, token: \${ADMIN_TOKEN} }
logging: { level: info, access_log: true }
tokens:
  - header: Authorization
  - cookie: access_token
  - query: access_token
issuers:
  main:
    issuer: ${main.issuer}
    jwks_uri: ${main.jwksUri}
    audiences: [${main.audience}]
  partner:
    issuer: ${partner.issuer}
    jwks_uri: ${partner.jwksUri}
    audiences: [${partner.audience}]
upstreams:
  api: { url: ${upstream.url}, timeout: 2s }
identity:
  headers:
    X-User-Id: subject
    X-User-Email: email
    X-User-Roles: roles
    X-User-Scopes: scopes
    X-User-Name: claims.name
    X-User-Tenant: claims.org.tenant
    X-Auth-Issuer: issuer
  list_separator: "|"
  strip: ["X-User-*", "X-Auth-*"]
  forward_token: false
routes:
  - name: optional-admin
    match: { path: /optional/admin/** }
    upstream: api
    auth: optional
    require: { roles: [admin] }
  - name: optional
    match: { path: /optional/** }
    upstream: api
    auth: optional
  - name: partner-only
    match: { path: /partner/** }
    upstream: api
    issuers: [partner]
  - name: api
    match: { path: /** }
    upstream: api
`;
}

beforeAll(async () => {
  [main, partner] = await Promise.all([startIdp({ keys: ['rsa'] }), startIdp({ keys: ['rsa'] })]);
  upstream = await startRecordingUpstream();
  gw = await startTestGateway(gatewayYaml(), { ADMIN_TOKEN });
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([upstream?.close(), main?.close(), partner?.close()]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

async function tokenCacheHits(): Promise<number> {
  const { values } = await gw.metrics.tokenCache.get();
  return values.find((value) => value.labels.result === 'hit')?.value ?? 0;
}

const IDENTITY_HEADER = /^x-(user|auth)-/;

/** The identity headers the upstream received, each name with every value it got (so a duplicate shows). */
function identityHeadersSeen(index = 0): Record<string, string[]> {
  const raw = upstream.seen[index]?.rawHeaders ?? [];
  const seen: Record<string, string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (IDENTITY_HEADER.test(name.replaceAll('_', '-'))) (seen[name] ??= []).push(raw[i + 1] as string);
  }
  return seen;
}

async function expectForwarded(request: Parameters<typeof rawRequest>[1]): Promise<void> {
  const res = await rawRequest(gw.port, request);
  expect(res.status).toBe(200);
  expect(upstream.seen).toHaveLength(1);
}

describe('identity headers', () => {
  it('are exactly the configured ones, one value each, lists joined by the separator, non-ASCII percent-encoded', async () => {
    const token = main.sign({
      sub: 'user-42',
      email: 'ada@example.com',
      roles: ['admin', 'ops'],
      scope: 'read  write',
      name: 'Zoë Ünïcode',
      org: { tenant: 'acme' },
    });
    await expectForwarded({
      target: '/api/me',
      headers: [
        bearer(token),
        ['X-User-Id', 'spoofed'],
        ['X_User_Roles', 'root'],
        ['x-auth-issuer', 'https://evil.example'],
        ['X-User-Extra', 'spoofed'],
      ],
    });
    expect(identityHeadersSeen()).toEqual({
      'x-user-id': ['user-42'],
      'x-user-email': ['ada@example.com'],
      'x-user-roles': ['admin|ops'],
      'x-user-scopes': ['read|write'],
      'x-user-name': ['Zo%C3%AB %C3%9Cn%C3%AFcode'],
      'x-user-tenant': ['acme'],
      'x-auth-issuer': [main.issuer],
    });
    expect(decodeURIComponent(upstream.seen[0]?.headers['x-user-name'] as string)).toBe('Zoë Ünïcode');
    expectNoTokenText(gw.logs.join('\n'), token);
  });

  it('carry a claim with CR/LF, NUL or a literal % as one encoded value: no header injection', async () => {
    await expectForwarded({ target: '/api/me', headers: [bearer(main.sign({ name: 'a\r\nX-User-Id: admin\u0000 100%' }))] });
    expect(identityHeadersSeen()['x-user-name']).toEqual(['a%0D%0AX-User-Id: admin%00 100%25']);
    expect(identityHeadersSeen()['x-user-id']).toEqual(['user-1']);
  });

  it('a role containing the separator is refused 403 with reason identity_list_separator; the upstream sees nothing', async () => {
    const token = main.sign({ sub: 'user-43', roles: ['admin|ops', 'user'] });
    await refuses(gw, upstream, { target: '/api/me', headers: [bearer(token)] }, identityNotExpressible);
  });

  it('are left out when the token has no value for them', async () => {
    await expectForwarded({ target: '/api/me', headers: [bearer(main.sign({ sub: 'bare', roles: [] }))] });
    expect(identityHeadersSeen()).toEqual({ 'x-user-id': ['bare'], 'x-auth-issuer': [main.issuer] });
  });
});

describe('forward_token: false', () => {
  it('strips Authorization from what the upstream gets', async () => {
    await expectForwarded({ target: '/api/x', headers: [bearer(main.sign())] });
    expect(upstream.seen[0]?.headers.authorization).toBeUndefined();
  });

  it.each([
    ['between other cookies', (t: string) => `theme=dark; access_token=${t}; lang=en`, 'theme=dark; lang=en'],
    ['first', (t: string) => `access_token=${t};lang=en`, 'lang=en'],
    ['alone', (t: string) => `access_token=${t}`, undefined],
  ])('strips the token cookie %s and keeps the other cookies', async (_name, cookie, forwarded) => {
    const token = main.sign();
    await expectForwarded({ target: '/api/x', headers: [['Cookie', cookie(token)]] });
    expect(upstream.seen[0]?.headers.cookie).toBe(forwarded);
    expect(identityHeadersSeen()['x-user-id']).toEqual(['user-1']);
  });
});

describe('auth: optional', () => {
  it('forwards an anonymous request without identity headers (spoofed ones stripped)', async () => {
    await expectForwarded({ target: '/optional/page', headers: [['X-User-Id', 'spoofed'], ['X-User-Roles', 'admin']] });
    expect(identityHeadersSeen()).toEqual({});
  });

  it('forwards a request with a valid token with its identity headers', async () => {
    await expectForwarded({ target: '/optional/page', headers: [bearer(main.sign({ sub: 'opt-user' }))] });
    expect(identityHeadersSeen()['x-user-id']).toEqual(['opt-user']);
  });

  it('still refuses an invalid token with 401', async () => {
    const expired = main.sign({ exp: Math.floor(Date.now() / 1000) - 3600, iat: Math.floor(Date.now() / 1000) - 7200 });
    await refuses(gw, upstream, { target: '/optional/page', headers: [bearer(expired)] }, invalidToken('expired', 'expired'), [expired]);
  });

  it('still refuses two tokens with 400', async () => {
    const token = main.sign();
    await refuses(gw, upstream, { target: '/optional/page', headers: [bearer(token), tokenCookie(token)] }, invalidRequest('multiple_token_sources'), [token]);
  });

  it('refuses an anonymous request where the route has rules (401, no error code)', async () => {
    await refuses(gw, upstream, { target: '/optional/admin/x' }, noCredentials);
  });
});

describe('route issuers', () => {
  it('a route restricted to partner accepts partner tokens', async () => {
    await expectForwarded({ target: '/partner/x', headers: [bearer(partner.sign({ sub: 'p-user' }))] });
    expect(identityHeadersSeen()).toMatchObject({ 'x-user-id': ['p-user'], 'x-auth-issuer': [partner.issuer] });
  });

  it('and refuses a valid token of another configured issuer', async () => {
    const token = main.sign();
    await refuses(gw, upstream, { target: '/partner/x', headers: [bearer(token)] }, invalidToken('issuer', 'issuer_not_allowed'), [token]);
  });

  it('and refuses it too once it sits in the verified-token cache from a route that accepts it', async () => {
    const token = main.sign();
    await expectForwarded({ target: '/api/x', headers: [bearer(token)] });
    upstream.seen.length = 0;
    const hitsBefore = await tokenCacheHits();
    await refuses(gw, upstream, { target: '/partner/x', headers: [bearer(token)] }, invalidToken('issuer', 'issuer_not_allowed'), [token]);
    // The refusal came from the cached identity, not from a fresh verification.
    expect(await tokenCacheHits()).toBe(hitsBefore + 1);
  });
});

describe('query tokens', () => {
  it('are accepted on a WebSocket upgrade and removed from the forwarded target', async () => {
    const token = main.sign({ sub: 'ws-user' });
    const result = await upgrade(gw.port, `/ws/chat?room=1&access_token=${token}&x=2`);
    expect(result).toEqual({ upgraded: true, status: 101, echo: 'ping-bytes' });
    expect(upstream.seen.map((seen) => [seen.upgrade, seen.url])).toEqual([[true, '/ws/chat?room=1&x=2']]);
    expect(identityHeadersSeen()['x-user-id']).toEqual(['ws-user']);
    expectNoTokenText(gw.logs.join('\n'), token);
  });

  it('are refused on the same request without the upgrade (400)', async () => {
    const token = main.sign();
    await refuses(gw, upstream, { target: `/ws/chat?access_token=${token}` }, invalidRequest('query_token_not_upgrade'), [token]);
  });

  it.each([
    ['a POST', 'POST', [['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='], ['Sec-WebSocket-Version', '13']]],
    ['a GET without Sec-WebSocket-Key', 'GET', [['Sec-WebSocket-Version', '13']]],
  ] as Array<[string, string, Array<[string, string]>]>)(
    'are refused on %s that only claims to upgrade (400), so the claim cannot unlock query tokens',
    async (_name, method, handshake) => {
      const token = main.sign();
      const res = await rawRequest(gw.port, {
        method,
        target: `/ws/chat?access_token=${token}`,
        headers: [['Upgrade', 'websocket'], ['Connection', 'Upgrade'], ...handshake],
      });
      await expectRefused(gw, upstream, res, { status: 400, error: 'invalid_request', description: 'Only WebSocket handshakes can upgrade', wwwAuthenticate: undefined, reason: 'not_websocket' }, [token]);
    },
  );

  it('an upgrade with an expired query token gets 401 and no upgrade', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = main.sign({ iat: now - 7200, exp: now - 3600 });
    const result = await upgrade(gw.port, `/ws/chat?access_token=${token}`);
    expect(result.upgraded).toBe(false);
    if (!result.upgraded) await expectRefused(gw, upstream, result.response, invalidToken('expired', 'expired'), [token]);
  });

  it('an upgrade without any token gets 401 without an error code', async () => {
    const result = await upgrade(gw.port, '/ws/chat');
    expect(result.upgraded).toBe(false);
    if (!result.upgraded) await expectRefused(gw, upstream, result.response, noCredentials);
  });
});

/** POST /revocations on the admin listener, as an operator would. */
async function adminRevoke(body: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${gw.adminUrl}/revocations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(201);
}

async function status(token: string, path = '/api/x'): Promise<number> {
  return (await rawRequest(gw.port, { target: path, headers: [bearer(token)] })).status;
}

const revoked = invalidToken('revoked', 'revoked');

/** Non-canonical spellings of the same signed bytes (jose accepts them): each must be refused too. */
function nonCanonicalVariants(token: string): string[] {
  const variants = [withPadding(token, 2)];
  for (const index of [0, 1, 2] as const) {
    const variant = withSpareBits(token, index);
    if (variant !== undefined) variants.push(variant);
  }
  return variants;
}

describe('revocation through the gateway', () => {
  it('logs who knocked on the revocation API without a valid admin token, never what they sent', async () => {
    const guess = 'not-the-admin-token-0123456789';
    const res = await fetch(`${gw.adminUrl}/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${guess}`, 'content-type': 'application/json' },
      body: JSON.stringify({ subject: 'alice' }),
    });
    expect(res.status).toBe(401);
    const line = await vi.waitFor(() => {
      const found = gw.logs.map((text) => JSON.parse(text) as Record<string, unknown>).find((entry) => String(entry.msg).startsWith('admin: revocation API'));
      if (found === undefined) throw new Error('no log line yet');
      return found;
    });
    expect(line).toMatchObject({ peer: '127.0.0.1', method: 'POST' });
    expect(gw.logs.join('\n')).not.toContain(guess);
  });

  it('POST /_authgate/logout revokes the presented token, which is refused from then on (even once cached)', async () => {
    const token = main.sign({ sub: 'leaving' });
    const sibling = main.sign({ sub: 'leaving' });
    expect(await status(token)).toBe(200);
    const logout = await rawRequest(gw.port, { method: 'POST', target: '/_authgate/logout', headers: [bearer(token)] });
    expect(logout.status).toBe(204);
    upstream.seen.length = 0;
    await refuses(gw, upstream, { target: '/api/x', headers: [bearer(token)] }, revoked, [token]);
    await refuses(gw, upstream, { target: '/api/x', headers: [tokenCookie(token)] }, revoked, [token]);
    // The logout took this token's jti only: the same user's other session goes on.
    expect(await status(sibling)).toBe(200);
    upstream.seen.length = 0;
    await refuses(gw, upstream, { method: 'POST', target: '/_authgate/logout', headers: [bearer(token)] }, revoked, [token]);
  });

  it('logout of a token with neither jti nor subject is refused: there is nothing to revoke it by', async () => {
    const token = main.sign({ sub: undefined, jti: undefined });
    await refuses(gw, upstream, { method: 'POST', target: '/_authgate/logout', headers: [bearer(token)] }, invalidToken('claims', 'logout_unidentifiable'), [token]);
  });

  it('a logged-out token resent in a non-canonical encoding is refused too', async () => {
    const token = main.sign({ sub: 'leaving-2' });
    expect((await rawRequest(gw.port, { method: 'POST', target: '/_authgate/logout', headers: [bearer(token)] })).status).toBe(204);
    upstream.seen.length = 0;
    for (const variant of nonCanonicalVariants(token)) {
      const res = await rawRequest(gw.port, { target: '/api/x', headers: [tokenCookie(variant)] });
      expect(res.status).toBe(401);
      expect(upstream.seen).toEqual([]);
    }
  });

  it('logout of a token without jti revokes its subject up to its iat: older tokens refused, newer pass', async () => {
    const now = Math.floor(Date.now() / 1000);
    const older = main.sign({ sub: 'no-jti', jti: undefined, iat: now - 20 });
    const token = main.sign({ sub: 'no-jti', jti: undefined, iat: now - 10 });
    const newer = main.sign({ sub: 'no-jti', jti: undefined, iat: now });
    expect((await rawRequest(gw.port, { method: 'POST', target: '/_authgate/logout', headers: [bearer(token)] })).status).toBe(204);
    for (const refusedToken of [token, older]) {
      await refuses(gw, upstream, { target: '/api/x', headers: [bearer(refusedToken)] }, revoked, [refusedToken]);
    }
    expect(await status(newer)).toBe(200);
  });

  it('an admin-API jti revocation refuses that token of that issuer, in any encoding; the same jti of another issuer passes', async () => {
    const jti = 'admin-revoked-jti';
    const token = main.sign({ jti });
    const partnerToken = partner.sign({ jti });
    expect(await status(token)).toBe(200);
    await adminRevoke({ jti, exp: Math.floor(Date.now() / 1000) + 600, issuer: 'main' });
    upstream.seen.length = 0;
    await refuses(gw, upstream, { target: '/api/x', headers: [bearer(token)] }, revoked, [token]);
    for (const variant of nonCanonicalVariants(token)) {
      expect((await rawRequest(gw.port, { target: '/api/x', headers: [tokenCookie(variant)] })).status).toBe(401);
    }
    expect(upstream.seen).toEqual([]);
    expect(await status(partnerToken)).toBe(200);
    const lookup = await fetch(`${gw.adminUrl}/revocations/jti/${jti}?issuer=main`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(lookup.status).toBe(200);
  });

  it('an admin-API subject revocation "before T" refuses tokens issued at or before T; later tokens pass', async () => {
    const now = Math.floor(Date.now() / 1000);
    const before = now - 60;
    const issuedAt = (iat: number): string => main.sign({ sub: 'compromised', iat });
    const [older, atT, newer] = [issuedAt(before - 60), issuedAt(before), issuedAt(before + 30)];
    for (const token of [older, atT, newer]) expect(await status(token)).toBe(200);
    await adminRevoke({ subject: 'compromised', issuer: 'main', before });
    upstream.seen.length = 0;
    for (const token of [older, atT]) await refuses(gw, upstream, { target: '/api/x', headers: [bearer(token)] }, revoked, [token]);
    expect(await status(newer)).toBe(200);
    expect(await status(main.sign({ sub: 'bystander', iat: before - 60 }))).toBe(200);
    expect(await status(partner.sign({ sub: 'compromised', iat: before - 60 }))).toBe(200);
  });
});
