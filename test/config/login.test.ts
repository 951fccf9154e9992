import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LineCounter, parseDocument } from 'yaml';
import { applyReferences, maskReferences } from '../../src/config/interpolate.js';
import { readIssuers } from '../../src/config/issuers.js';
import { readLogin, type LoginConfig } from '../../src/config/login.js';
import { formatProblem, ProblemSink } from '../../src/config/problems.js';
import { Reader } from '../../src/config/reader.js';

const ISSUERS = `issuers:
  corp:
    issuer: https://login.example.com
    discovery: true
    audiences: [authgate]
  static:
    issuer: https://static.example.com
    jwks_uri: https://static.example.com/jwks.json
    audiences: [authgate]
`;

const KEY = 'k'.repeat(32);

/** Reads `issuers:` and `login:` of a YAML snippet as the loader would; the login section is not wired in yet. */
function read(yaml: string, options: { workers?: number | 'auto'; redis?: boolean; env?: NodeJS.ProcessEnv } = {}): { login: LoginConfig | undefined; problems: string[]; warnings: string[] } {
  const lineCounter = new LineCounter();
  const sink = new ProblemSink('gateway.yaml', lineCounter);
  const masked = maskReferences(yaml);
  const doc = parseDocument(masked.text, { lineCounter, uniqueKeys: false });
  const r = new Reader(doc, sink, applyReferences(doc, masked, options.env ?? {}, sink), yaml);
  const root = r.section(r.root(), ['issuers', 'login']);
  const issuers = readIssuers(r, root.slot('issuers'), '/etc/authgate');
  const login = readLogin(r, root.slot('login'), {
    issuers: issuers.values, issuerNames: issuers.names, workers: options.workers ?? 1, redis: options.redis ?? false, baseDir: '/etc/authgate',
  });
  return { login, problems: sink.problems.map(formatProblem), warnings: sink.warnings.map(formatProblem) };
}

const MINIMAL = `${ISSUERS}login:
  external_url: https://app.example.com
  providers:
    corp:
      issuer: corp
      client_id: authgate
`;

describe('login config', () => {
  it('reads a minimal section with the documented defaults', () => {
    const { login, problems } = read(MINIMAL);
    expect(problems).toEqual([]);
    expect(login?.externalUrl.origin).toBe('https://app.example.com');
    expect(login?.cookie).toEqual({ name: '__Host-authgate', sameSite: 'lax', secure: true });
    expect(login?.session).toEqual({ idleTimeoutMs: 1_800_000, absoluteTimeoutMs: 43_200_000, refreshBeforeMs: 60_000 });
    expect(login?.keys).toEqual([]);
    expect(login?.allowedRedirects).toEqual([]);
    expect(login?.providers.get('corp')).toEqual({
      name: 'corp', issuer: 'corp', clientId: 'authgate', clientAuth: { method: 'none' },
      scopes: ['openid', 'email', 'profile'], params: {}, identityFrom: 'id_token',
    });
  });

  it('reads every key', () => {
    const { login, problems } = read(`${ISSUERS}login:
  external_url: https://app.example.com
  providers:
    corp:
      issuer: corp
      client_id: authgate
      client_secret: \${SECRET}
      scopes: [openid, email, offline_access]
      params: { audience: https://api.example.com, max_age: 3600 }
      identity_from: userinfo
  cookie: { name: sid, same_site: strict }
  session: { idle_timeout: 10m, absolute_timeout: 8h, refresh_before: 2m }
  keys: [\${SESSION_KEY}, ${KEY}]
  allowed_redirects: [https://docs.example.org, "https://*.example.com"]
`, { env: { SECRET: 's3cret', SESSION_KEY: 'x'.repeat(40) }, workers: 4, redis: true });
    expect(problems).toEqual([]);
    const clientAuth = login?.providers.get('corp')?.clientAuth;
    expect(clientAuth?.method === 'client_secret_basic' && clientAuth.secret.reveal()).toBe('s3cret');
    expect(JSON.stringify(login?.providers.get('corp'))).not.toContain('s3cret');
    expect(login?.providers.get('corp')).toMatchObject({
      scopes: ['openid', 'email', 'offline_access'],
      params: { audience: 'https://api.example.com', max_age: '3600' },
      identityFrom: 'userinfo',
    });
    expect(login?.cookie).toEqual({ name: 'sid', sameSite: 'strict', secure: true });
    expect(login?.session).toEqual({ idleTimeoutMs: 600_000, absoluteTimeoutMs: 28_800_000, refreshBeforeMs: 120_000 });
    expect(login?.keys).toEqual(['x'.repeat(40), KEY]);
    expect(login?.allowedRedirects).toEqual([
      { kind: 'origin', origin: 'https://docs.example.org' },
      { kind: 'subdomains', protocol: 'https:', suffix: '.example.com', port: '' },
    ]);
  });

  it.each([
    ['P-256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'ES256'],
    ['P-521', () => generateKeyPairSync('ec', { namedCurve: 'P-521' }), 'ES512'],
    ['RSA-PSS', () => generateKeyPairSync('rsa-pss', { modulusLength: 2048 }), 'PS256'],
    ['Ed25519', () => generateKeyPairSync('ed25519'), 'EdDSA'],
  ])('private_key_jwt with a %s key signs its client assertions with %s', async (_type, generate, algorithm) => {
    const dir = await mkdtemp(join(tmpdir(), 'authgate-login-key-'));
    await writeFile(join(dir, 'rp.pem'), generate().privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const { login, problems } = read(MINIMAL.replace('client_id: authgate', `client_id: authgate\n      client_auth: { method: private_key_jwt, key_file: ${join(dir, 'rp.pem')} }`));
    expect(problems).toEqual([]);
    expect(login?.providers.get('corp')?.clientAuth).toEqual({ method: 'private_key_jwt', keyFile: join(dir, 'rp.pem'), algorithm });
  });

  it('warns of a Secure cookie named without the __Host- prefix (a sibling subdomain could set it)', () => {
    const { login, problems, warnings } = read(`${MINIMAL}  cookie: { name: sid }\n`);
    expect(problems).toEqual([]);
    expect(login?.cookie.name).toBe('sid');
    expect(warnings).toEqual([
      'gateway.yaml:16:19: login.cookie.name: without the __Host- prefix another site under the same domain can set "sid" for this one (cookie tossing): name it __Host-sid',
    ]);
    expect(read(MINIMAL).warnings).toEqual([]);
  });

  it('on loopback http the cookie is not Secure and not __Host- by default', () => {
    const { login, problems } = read(MINIMAL.replace('https://app.example.com', 'http://127.0.0.1:8080'));
    expect(problems).toEqual([]);
    expect(login?.cookie).toEqual({ name: 'authgate', sameSite: 'lax', secure: false });
  });

  it.each([
    ['a misspelt key, with a suggestion', MINIMAL.replace('  providers:', '  provders:\n    x: {}\n  providers:'),
      'gateway.yaml:12:3: login.provders: unknown key "provders", did you mean "providers"?'],
    ['a misspelt provider key', MINIMAL.replace('client_id: authgate', 'client_id: authgate\n      scope: [openid]'),
      'gateway.yaml:16:7: login.providers.corp.scope: unknown key "scope", did you mean "scopes"?'],
    ['no external_url', MINIMAL.replace('  external_url: https://app.example.com\n', ''),
      'gateway.yaml:11:3: login.external_url: required'],
    ['external_url over http to another host', MINIMAL.replace('https://app.example.com', 'http://app.example.com'),
      'gateway.yaml:11:17: login.external_url: must be https (plain http only on 127.0.0.1, [::1] or localhost): session cookies must not cross the network in clear'],
    ['external_url with a path', MINIMAL.replace('https://app.example.com', 'https://app.example.com/app'),
      'gateway.yaml:11:17: login.external_url: expected an origin only, like https://app.example.com (no path, query or user info)'],
    ['a provider naming an unknown issuer, with a suggestion', MINIMAL.replace('issuer: corp', 'issuer: crop'),
      'gateway.yaml:14:15: login.providers.corp.issuer: unknown issuer "crop", did you mean "corp"?'],
    ['a provider naming an issuer without discovery', MINIMAL.replace('issuer: corp', 'issuer: static'),
      'gateway.yaml:14:15: login.providers.corp.issuer: issuer "static" needs discovery: true (sign-in reads the provider\'s endpoints from its discovery document)'],
    ['a provider without client_id', MINIMAL.replace('      client_id: authgate\n', ''),
      'gateway.yaml:14:7: login.providers.corp.client_id: required'],
    ['no providers', MINIMAL.replace(/  providers:[^]*$/, '  providers: {}\n'),
      'gateway.yaml:12:14: login.providers: must name at least one provider'],
    ['scopes without openid', MINIMAL.replace('client_id: authgate', 'client_id: authgate\n      scopes: [email]'),
      'gateway.yaml:16:15: login.providers.corp.scopes: must include openid (sign-in needs an ID token)'],
    ['an unknown identity_from, with a suggestion', MINIMAL.replace('client_id: authgate', 'client_id: authgate\n      identity_from: id-token'),
      'gateway.yaml:16:22: login.providers.corp.identity_from: "id-token" is not one of "id_token", "access_token", "userinfo", did you mean "id_token"?'],
    ['a parameter the flow sets itself', MINIMAL.replace('client_id: authgate', 'client_id: authgate\n      params: { redirect_uri: https://evil.example }'),
      'gateway.yaml:16:17: login.providers.corp.params.redirect_uri: "redirect_uri" is set by the sign-in flow itself'],
    ['both client_secret and client_auth', MINIMAL.replace('client_id: authgate', 'client_id: authgate\n      client_secret: s\n      client_auth: { method: private_key_jwt, key_file: /nonexistent.pem }'),
      'gateway.yaml:16:7: login.providers.corp.client_secret: give either client_secret or client_auth, not both'],
    ['a private_key_jwt key file that does not exist', MINIMAL.replace('client_id: authgate', 'client_id: authgate\n      client_auth: { method: private_key_jwt, key_file: keys/rp.pem }'),
      'gateway.yaml:16:57: login.providers.corp.client_auth.key_file: file not found: /etc/authgate/keys/rp.pem'],
    ['a __Host- cookie on an http external_url', MINIMAL.replace('https://app.example.com', 'http://localhost:8080') + '  cookie: { name: __Host-sid }\n',
      'gateway.yaml:16:19: login.cookie.name: a __Host- cookie is only set over https: external_url is http'],
    ['SameSite=None on an http external_url', MINIMAL.replace('https://app.example.com', 'http://localhost:8080') + '  cookie: { same_site: none }\n',
      'gateway.yaml:16:24: login.cookie.same_site: SameSite=None needs a Secure cookie: external_url is http'],
    ['an invalid cookie name', `${MINIMAL}  cookie: { name: "a b" }\n`,
      'gateway.yaml:16:19: login.cookie.name: "a b" is not a valid cookie name'],
    ['idle longer than absolute', `${MINIMAL}  session: { idle_timeout: 2h, absolute_timeout: 1h }\n`,
      'gateway.yaml:16:28: login.session.idle_timeout: must not be longer than absolute_timeout'],
    ['a short key', `${MINIMAL}  keys: [${KEY}, short-key]\n`,
      'gateway.yaml:16:44: login.keys[1]: must be at least 32 bytes (got 9)'],
    ['a wildcard in the middle of an allowed redirect', `${MINIMAL}  allowed_redirects: ["https://app.*.com"]\n`,
      'gateway.yaml:16:23: login.allowed_redirects[0]: "*" may only be the whole first label, as in https://*.example.com'],
  ])('refuses %s', (_label, yaml, problem) => {
    const { problems } = read(yaml);
    // Every problem is reported; the loader refuses a file with any (an unknown key leaves the rest readable).
    expect(problems, JSON.stringify(problems)).toContain(problem);
  });

  it.each([
    [{ workers: 2 }, 'server.workers is more than 1'],
    [{ workers: 'auto' as const }, 'server.workers is more than 1'],
    [{ redis: true }, 'store.redis is set'],
  ])('requires keys with %j', (options, why) => {
    const { login, problems } = read(MINIMAL, options);
    expect(problems).toEqual([`gateway.yaml:11:3: login.keys: required when ${why}: every instance must verify the cookies the others sign`]);
    expect(login).toBeUndefined();
    expect(read(`${MINIMAL}  keys: [${KEY}]\n`, options).problems).toEqual([]);
  });

  it('leaves out keys that variables left empty: a rotation in or out needs no edit, and none left is no keys', () => {
    const rotating = `${MINIMAL}  keys: [\${SESSION_KEY:-}, \${PREVIOUS_SESSION_KEY:-}]\n`;
    expect(read(rotating, { redis: true, env: { SESSION_KEY: KEY } }).login?.keys).toEqual([KEY]);
    expect(read(rotating, { redis: true, env: { SESSION_KEY: KEY, PREVIOUS_SESSION_KEY: 'p'.repeat(32) } }).login?.keys).toEqual([KEY, 'p'.repeat(32)]);
    expect(read(rotating).login?.keys).toEqual([]);
    expect(read(rotating, { redis: true }).problems).toEqual(['gateway.yaml:16:3: login.keys: required when store.redis is set: every instance must verify the cookies the others sign']);
  });
});
