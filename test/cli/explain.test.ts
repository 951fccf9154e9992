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

  it('exits 2 on a usage error', async () => {
    expect((await explain('GET', '/admin')).code).toBe(2);
    expect((await explain('--claims', '[1]', 'GET', '/admin')).code).toBe(2);
  });
});
