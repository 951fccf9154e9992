import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCheck } from '../../src/cli/check.js';
import { formatProblem, loadConfig, parseConfig } from '../../src/config/load.js';
import { makeCertificateAuthority } from '../helpers/client-certs.js';

const BUNDLED = fileURLToPath(new URL('../../gateway.yaml', import.meta.url));

const MINIMAL = `version: 1
issuers:
  idp:
    issuer: https://idp.example.com/
    discovery: true
    audiences: [api]
upstreams:
  api: { url: http://127.0.0.1:3000 }
routes:
  - { name: all, match: { path: /** }, upstream: api }
`;

describe('the bundled gateway.yaml', () => {
  it('loads with no problems and no warnings when no environment is set', async () => {
    const { config, problems, warnings } = parseConfig(await readFile(BUNDLED, 'utf8'), BUNDLED, {});
    expect(problems.map(formatProblem)).toEqual([]);
    expect(warnings.map(formatProblem)).toEqual([]);
    expect(config?.issuers.get('demo')).toMatchObject({
      issuer: 'http://127.0.0.1:9400',
      keys: { kind: 'discovery' },
      audiences: ['authgate-demo'],
      algorithms: ['RS256'],
      tokenTypes: ['at+jwt', 'JWT'],
    });
    expect(config?.routes.map((route) => route.name)).toEqual(['public', 'admin', 'write-data', 'app-admin', 'app', 'home', 'websocket', 'api']);
    expect(config?.login?.externalUrl.origin).toBe('http://127.0.0.1:8080');
    expect(config?.login?.providers.get('demo')).toMatchObject({ issuer: 'demo', clientId: 'authgate-demo-browser', clientAuth: { method: 'none' } });
  });

  it('takes the addresses the demo sets in the environment', async () => {
    const env = {
      AUTHGATE_DEMO_ISSUER: 'http://127.0.0.1:40001',
      AUTHGATE_DEMO_UPSTREAM: 'http://127.0.0.1:40002',
      AUTHGATE_LISTEN: '127.0.0.1:0',
      AUTHGATE_ADMIN_LISTEN: '127.0.0.1:0',
      AUTHGATE_ADMIN_TOKEN: 'demo-admin-token',
      REDIS_URL: 'redis://127.0.0.1:6379',
      AUTHGATE_SESSION_KEY: 'a-session-key-of-at-least-32-bytes!!',
      AUTHGATE_EXTERNAL_URL: 'http://127.0.0.1:40003',
    };
    const { config, problems } = parseConfig(await readFile(BUNDLED, 'utf8'), BUNDLED, env);
    expect(problems).toEqual([]);
    expect(config?.issuers.get('demo')?.issuer).toBe('http://127.0.0.1:40001');
    expect(config?.upstreams.get('echo')?.url.href).toBe('http://127.0.0.1:40002/');
    expect(config?.server.listen).toEqual({ host: '127.0.0.1', port: 0 });
    expect(config?.admin).toEqual({ listen: { host: '127.0.0.1', port: 0 }, token: 'demo-admin-token' });
    expect(config?.store.redis?.topology).toEqual({ kind: 'url', url: 'redis://127.0.0.1:6379' });
    expect(config?.login).toMatchObject({ keys: ['a-session-key-of-at-least-32-bytes!!'] });
    expect(config?.login?.externalUrl.origin).toBe('http://127.0.0.1:40003');
  });
});

describe('store.redis', () => {
  it.each(['redis: ""', 'redis:', 'redis: ${REDIS_URL:-}'])('%s means the in-memory store', (line) => {
    const { config, problems } = parseConfig(`${MINIMAL}store:\n  ${line}\n`, '/etc/authgate/gateway.yaml', {});
    expect(problems.map(formatProblem)).toEqual([]);
    expect(config?.store.redis).toBeUndefined();
  });

  it('refuses a URL that is not redis:// or rediss://', () => {
    const { problems } = parseConfig(`${MINIMAL}store:\n  redis: http://127.0.0.1:6379\n`, '/etc/authgate/gateway.yaml', {});
    expect(problems.map(formatProblem)).toEqual([
      '/etc/authgate/gateway.yaml:12:10: store.redis: expected a redis:// or rediss:// URL',
    ]);
  });

  it.each(['"{app}:"', '"app}:"'])('refuses the prefix %s: a brace would make part of it every key\'s hash tag', (prefix) => {
    const { problems } = parseConfig(`${MINIMAL}store:\n  prefix: ${prefix}\n`, '/etc/authgate/gateway.yaml', {});
    expect(problems.map(formatProblem)).toEqual([
      '/etc/authgate/gateway.yaml:12:11: store.prefix: must not contain "{" or "}": authgate sets the hash tags of its keys itself',
    ]);
  });
});

describe('connection limits and client timeouts', () => {
  const upstreams = (settings: string): string => MINIMAL.replace('api: { url: http://127.0.0.1:3000 }', `api: { url: http://127.0.0.1:3000, ${settings} }`);

  it('reads the listener header timeout and the upstream limits and client timeouts', () => {
    const yaml = `${upstreams('max_connections: 10, queue_timeout: 2s, client_body_timeout: 5s, client_read_timeout: 1m')}server:\n  header_timeout: 3s\n`;
    const { config, problems } = parseConfig(yaml, '/etc/authgate/gateway.yaml', {});
    expect(problems.map(formatProblem)).toEqual([]);
    expect(config?.server.headerTimeoutMs).toBe(3_000);
    expect(config?.upstreams.get('api')).toMatchObject({ maxConnections: 10, queueTimeoutMs: 2_000, clientBodyTimeoutMs: 5_000, clientReadTimeoutMs: 60_000 });
  });

  it('names the file, line, column and key of each bad value', () => {
    const yaml = `${upstreams('max_connections: 0, client_body_timeout: 0s, client_read_timeout: soon')}server:\n  header_timeout: 0ms\n`;
    const { problems } = parseConfig(yaml, '/etc/authgate/gateway.yaml', {});
    expect(problems.map(formatProblem)).toEqual([
      '/etc/authgate/gateway.yaml:8:55: upstreams.api.max_connections: must be at least 1',
      '/etc/authgate/gateway.yaml:8:79: upstreams.api.client_body_timeout: must be longer than 0',
      '/etc/authgate/gateway.yaml:8:104: upstreams.api.client_read_timeout: expected a duration like 500ms, 30s, 10m, 1h or 7d, got "soon"',
      '/etc/authgate/gateway.yaml:12:19: server.header_timeout: must be longer than 0',
    ]);
  });

  it('refuses a queue_timeout without max_connections, which would never apply', () => {
    const { problems } = parseConfig(upstreams('queue_timeout: 2s'), '/etc/authgate/gateway.yaml', {});
    expect(problems.map(formatProblem)).toEqual([
      '/etc/authgate/gateway.yaml:8:53: upstreams.api.queue_timeout: has no effect without max_connections',
    ]);
  });
});

describe('defaults', () => {
  it('fills in every default of docs/configuration.md', () => {
    const { config } = parseConfig(MINIMAL, '/etc/authgate/gateway.yaml', {});
    expect(config).toEqual({
      file: '/etc/authgate/gateway.yaml',
      server: {
        listen: { host: '0.0.0.0', port: 8080 },
        tls: undefined,
        trustedProxies: [],
        allowedHosts: undefined,
        pathCase: 'sensitive',
        workers: 1,
        shutdownGraceMs: 10_000,
        headerTimeoutMs: 20_000,
        reservedPrefix: '/_authgate',
        forwardAuth: 'off',
      },
      admin: { listen: { host: '127.0.0.1', port: 9090 }, token: '' },
      store: { redis: undefined, prefix: 'authgate:' },
      logging: { level: 'info', format: 'json', accessLog: true },
      tokens: [
        { kind: 'header', name: 'Authorization' },
        { kind: 'cookie', name: 'access_token' },
      ],
      issuers: new Map([
        ['idp', {
          name: 'idp',
          issuer: 'https://idp.example.com/',
          keys: { kind: 'discovery' },
          audiences: ['api'],
          algorithms: ['RS256'],
          clockSkewMs: 30_000,
          maxTokenAgeMs: undefined,
          tokenTypes: undefined,
          requireClaims: undefined,
          claims: { subject: 'sub', email: 'email', roles: 'roles', permissions: 'permissions', scopes: 'scope', clientId: 'client_id' },
          jwksCache: { maxAgeMs: 600_000, minRefetchIntervalMs: 30_000, staleIfErrorMs: 86_400_000 },
          introspection: undefined,
          certificateBound: false,
          dpop: undefined,
        }],
      ]),
      upstreams: new Map([['api', { name: 'api', url: new URL('http://127.0.0.1:3000'), timeoutMs: 30_000, maxConnections: undefined, queueTimeoutMs: 5_000, clientBodyTimeoutMs: 30_000, clientReadTimeoutMs: 30_000, websocketIdleTimeoutMs: 3_600_000, tls: undefined }]]),
      identity: {
        headers: [
          { name: 'X-User-Id', field: { kind: 'subject' } },
          { name: 'X-User-Email', field: { kind: 'email' } },
          { name: 'X-User-Roles', field: { kind: 'roles' } },
          { name: 'X-User-Permissions', field: { kind: 'permissions' } },
          { name: 'X-User-Scopes', field: { kind: 'scopes' } },
          { name: 'X-Auth-Issuer', field: { kind: 'issuer' } },
        ],
        listSeparator: ',',
        strip: [],
        forwardToken: false,
      },
      rateLimits: new Map(),
      cors: undefined,
      routes: [{
        name: 'all',
        match: { path: '/**', methods: undefined, host: undefined },
        upstream: 'api',
        auth: 'required',
        issuers: undefined,
        require: undefined,
        rateLimit: [],
        cors: undefined,
      }],
    });
  });

  it('defaults an issuer with a secret to HS256, and normalizes rules, methods, hosts and claim fields', () => {
    const yaml = `version: 1
issuers:
  svc:
    issuer: billing
    secret: "${'s'.repeat(32)}"
    audiences: [api]
    require_claims: { type: access, level: 2 }
upstreams:
  api: { url: http://127.0.0.1:3000 }
identity:
  headers: { X-Tenant: claims.org.tenant, X-Client: client_id, X-Issuer-Name: issuer_name }
rate_limits:
  per-tenant: { key: claims.org.tenant, limit: 5, window: 1m }
  per-key: { key: header.X-Api-Key, limit: 5, window: 1m, max_keys: 500 }
routes:
  - name: data
    match: { path: "/data/{id}", methods: [get, Post], host: "*.Example.COM" }
    upstream: api
    require:
      roles: [a, b]
      permissions: [write]
      scopes: { all: [read, write] }
      claims: { email_verified: true }
    rate_limit: [per-tenant, per-key]
    cors: false
`;
    const { config, problems } = parseConfig(yaml, 'gw.yaml', {});
    expect(problems).toEqual([]);
    expect(config?.issuers.get('svc')).toMatchObject({
      keys: { kind: 'secret', secret: 's'.repeat(32) },
      algorithms: ['HS256'],
      requireClaims: { type: 'access', level: 2 },
    });
    expect(config?.identity.headers).toEqual([
      { name: 'X-Tenant', field: { kind: 'claim', path: 'org.tenant' } },
      { name: 'X-Client', field: { kind: 'client_id' } },
      { name: 'X-Issuer-Name', field: { kind: 'issuer_name' } },
    ]);
    expect(config?.rateLimits.get('per-tenant')?.key).toEqual({ kind: 'claim', path: 'org.tenant' });
    expect(config?.rateLimits.get('per-key')?.key).toEqual({ kind: 'header', name: 'x-api-key' });
    expect([config?.rateLimits.get('per-tenant')?.maxKeys, config?.rateLimits.get('per-key')?.maxKeys]).toEqual([100_000, 500]);
    expect(config?.routes[0]).toEqual({
      name: 'data',
      match: { path: '/data/{id}', methods: ['GET', 'POST'], host: '*.example.com' },
      upstream: 'api',
      auth: 'required',
      issuers: undefined,
      require: {
        roles: { mode: 'any', values: ['a', 'b'] },
        permissions: { mode: 'all', values: ['write'] },
        scopes: { mode: 'all', values: ['read', 'write'] },
        claims: { email_verified: true },
      },
      rateLimit: ['per-tenant', 'per-key'],
      cors: false,
    });
  });
});

describe('files named in the config', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'authgate-config-'));
    const ca = await makeCertificateAuthority();
    const [server, other] = [await ca.issue('/CN=localhost', 'server'), await ca.issue('/CN=other', 'other')];
    await Promise.all([
      writeFile(join(dir, 'tls.crt'), server.certPem),
      writeFile(join(dir, 'tls.key'), server.keyPem),
      writeFile(join(dir, 'other.key'), other.keyPem),
      writeFile(join(dir, 'keys.json'), 'x'),
    ]);
  });

  it.each([
    ['the certificate given as the key', 'tls.crt', 'tls.crt', 'server.tls.key_file: %DIR%/tls.crt holds no private key (PEM)'],
    ['the key given as the certificate', 'tls.key', 'tls.key', 'server.tls.cert_file: %DIR%/tls.key holds no certificate (PEM)'],
    ['the key of another certificate', 'tls.crt', 'other.key', 'server.tls.key_file: %DIR%/other.key is not the key of the certificate in %DIR%/tls.crt'],
  ])('reads the TLS files as the listener would: %s is refused at its key', async (_case, cert, key, message) => {
    const file = join(dir, `tls-${key}.yaml`);
    await writeFile(file, MINIMAL.replace('version: 1', `version: 1\nserver:\n  tls: { cert_file: ${cert}, key_file: ${key} }`));
    const { config, problems } = await loadConfig(file, {});
    expect(config).toBeUndefined();
    expect(problems.map(formatProblem)).toEqual([expect.stringContaining(message.replaceAll('%DIR%', dir))]);
  });

  it('resolves TLS and JWKS files against the config file directory', async () => {
    const file = join(dir, 'gateway.yaml');
    await writeFile(file, MINIMAL
      .replace('version: 1', 'version: 1\nserver:\n  tls: { cert_file: tls.crt, key_file: ./tls.key, min_version: TLSv1.3 }')
      .replace('discovery: true', 'jwks_file: keys.json'));
    const { config, problems } = await loadConfig(file, {});
    expect(problems).toEqual([]);
    expect(config?.server.tls).toEqual({ certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), minVersion: 'TLSv1.3', clientCertificates: undefined });
    expect(config?.issuers.get('idp')?.keys).toEqual({ kind: 'jwks_file', path: join(dir, 'keys.json') });
  });

  it('reports a file that cannot be read', async () => {
    const file = join(dir, 'absent.yaml');
    const { config, problems } = await loadConfig(file, {});
    expect(config).toBeUndefined();
    expect(problems.map(formatProblem)).toEqual([`${file}:1:1: cannot read the file (ENOENT)`]);
  });
});

describe('warnings', () => {
  it('names a shadowed route and an issuer no route can use, and still loads', () => {
    const yaml = `version: 1
issuers:
  idp: { issuer: https://idp.example.com/, discovery: true, audiences: [api] }
  spare: { issuer: https://spare.example.com/, discovery: true, audiences: [api] }
upstreams:
  api: { url: http://127.0.0.1:3000 }
routes:
  - name: everything
    match: { path: /api/** }
    upstream: api
    issuers: [idp]
  - name: admin
    match: { path: /api/admin, methods: [GET] }
    upstream: api
    issuers: [idp]
`;
    const { config, warnings } = parseConfig(yaml, 'gw.yaml', {});
    expect(config).toBeDefined();
    expect(warnings.map(formatProblem)).toEqual([
      'gw.yaml:4:3: issuers.spare: no route can use this issuer (every protected route lists other issuers)',
      'gw.yaml:12:5: routes[1]: route "admin" is never reached: route "everything" (routes[0]) takes every request it would',
    ]);
  });

  it('flags every issuer when all routes are public', () => {
    const yaml = MINIMAL.replace('upstream: api }', 'upstream: api, auth: none }');
    expect(parseConfig(yaml, 'gw.yaml', {}).warnings.map(formatProblem)).toEqual([
      'gw.yaml:3:3: issuers.idp: no route can use this issuer (every route has auth: none)',
    ]);
  });
});

describe('runCheck', () => {
  async function check(yaml: string): Promise<{ code: number; stdout: string; stderr: string; file: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'authgate-check-'));
    const file = join(dir, 'gateway.yaml');
    await writeFile(file, yaml);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const code = await runCheck(file, { stdout, stderr });
    stdout.end();
    stderr.end();
    return { code, stdout: stdout.read()?.toString() ?? '', stderr: stderr.read()?.toString() ?? '', file };
  }

  it('exits 0 with a summary and warnings', async () => {
    const { code, stdout, stderr, file } = await check(MINIMAL.replace('upstream: api }', 'upstream: api, auth: none }'));
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toBe([
      `${file}:3:3: issuers.idp: warning: no route can use this issuer (every route has auth: none)`,
      `${file}: ok`,
      '  listen     0.0.0.0:8080, admin 127.0.0.1:9090',
      '  routes     1',
      '  issuers    idp',
      '  upstreams  api',
      '  store      memory (single instance)',
      '',
    ].join('\n'));
  });

  it('exits 1 with one line per problem on stderr', async () => {
    const { code, stdout, stderr, file } = await check(MINIMAL.replace('upstream: api }', 'upstream: apii }').replace('version: 1', 'version: 1\nlogging: { level: loud }'));
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe([
      `${file}:2:19: logging.level: "loud" is not one of "trace", "debug", "info", "warn", "error", "fatal", "silent"`,
      `${file}:11:50: routes[0].upstream: unknown upstream "apii", did you mean "api"?`,
      '',
    ].join('\n'));
  });
});

describe('a route login key', () => {
  const LOGIN = `login:
  external_url: https://app.example.com
  providers:
    corp: { issuer: idp, client_id: authgate, client_secret: s }
  keys: ['${'k'.repeat(32)}']
`;
  const withRoute = (route: string, login = LOGIN): string => `${MINIMAL.replace(/routes:\n.*\n$/, '')}${login}routes:\n  - ${route}\n`;

  it('names one provider or a list of them', () => {
    for (const [given, expected] of [['corp', ['corp']], ['[corp]', ['corp']]] as const) {
      const { config, problems } = parseConfig(withRoute(`{ name: app, match: { path: /** }, upstream: api, login: ${given} }`), '/etc/authgate/gateway.yaml', {});
      expect(problems.map(formatProblem)).toEqual([]);
      expect(config?.routes[0]?.login).toEqual(expected);
      expect(config?.login?.providers.has('corp')).toBe(true);
    }
  });

  it.each([
    ['{ name: app, match: { path: /** }, upstream: api, login: corps }', 'routes[0].login', 'unknown login provider "corps"'],
    ['{ name: app, match: { path: /** }, upstream: api, auth: optional, login: corp }', 'routes[0].login', 'not allowed with auth: optional'],
    ['{ name: app, match: { path: /** }, upstream: api, login: [] }', 'routes[0].login', 'must not be empty'],
  ])('refuses %s at file:line:col', (route, key, message) => {
    const { config, problems } = parseConfig(withRoute(route), '/etc/authgate/gateway.yaml', {});
    expect(config).toBeUndefined();
    expect(problems.map(formatProblem)[0]).toMatch(new RegExp(`^/etc/authgate/gateway\\.yaml:15:\\d+: ${key.replace(/[.[\]]/g, '\\$&')}`));
    expect(problems.map(formatProblem)[0]).toContain(message);
  });

  it("refuses a provider whose issuer the route's issuers leave out: its sessions would always be refused", () => {
    const twoIssuers = MINIMAL.replace(
      'issuers:\n',
      'issuers:\n  other: { issuer: https://other.example.com/, discovery: true, audiences: [api] }\n',
    );
    const config = `${twoIssuers.replace(/routes:\n.*\n$/, '')}${LOGIN}routes:\n  - { name: app, match: { path: /** }, upstream: api, issuers: [other], login: corp }\n`;
    const { problems } = parseConfig(config, '/etc/authgate/gateway.yaml', {});
    expect(problems.map(formatProblem)).toEqual([
      expect.stringMatching(/^\/etc\/authgate\/gateway\.yaml:16:\d+: routes\[0\]\.login: provider corp signs in with issuer idp, which the route's issuers leave out/),
    ]);
  });

  it('needs a login section', () => {
    const { problems } = parseConfig(withRoute('{ name: app, match: { path: /** }, upstream: api, login: corp }', ''), '/etc/authgate/gateway.yaml', {});
    expect(problems.map(formatProblem)).toEqual([expect.stringContaining('routes[0].login: needs a top-level login section')]);
  });

  it('keeps sessions on a Redis Cluster', () => {
    const store = 'store:\n  redis: { cluster: { nodes: ["127.0.0.1:7000"] } }\n';
    const { config, problems } = parseConfig(`${store}${withRoute('{ name: app, match: { path: /** }, upstream: api, login: corp }')}`, '/etc/authgate/gateway.yaml', {});
    expect(problems).toEqual([]);
    expect(config?.store.redis?.topology.kind).toBe('cluster');
    expect(config?.login).toBeDefined();
  });
});
