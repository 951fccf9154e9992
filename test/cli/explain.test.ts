import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';

const SECRET = 'explain-test-secret-0123456789-abcdefghijkl';
let file: string;

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-explain-'));
  file = join(dir, 'gateway.yaml');
  await writeFile(
    file,
    `
version: 1
issuers:
  legacy:
    issuer: https://legacy.example.com
    secret: ${SECRET}
    audiences: [api]
upstreams:
  api: { url: "http://127.0.0.1:3000" }
identity:
  headers: { X-User-Id: subject, X-User-Roles: roles, X-Token-Expires: claims.exp }
routes:
  - name: public
    match: { path: /public/** }
    upstream: api
    auth: none
  - name: admin
    match: { path: /admin/** }
    upstream: api
    require: { roles: [admin], scopes: [admin:read] }
  - name: tenant
    match: { path: "/tenants/{tenant}/**" }
    upstream: api
    require: { expr: 'claims.tenant == params.tenant && "write" in identity.permissions' }
  - name: search
    match: { path: /search }
    upstream: api
    require: { expr: 'size(request.query) == 1' }
`,
  );
});

async function explain(...args: string[]): Promise<{ code: number | undefined; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await main(['explain', '-c', file, ...args], { stdout, stderr });
  return { code, out, err };
}

describe('authgate explain', () => {
  it('tells a policy author which rule refuses a dry-run identity, and with what', async () => {
    const { code, out } = await explain('--claims', '{"sub":"bob","roles":["user"],"scope":"admin:read"}', 'GET', 'http://api.local/admin/users');
    expect(code).toBe(3);
    expect(out.split('\n')[0]).toBe('GET http://api.local/admin/users   (dry run: --claims, signature and token checks skipped)');
    expect(out).toContain('pass  route        admin → upstream api');
    expect(out).toContain('FAIL  authorize    needs any of roles [admin]; has [user]');
    expect(out).toMatch(/pass\s+scopes\s+/);
    expect(out).toContain('result: 403 insufficient_scope (rule_roles)');
  });

  it('shows the expression, every input it read and its result', async () => {
    const denied = await explain('--claims', '{"sub":"bob","tenant":"acme","permissions":["read"]}', 'GET', 'http://api.local/tenants/acme/x');
    expect(denied.code).toBe(3);
    expect(denied.out).toContain(
      'FAIL  expr        claims.tenant == params.tenant && "write" in identity.permissions; read claims.tenant = "acme", params.tenant = "acme", identity.permissions = ["read"] → expression is false',
    );
    expect(denied.out).toContain('result: 403 insufficient_scope (rule_expr)');
    const missing = await explain('--claims', '{"sub":"bob","permissions":["write"]}', 'GET', 'http://api.local/tenants/acme/x');
    expect(missing.out).toMatch(/FAIL {2}expr .*read claims\.tenant = nothing, .* → expression error: /);
    const allowed = await explain('--claims', '{"sub":"bob","tenant":"acme","permissions":["write"]}', 'GET', 'http://api.local/tenants/acme/x');
    expect(allowed.code).toBe(0);
    expect(allowed.out).toMatch(/pass {2}expr .*identity\.permissions = \["write"\] → true/);
  });

  it('shows a map an expression reads as its entries, and a request too large for expressions as a refused rule', async () => {
    const shown = await explain('--claims', '{"sub":"bob"}', 'GET', 'http://api.local/search?q=x');
    expect(shown.out).toContain('request.query = {"q":["x"]}');
    const many = Array.from({ length: 300 }, (_, i) => `q=${i}`).join('&');
    const refused = await explain('--claims', '{"sub":"bob"}', 'GET', `http://api.local/search?${many}`);
    expect(refused.code).toBe(3);
    expect(refused.out).toContain('the request is too large for the expression: more than 256 query values');
  });

  it('--claims without exp: the claims.exp header shows the assumed expiry, an hour from now', async () => {
    const before = Math.floor(Date.now() / 1000);
    const { code, out } = await explain('--claims', '{"sub":"bob","roles":["admin"],"scope":"admin:read"}', 'GET', 'http://api.local/admin/users');
    const after = Math.floor(Date.now() / 1000);
    expect(code).toBe(0);
    const expires = Number(/x-token-expires: (\d+)/.exec(out)?.[1]);
    expect(expires).toBeGreaterThanOrEqual(before + 3600);
    expect(expires).toBeLessThanOrEqual(after + 3600);
  });

  it('verifies a real token and lists the headers the upstream would get', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ roles: ['admin'], scope: 'admin:read' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer('https://legacy.example.com')
      .setAudience('api')
      .setSubject('alice')
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(new TextEncoder().encode(SECRET));
    const { code, out } = await explain('--token', token, 'GET', 'http://api.local/admin/../admin/users');
    expect(code).toBe(0);
    expect(out).toContain('pass  normalize    path /admin/users');
    expect(out).toContain('pass  authenticate issuer legacy, subject alice');
    expect(out).toContain('result: forwarded to upstream api as /admin/users');
    expect(out).toContain('x-user-id: alice');
    expect(out).toContain('x-user-roles: admin');
    expect(out).not.toContain(token);
  });

  it('explains a refused token without echoing it', async () => {
    const { code, out } = await explain('--token', 'aaaa.bbbb.cccc', 'GET', '/admin/users');
    expect(code).toBe(3);
    expect(out).toMatch(/FAIL {2}authenticate \w+ \(header Authorization\)/);
    expect(out).toContain('result: 401 invalid_token');
  });

  it('without --token or --claims, explains the request without a credential', async () => {
    const { code, out } = await explain('GET', '/admin/users');
    expect(code).toBe(3);
    expect(out).toContain('result: 401 unauthorized (no_token)');
    expect(out).not.toContain('browser sign-in');
  });

  it('exits 2 on a usage error', async () => {
    expect((await explain('--token', 'a.b.c', '--claims', '{}', 'GET', '/admin')).code).toBe(2);
    expect((await explain('--claims', '[1]', 'GET', '/admin')).code).toBe(2);
  });
});

describe('authgate explain on a route with browser sign-in', () => {
  let loginFile: string;

  beforeAll(async () => {
    loginFile = join(await mkdtemp(join(tmpdir(), 'authgate-explain-login-')), 'gateway.yaml');
    // The providers' issuers point at a closed loopback port: explain asks them nothing about sign-in.
    await writeFile(loginFile, `
version: 1
issuers:
  corp: { issuer: "http://127.0.0.1:9/corp", discovery: true, audiences: [api] }
  partner: { issuer: "http://127.0.0.1:9/partner", discovery: true, audiences: [api] }
upstreams:
  app: { url: "http://127.0.0.1:3000" }
login:
  external_url: https://app.example.com
  providers:
    corp: { issuer: corp, client_id: gateway }
    partner: { issuer: partner, client_id: gateway, identity_from: userinfo }
  keys: ['a-session-key-of-at-least-32-bytes!!']
routes:
  - { name: reports, match: { path: /reports/** }, upstream: app, login: corp, require: { roles: [staff] } }
  - { name: shared, match: { path: /shared/** }, upstream: app, login: [corp, partner] }
  - { name: api, match: { path: /api/** }, upstream: app }
`);
  });

  async function explainLogin(...args: string[]): Promise<{ code: number | undefined; out: string }> {
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = await main(['explain', '-c', loginFile, ...args], { stdout, stderr: new PassThrough() });
    return { code, out };
  }

  it('says a browser without a session is sent to the provider, and an API client without a token gets a 401', async () => {
    const { code, out } = await explainLogin('GET', 'https://app.example.com/reports/q1');
    expect(code).toBe(3);
    expect(out).toContain('  browser sign-in (login: corp):');
    expect(out).toContain(
      "    a browser navigation without a session: 302 to provider corp's authorization endpoint (in the discovery document of http://127.0.0.1:9/corp; code flow with PKCE S256), then back to https://app.example.com/_authgate/callback",
    );
    expect(out).toContain('    an API client or script without a token: 401 (WWW-Authenticate: Bearer realm="authgate")');
    expect(out).toContain("    with a session: identity from corp's id_token claims; the same rules apply");
    expect(out).toContain('result: 401 unauthorized (no_token)');
  });

  it('with --claims, evaluates the rules as usual and still tells what goes without credentials', async () => {
    const staff = await explainLogin('--claims', '{"iss":"http://127.0.0.1:9/corp","sub":"alice","roles":["staff"]}', 'GET', '/reports/q1');
    expect(staff.code).toBe(0);
    expect(staff.out).toContain('result: forwarded to upstream app as /reports/q1');
    expect(staff.out).toContain('an API client or script without a token: 401');
    const guest = await explainLogin('--claims', '{"iss":"http://127.0.0.1:9/corp","sub":"bob","roles":["guest"]}', 'GET', '/reports/q1');
    expect(guest.code).toBe(3);
    expect(guest.out).toContain('result: 403 insufficient_scope (rule_roles)');
  });

  it('--json: several providers send a navigation to the chooser, coming back to the page asked for', async () => {
    const { out } = await explainLogin('--json', 'GET', '/shared/doc?id=7');
    const report = JSON.parse(out) as { route: string; status: number; login: Record<string, unknown> };
    expect(report).toMatchObject({ route: 'shared', status: 401 });
    expect(report.login).toEqual({
      providers: ['corp', 'partner'],
      navigation: { status: 302, location: '/_authgate/sign_in?rd=%2Fshared%2Fdoc%3Fid%3D7&providers=corp%2Cpartner', detail: '(the chooser of providers corp, partner)' },
      apiClient: { status: 401, location: null, detail: '(WWW-Authenticate: Bearer realm="authgate")' },
      session: "identity from corp's id_token claims, partner's userinfo claims; the same rules apply",
    });
  });

  it('a route without sign-in has no sign-in section', async () => {
    const { out } = await explainLogin('--json', 'GET', '/api/x');
    expect(JSON.parse(out) as { login: unknown }).toMatchObject({ status: 401, login: null });
  });
});

describe('authgate explain with identity.assertion and an upstream URL with a path', () => {
  let configFile: string;
  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'authgate-explain-assertion-'));
    configFile = join(dir, 'gateway.yaml');
    await writeFile(join(dir, 'assertion.pem'), generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await writeFile(configFile, `
version: 1
issuers:
  legacy: { issuer: https://legacy.example.com, secret: ${SECRET}, audiences: [api] }
upstreams:
  api: { url: "http://127.0.0.1:3000/base/" }
identity:
  headers: { X-User-Id: subject }
  assertion: { keys: [{ file: assertion.pem }] }
routes:
  - { name: api, match: { path: /** }, upstream: api }
`);
  });

  it('shows what the assertion says without a signature anyone could use, and the path the upstream is asked for', async () => {
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = await main(['explain', '-c', configFile, '--claims', '{"sub":"mallory"}', 'GET', '/orders/7'], { stdout, stderr: new PassThrough() });
    expect(code).toBe(0);
    expect(out).toContain('result: forwarded to upstream api as /base/orders/7');
    const line = /x-authgate-assertion: (.*)/.exec(out)?.[1] ?? '';
    expect(line).toMatch(/^\{"alg":"ES256",.*\}\.\{.*"sub":"mallory".*\} \(signed; signature left out\)$/);
    expect(line).not.toMatch(/[\w-]{20,}\.[\w-]{20,}\.[\w-]{20,}/);
  });
});
