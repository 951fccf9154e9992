import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { createRevocationApi, MAX_BODY_BYTES, parseRevocationRequest } from '../../src/admin/revocations.js';
import { main } from '../../src/cli/main.js';
import { runRevoke } from '../../src/cli/revoke.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import { createStore, type Store } from '../../src/store/index.js';

const ADMIN_TOKEN = 'admin-token-with-enough-entropy-0123456789';
const FUTURE = Math.floor(Date.now() / 1000) + 3600;

interface Admin {
  readonly url: string;
  readonly store: Store;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

/** The configured issuers by name, and the `iss` each one's revocations are kept under. */
const ISSUERS = new Map([['auth0', 'https://tenant.auth0.example/'], ['okta', 'https://corp.okta.example']]);
const AUTH0 = ISSUERS.get('auth0') as string;
const OKTA = ISSUERS.get('okta') as string;

/** A real admin-style listener serving the revocation API over loopback HTTP. */
async function startAdmin(adminToken: string): Promise<Admin> {
  const store = createStore({ redis: undefined, prefix: 'api:' }, new Map(), {
    logger: createLogger('silent'),
    metrics: new Metrics(),
  });
  const api = createRevocationApi({ store, adminToken, logger: createLogger('silent'), issuers: () => ISSUERS });
  const server: Server = createServer(api);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await store.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, store };
}

async function call(admin: Admin, method: string, path: string, options: { token?: string; authorization?: string; body?: string } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const authorization = options.authorization ?? (options.token === undefined ? undefined : `Bearer ${options.token}`);
  if (authorization !== undefined) headers['authorization'] = authorization;
  const response = await request(`${admin.url}${path}`, { method: method as 'GET', headers, body: options.body });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, body: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>) };
}

function expectSpecError(response: Awaited<ReturnType<typeof call>>, status: number, error: string): void {
  expect(response.status).toBe(status);
  expect(response.body).toEqual({ error, error_description: expect.any(String), request_id: expect.any(String) });
  expect(response.headers['cache-control']).toBe('no-store');
  expect(response.headers['x-content-type-options']).toBe('nosniff');
}

describe('revocation request bodies', () => {
  it.each([
    { body: { jti: 'a', exp: FUTURE }, kind: 'jti' },
    { body: { jti: 'a', exp: FUTURE, issuer: 'auth0' }, kind: 'jti' },
    { body: { subject: 'alice' }, kind: 'subject' },
    { body: { subject: 'alice', issuer: 'auth0', before: 1_700_000_000 }, kind: 'subject' },
    { body: { jti: 'a' }, kind: undefined },
    { body: { jti: '', exp: FUTURE }, kind: undefined },
    { body: { jti: 'a', exp: '1700000000' }, kind: undefined },
    { body: { jti: 'a', exp: 1.5 }, kind: undefined },
    { body: { jti: 'a', exp: -1 }, kind: undefined },
    { body: { jti: 'a', exp: FUTURE, before: 1 }, kind: undefined },
    { body: { jti: 'a', exp: FUTURE, subject: 'alice' }, kind: undefined },
    { body: { jti: 'a', exp: FUTURE, issuer: '' }, kind: undefined },
    { body: { jti: 'a', exp: FUTURE, extra: true }, kind: undefined },
    { body: { subject: 42 }, kind: undefined },
    { body: { subject: 'alice', before: 'yesterday' }, kind: undefined },
    { body: { subject: 'x'.repeat(1025) }, kind: undefined },
    { body: {}, kind: undefined },
    { body: [], kind: undefined },
    { body: null, kind: undefined },
    { body: 'jti', kind: undefined },
  ])('$body → $kind', ({ body, kind }) => {
    expect(parseRevocationRequest(body)?.kind).toBe(kind);
  });
});

describe('revocation API', () => {
  it('refuses writes without the right admin token', async () => {
    const admin = await startAdmin(ADMIN_TOKEN);
    const body = JSON.stringify({ jti: 'a', exp: FUTURE });
    for (const authorization of [undefined, `Bearer ${ADMIN_TOKEN}x`, `Bearer ${ADMIN_TOKEN.slice(1)}`, `Basic ${ADMIN_TOKEN}`, 'Bearer', `Bearer ${ADMIN_TOKEN} x`]) {
      const response = await call(admin, 'POST', '/revocations', { body, ...(authorization === undefined ? {} : { authorization }) });
      expectSpecError(response, 401, 'unauthorized');
      expect(response.headers['www-authenticate']).toMatch(/^Bearer realm=/);
    }
    expect(admin.store.revocations.isJtiRevoked('a')).toBe(false);
  });

  it('refuses writes with 403 when no admin token is configured', async () => {
    const admin = await startAdmin('');
    const response = await call(admin, 'POST', '/revocations', { token: '', body: JSON.stringify({ jti: 'a', exp: FUTURE }) });
    expectSpecError(response, 403, 'forbidden');
    expect(admin.store.revocations.isJtiRevoked('a')).toBe(false);
  });

  it('revokes a jti with the right token, and answers lookups 200 or 404', async () => {
    const admin = await startAdmin(ADMIN_TOKEN);
    const created = await call(admin, 'POST', '/revocations', {
      authorization: `bearer  ${ADMIN_TOKEN}`,
      body: JSON.stringify({ jti: 'id/with space', exp: FUTURE, issuer: 'auth0' }),
    });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ revoked: { kind: 'jti', jti: 'id/with space', exp: FUTURE, issuer: 'auth0' } });
    expect(admin.store.revocations.isRevoked({ issuer: AUTH0, jti: 'id/with space', subject: undefined, iat: undefined })).toBe(true);

    const path = `/revocations/jti/${encodeURIComponent('id/with space')}`;
    const found = await call(admin, 'GET', path, { token: ADMIN_TOKEN });
    expect([found.status, found.body]).toEqual([200, { jti: 'id/with space', issuer: null, revoked: true }]);
    expect((await call(admin, 'GET', `${path}?issuer=auth0`, { token: ADMIN_TOKEN })).status).toBe(200);
    expectSpecError(await call(admin, 'GET', `${path}?issuer=okta`, { token: ADMIN_TOKEN }), 404, 'not_found');
    expectSpecError(await call(admin, 'GET', '/revocations/jti/other', { token: ADMIN_TOKEN }), 404, 'not_found');
    expectSpecError(await call(admin, 'GET', path), 401, 'unauthorized');
  });

  it('refuses an issuer the config does not name, saying which it does (a typo would revoke nothing)', async () => {
    const admin = await startAdmin(ADMIN_TOKEN);
    const refused = await call(admin, 'POST', '/revocations', { token: ADMIN_TOKEN, body: JSON.stringify({ subject: 'alice', issuer: 'auth' }) });
    expectSpecError(refused, 400, 'invalid_request');
    expect(refused.body?.error_description).toBe('Unknown issuer "auth", did you mean "auth0"? (the issuers are the names under issuers in the config: auth0, okta)');
    expect(admin.store.revocations.isRevoked({ issuer: 'auth', jti: undefined, subject: 'alice', iat: 0 })).toBe(false);
    expectSpecError(await call(admin, 'GET', '/revocations/jti/a?issuer=nope', { token: ADMIN_TOKEN }), 400, 'invalid_request');
  });

  it('revokes a subject up to now by default', async () => {
    const admin = await startAdmin(ADMIN_TOKEN);
    const response = await call(admin, 'POST', '/revocations', { token: ADMIN_TOKEN, body: JSON.stringify({ subject: 'alice' }) });
    expect(response.status).toBe(201);
    const before = (response.body?.['revoked'] as { before: number }).before;
    expect(Math.abs(before - Date.now() / 1000)).toBeLessThan(5);
    const alice = (iat: number) => ({ issuer: OKTA, jti: undefined, subject: 'alice', iat });
    expect([admin.store.revocations.isRevoked(alice(before)), admin.store.revocations.isRevoked(alice(before + 1))]).toEqual([true, false]);
  });

  it('answers lookups without a token when none is configured', async () => {
    const admin = await startAdmin('');
    await admin.store.revocations.revokeJti('open', FUTURE);
    expect((await call(admin, 'GET', '/revocations/jti/open')).status).toBe(200);
  });

  it.each([
    { name: 'invalid JSON', body: '{"jti": "a",', error: 'invalid_request', status: 400 },
    { name: 'a JSON string', body: '"a"', error: 'invalid_request', status: 400 },
    { name: 'both shapes at once', body: JSON.stringify({ jti: 'a', exp: FUTURE, subject: 'alice' }), error: 'invalid_request', status: 400 },
    { name: 'an empty body', body: '', error: 'invalid_request', status: 400 },
    { name: 'a body over the cap', body: JSON.stringify({ jti: 'a'.repeat(MAX_BODY_BYTES), exp: FUTURE }), error: 'payload_too_large', status: 413 },
  ])('refuses $name', async ({ body, error, status }) => {
    const admin = await startAdmin(ADMIN_TOKEN);
    expectSpecError(await call(admin, 'POST', '/revocations', { token: ADMIN_TOKEN, body }), status, error);
    expect(admin.store.revocations.isJtiRevoked('a')).toBe(false);
  });

  it('refuses a streamed body as soon as it passes the cap', async () => {
    const admin = await startAdmin(ADMIN_TOKEN);
    async function* chunks() {
      for (let sent = 0; sent <= MAX_BODY_BYTES; sent += 1024) yield Buffer.alloc(1024, 0x20);
    }
    const response = await request(`${admin.url}/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      body: Readable.from(chunks()),
    });
    expect(response.statusCode).toBe(413);
    await response.body.dump();
  });

  it.each([
    { method: 'GET', path: '/revocations', status: 405 },
    { method: 'DELETE', path: '/revocations/jti/a', status: 405 },
    { method: 'POST', path: '/revocations/jti/a', status: 405 },
    { method: 'GET', path: '/revocations/jti/', status: 404 },
    { method: 'GET', path: '/revocations/subject/alice', status: 404 },
    { method: 'GET', path: '/revocations/jti/%E0%A4%A', status: 400 },
  ])('$method $path → $status', async ({ method, path, status }) => {
    const admin = await startAdmin(ADMIN_TOKEN);
    const response = await call(admin, method, path, { token: ADMIN_TOKEN });
    expect(response.status).toBe(status);
    expect(response.body?.['request_id']).toEqual(expect.any(String));
  });
});

describe('authgate revoke', () => {
  function capture() {
    const lines = { stdout: '', stderr: '' };
    return {
      lines,
      out: {
        stdout: { write: (text: string) => (lines.stdout += text) },
        stderr: { write: (text: string) => (lines.stderr += text) },
      },
    };
  }

  it('revokes a jti and a subject through a real admin API', async () => {
    const admin = await startAdmin(ADMIN_TOKEN);
    const env = { AUTHGATE_ADMIN_TOKEN: ADMIN_TOKEN };
    const jti = capture();
    expect(await runRevoke(['--jti', 'cli-1', '--exp', String(FUTURE), '--issuer', 'auth0', '--admin', admin.url], jti.out, env)).toBe(0);
    expect(jti.lines.stdout).toMatch(/^revoked jti cli-1 \(issuer auth0\)/);
    expect(admin.store.revocations.isJtiRevoked('cli-1', AUTH0)).toBe(true);

    const subject = capture();
    expect(await runRevoke(['--subject', 'bob', '--before', '1700000000', '--admin', `${admin.url}/`], subject.out, env)).toBe(0);
    const bob = (iat: number) => ({ issuer: OKTA, jti: undefined, subject: 'bob', iat });
    expect([admin.store.revocations.isRevoked(bob(1_700_000_000)), admin.store.revocations.isRevoked(bob(1_700_000_001))]).toEqual([true, false]);
  });

  it('fails with 1 and the reason given by the API when the token is wrong', async () => {
    const admin = await startAdmin(ADMIN_TOKEN);
    const { lines, out } = capture();
    const code = await runRevoke(['--subject', 'bob', '--admin', admin.url], out, { AUTHGATE_ADMIN_TOKEN: 'wrong' });
    expect(code).toBe(1);
    expect(lines.stderr).toContain('answered 401: A valid admin token is required');
    expect(admin.store.revocations.isRevoked({ issuer: OKTA, jti: undefined, subject: 'bob', iat: undefined })).toBe(false);
  });

  it('fails with 1 when the admin API cannot be reached', async () => {
    const admin = await startAdmin(ADMIN_TOKEN);
    const url = admin.url;
    await cleanups.splice(0)[0]?.();
    const { lines, out } = capture();
    expect(await runRevoke(['--subject', 'bob', '--admin', url], out, { AUTHGATE_ADMIN_TOKEN: ADMIN_TOKEN })).toBe(1);
    expect(lines.stderr).toContain('cannot reach the admin API');
  });

  it.each([
    { argv: [], reason: 'give --jti' },
    { argv: ['--jti', 'a'], reason: '--jti needs --exp' },
    { argv: ['--jti', 'a', '--exp', 'tomorrow'], reason: '--exp must be a UNIX time' },
    { argv: ['--jti', 'a', '--exp', '-5'], reason: 'argument' },
    { argv: ['--jti', 'a', '--exp', '1', '--subject', 'b'], reason: '--jti takes --exp' },
    { argv: ['--subject', 'b', '--exp', '1'], reason: '--subject takes --before' },
    { argv: ['--subject', 'b', '--before', '1.5'], reason: '--before must be a UNIX time' },
    { argv: ['--subject', ''], reason: '--subject must not be empty' },
    { argv: ['--subject', 'b', '--admin', 'ftp://host'], reason: 'http(s) URL' },
    { argv: ['--subject', 'b', '--admin', 'not a url'], reason: '--admin must be a URL' },
    { argv: ['--subject', 'b', '--verbose'], reason: 'Unknown option' },
    { argv: ['--subject', 'b', 'extra'], reason: 'positional' },
  ])('exits 2 for $argv', async ({ argv, reason }) => {
    const { lines, out } = capture();
    expect(await main(['revoke', ...argv], out, { AUTHGATE_ADMIN_TOKEN: ADMIN_TOKEN })).toBe(2);
    expect(lines.stderr).toContain(reason);
    expect(lines.stderr).toContain('usage: authgate revoke --jti ID');
  });

  it('exits 2 when AUTHGATE_ADMIN_TOKEN is not set', async () => {
    const { lines, out } = capture();
    expect(await main(['revoke', '--subject', 'b'], out, {})).toBe(2);
    expect(lines.stderr).toContain('AUTHGATE_ADMIN_TOKEN');
  });
});
