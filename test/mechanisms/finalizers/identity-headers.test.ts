import type { OutgoingHttpHeaders } from 'node:http';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdentityConfig, IdentityField } from '../../../src/config/types.js';
import { compileIdentityHeaders, headerSafeValue } from '../../../src/mechanisms/finalizers/identity-headers.js';
import { startRecordingUpstream, type RecordingUpstream } from '../../helpers/upstream.js';
import { identity } from '../../helpers/identity.js';

/** A request over a connection without a client certificate. */
const NO_TLS = { peerCertificate: () => undefined };

function config(headers: Record<string, IdentityField>, listSeparator = ','): IdentityConfig {
  return {
    headers: Object.entries(headers).map(([name, field]) => ({ name, field })),
    listSeparator,
    strip: [],
    forwardToken: false,
    assertion: undefined,
  };
}

const alice = identity({
  subject: 'alice',
  email: 'alice@example.com',
  roles: ['admin', 'user'],
  permissions: ['read', 'write'],
  scopes: ['openid', 'api'],
  clientId: 'web-app',
  claims: {
    tenant: 't-42',
    level: 3,
    email_verified: true,
    groups: ['eng', 7, false, { nested: 1 }],
    org: { name: 'acme' },
    realm_access: { roles: ['realm-admin'] },
    'https://example.com/roles': ['ns-admin'],
    empty_list: [],
    nothing: null,
  },
});

describe('compileIdentityHeaders', () => {
  it.each<[string, IdentityField, string | undefined]>([
    ['subject', { kind: 'subject' }, 'alice'],
    ['email', { kind: 'email' }, 'alice@example.com'],
    ['roles joined', { kind: 'roles' }, 'admin,user'],
    ['permissions joined', { kind: 'permissions' }, 'read,write'],
    ['scopes joined', { kind: 'scopes' }, 'openid,api'],
    ['issuer is the iss URL', { kind: 'issuer' }, 'https://idp.example.com/'],
    ['issuer_name is the configured name', { kind: 'issuer_name' }, 'test'],
    ['client_id', { kind: 'client_id' }, 'web-app'],
    ['claim string', { kind: 'claim', path: 'tenant' }, 't-42'],
    ['claim number', { kind: 'claim', path: 'level' }, '3'],
    ['claim boolean', { kind: 'claim', path: 'email_verified' }, 'true'],
    ['claim array keeps scalars', { kind: 'claim', path: 'groups' }, 'eng,7,false'],
    ['claim nested path', { kind: 'claim', path: 'realm_access.roles' }, 'realm-admin'],
    ['claim URL-shaped name', { kind: 'claim', path: 'https://example.com/roles' }, 'ns-admin'],
    ['claim object is omitted', { kind: 'claim', path: 'org' }, undefined],
    ['claim empty array is omitted', { kind: 'claim', path: 'empty_list' }, undefined],
    ['claim null is omitted', { kind: 'claim', path: 'nothing' }, undefined],
    ['claim missing is omitted', { kind: 'claim', path: 'missing' }, undefined],
  ])('%s', (_name, field, expected) => {
    const into: OutgoingHttpHeaders = {};
    compileIdentityHeaders(config({ 'X-Value': field })).write(alice, into, NO_TLS);
    expect(into['x-value']).toBe(expected);
    expect(Object.keys(into)).toEqual(expected === undefined ? [] : ['x-value']);
  });

  it('a list item containing the separator sets nothing and refuses', () => {
    const into: OutgoingHttpHeaders = {};
    const writer = compileIdentityHeaders(config({ 'X-User-Id': { kind: 'subject' }, 'X-User-Roles': { kind: 'roles' } }));
    const verdict = writer.write(identity({ roles: ['admin,ops', 'user'] }), into, NO_TLS);
    expect(verdict).toMatchObject({ ok: false, stage: 'inject', reason: 'identity_list_separator', error: { status: 403, code: 'forbidden' } });
    expect(into['x-user-roles']).toBeUndefined();
  });

  it('a separator in an array claim refuses too; in a single value it is only a character', () => {
    const writer = compileIdentityHeaders(config({ 'X-Groups': { kind: 'claim', path: 'groups' }, 'X-User-Id': { kind: 'subject' } }, '|'));
    expect(writer.write(identity({ claims: { groups: ['a|b'] } }), {}, NO_TLS)).toMatchObject({ ok: false, reason: 'identity_list_separator' });
    const into: OutgoingHttpHeaders = {};
    expect(writer.write(identity({ subject: 'a|b', claims: { groups: ['a', 'b'] } }), into, NO_TLS)).toMatchObject({ ok: true });
    expect(into).toEqual({ 'x-groups': 'a|b', 'x-user-id': 'a|b' });
  });

  it('uses the configured list separator', () => {
    const into: OutgoingHttpHeaders = {};
    compileIdentityHeaders(config({ 'X-User-Roles': { kind: 'roles' } }, '; ')).write(alice, into, NO_TLS);
    expect(into).toEqual({ 'x-user-roles': 'admin; user' });
  });

  it('sets nothing for absent or empty identity fields', () => {
    const anonymousish = identity({ subject: undefined, email: '', roles: [], clientId: undefined });
    const into: OutgoingHttpHeaders = {};
    compileIdentityHeaders(
      config({ 'X-User-Id': { kind: 'subject' }, 'X-User-Email': { kind: 'email' }, 'X-User-Roles': { kind: 'roles' }, 'X-Client': { kind: 'client_id' } }),
    ).write(anonymousish, into, NO_TLS);
    expect(into).toEqual({});
  });

  it('overwrites whatever the header object already held under that name', () => {
    const into: OutgoingHttpHeaders = { 'x-user-id': 'mallory', other: 'kept' };
    compileIdentityHeaders(config({ 'X-User-Id': { kind: 'subject' } })).write(alice, into, NO_TLS);
    expect(into).toEqual({ 'x-user-id': 'alice', other: 'kept' });
  });

  it('gives an identity seen again the same headers, and the same refusal', () => {
    const writer = compileIdentityHeaders(config({ 'X-User-Id': { kind: 'subject' }, 'X-User-Roles': { kind: 'roles' } }));
    for (let round = 0; round < 2; round++) {
      const into: OutgoingHttpHeaders = { other: 'kept' };
      expect(writer.write(alice, into, NO_TLS)).toMatchObject({ ok: true });
      expect(into).toEqual({ other: 'kept', 'x-user-id': 'alice', 'x-user-roles': 'admin,user' });
    }
    const listy = identity({ roles: ['admin,ops'] });
    for (let round = 0; round < 2; round++) {
      const into: OutgoingHttpHeaders = {};
      expect(writer.write(listy, into, NO_TLS)).toMatchObject({ ok: false, reason: 'identity_list_separator' });
      expect(into).toEqual({});
    }
  });

  it('reads a certificate field from each request, not once per identity', () => {
    const writer = compileIdentityHeaders(config({ 'X-User-Id': { kind: 'subject' }, 'X-Cert': { kind: 'client_cert_subject' } }));
    const certificate = (subject: string) => ({ peerCertificate: () => ({ subject, fingerprint: 'AB:CD' }) });
    for (const subject of ['CN=one', 'CN=two']) {
      const into: OutgoingHttpHeaders = {};
      writer.write(alice, into, certificate(subject));
      expect(into).toEqual({ 'x-user-id': 'alice', 'x-cert': subject });
    }
  });

  it('percent-encodes values from the token that are not plain header text', () => {
    const who = identity({ subject: 'jürgen\r\nX-Injected: 1', claims: { name: 'Zoë 100%' } });
    const into: OutgoingHttpHeaders = {};
    compileIdentityHeaders(config({ 'X-User-Id': { kind: 'subject' }, 'X-Name': { kind: 'claim', path: 'name' } })).write(who, into, NO_TLS);
    expect(into).toEqual({ 'x-user-id': 'j%C3%BCrgen%0D%0AX-Injected: 1', 'x-name': 'Zo%C3%AB 100%25' });
  });
});

describe('headerSafeValue', () => {
  it.each<[string, string, string]>([
    ['plain ASCII unchanged', 'alice@example.com', 'alice@example.com'],
    ['space kept', 'a b', 'a b'],
    ['% alone is left as is when nothing needs encoding', '100%', '100%'],
    ['every visible ASCII character unchanged', '!"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~', '!"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~'],
    ['UTF-8 two bytes', 'é', '%C3%A9'],
    ['UTF-8 four bytes', '🔑', '%F0%9F%94%91'],
    ['CR LF', 'a\r\nb', 'a%0D%0Ab'],
    ['NUL', 'a\u0000b', 'a%00b'],
    ['tab', 'a\tb', 'a%09b'],
    ['DEL', 'a\u007fb', 'a%7Fb'],
    ['% encoded once encoding is needed', '50% é', '50%25 %C3%A9'],
    ['lone surrogate becomes U+FFFD', 'a\ud800', 'a%EF%BF%BD'],
  ])('%s', (_name, input, expected) => {
    expect(headerSafeValue(input)).toBe(expected);
  });

  it.each(['jürgen', '50% é', 'a\r\nb', '日本語 テスト', 'x\u0000%00'])('round-trips %j through decodeURIComponent', (input) => {
    expect(decodeURIComponent(headerSafeValue(input))).toBe(input);
  });
});

describe('identity headers over real HTTP', () => {
  let upstream: RecordingUpstream;
  beforeAll(async () => {
    upstream = await startRecordingUpstream();
  });
  afterAll(async () => {
    await upstream.close();
  });

  it('Node accepts every written value and the upstream receives exactly one of each', async () => {
    const hostile = identity({
      subject: 'ünïcödé\r\nX-Injected: yes\u0000',
      roles: ['admin', 'rôle'],
      claims: { tenant: 'line1\nline2' },
    });
    const headers: OutgoingHttpHeaders = {};
    compileIdentityHeaders(
      config({ 'X-User-Id': { kind: 'subject' }, 'X-User-Roles': { kind: 'roles' }, 'X-Tenant': { kind: 'claim', path: 'tenant' } }),
    ).write(hostile, headers, NO_TLS);
    await new Promise<void>((resolve, reject) => {
      const req = request(`${upstream.url}/check`, { headers }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    const seen = upstream.seen[0];
    expect(seen?.headers['x-user-id']).toBe('%C3%BCn%C3%AFc%C3%B6d%C3%A9%0D%0AX-Injected: yes%00');
    expect(seen?.headers['x-user-roles']).toBe('admin,r%C3%B4le');
    expect(seen?.headers['x-tenant']).toBe('line1%0Aline2');
    expect(seen?.headers['x-injected']).toBeUndefined();
  });
});
