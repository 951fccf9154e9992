/** Starting what the bench measures: authgate from dist/ as production runs it, and free loopback ports. */
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { spawnPinned, type Spawned } from './proc.js';
import { AUDIENCE, DPOP_ISSUER, HS_ISSUER, HS_SECRET, RS_ISSUER } from './tokens.js';

const READY_DEADLINE_MS = 30_000;

export interface GatewaySetup {
  readonly root: string;
  readonly dir: string;
  readonly upstreamPort: number;
  readonly redisUrl?: string;
  readonly workers: number;
  /** How the /limited route's limit counts with Redis; default leased. */
  readonly rateLimitMode?: 'leased' | 'exact';
  /** A PEM private key: every forwarded request then carries a signed identity assertion. */
  readonly assertionKeyFile?: string;
  /** The bench introspection endpoint: adds the `opaque` issuer and the /opaque route. */
  readonly introspectionUrl?: string;
  /** A dev issuer that signs people in: adds browser sign-in and the /app login route. */
  readonly signInIssuer?: string;
}

/** The client the gateway signs people in as, at `signInIssuer`. */
export const SIGN_IN_CLIENT = 'bench-browser';
export const SESSION_COOKIE = 'authgate';

function assertionYaml(setup: GatewaySetup): string {
  if (setup.assertionKeyFile === undefined) return '';
  return `  assertion: { keys: [{ file: ${setup.assertionKeyFile} }], issuer: https://bench.authgate, ttl: 2m }\n`;
}

export interface RunningAuthgate {
  readonly url: string;
  readonly adminUrl: string;
  readonly process: Spawned;
}

export function gatewayYaml(setup: GatewaySetup, port: number, adminPort: number): string {
  return `version: 1
server:
  listen: 127.0.0.1:${port}
  workers: ${setup.workers}
  shutdown_grace: 1s
admin:
  listen: 127.0.0.1:${adminPort}
${setup.redisUrl ? `store:\n  redis: ${setup.redisUrl}\n` : ''}logging: { level: info, access_log: true }
tokens:
  - header: Authorization
issuers:
  bench:
    issuer: ${RS_ISSUER}
    jwks_file: jwks.json
    audiences: [${AUDIENCE}]
    algorithms: [RS256]
    claims: { subject: sub, email: email, roles: roles }
  bench-hs:
    issuer: ${HS_ISSUER}
    secret: ${HS_SECRET}
    audiences: [${AUDIENCE}]
    algorithms: [HS256]
  bench-dpop:
    issuer: ${DPOP_ISSUER}
    jwks_file: jwks.json
    audiences: [${AUDIENCE}]
    algorithms: [RS256]
    claims: { subject: sub, email: email, roles: roles }
    dpop: { algorithms: [ES256] }
${opaqueIssuer(setup)}${signInIssuer(setup)}upstreams:
  app: { url: "http://127.0.0.1:${setup.upstreamPort}", timeout: 30s }
identity:
  headers: { X-User-Id: subject, X-User-Email: email, X-User-Roles: roles, X-Auth-Issuer: issuer }
  strip: ["X-User-*", "X-Auth-*"]
${assertionYaml(setup)}${loginYaml(setup, port)}rate_limits:
  per-subject: { key: subject, limit: 1000000000, window: 1s, mode: ${setup.rateLimitMode ?? 'leased'} }
routes:
  - { name: public, match: { path: /public/** }, upstream: app, auth: none }
  - { name: limited, match: { path: /limited/** }, upstream: app, issuers: [bench], require: { roles: [reader] }, rate_limit: [per-subject] }
  - { name: hs, match: { path: /hs/** }, upstream: app, issuers: [bench-hs] }
  - { name: api, match: { path: /api/** }, upstream: app, issuers: [bench], require: { roles: [reader] } }
  - { name: dpop, match: { path: /dpop/** }, upstream: app, issuers: [bench-dpop], require: { roles: [reader] } }
  - name: cel
    match: { path: "/cel/{tenant}/**" }
    upstream: app
    issuers: [bench]
    require: { expr: '"reader" in identity.roles && params.tenant == "t1"' }
${setup.introspectionUrl ? '  - { name: opaque, match: { path: /opaque/** }, upstream: app, issuers: [opaque] }\n' : ''}${
  setup.signInIssuer ? '  - { name: app, match: { path: /app/** }, upstream: app, login: sign-in, require: { roles: [reader] } }\n' : ''}`;
}

/** Browser sign-in through `signInIssuer`: its issuer entry (the same claim paths as the bench issuer's) and `login`. */
function loginYaml(setup: GatewaySetup, port: number): string {
  if (setup.signInIssuer === undefined) return '';
  return `login:
  external_url: http://127.0.0.1:${port}
  providers:
    sign-in: { issuer: sign-in, client_id: ${SIGN_IN_CLIENT} }
  cookie: { name: ${SESSION_COOKIE} }
`;
}

export const OPAQUE_ISSUER = 'https://opaque.bench.example';

function signInIssuer(setup: GatewaySetup): string {
  if (setup.signInIssuer === undefined) return '';
  return `  sign-in:
    issuer: ${setup.signInIssuer}
    discovery: true
    audiences: [${AUDIENCE}]
    algorithms: [ES256]
    claims: { subject: sub, email: email, roles: roles }
`;
}

function opaqueIssuer(setup: GatewaySetup): string {
  if (setup.introspectionUrl === undefined) return '';
  return `  opaque:
    issuer: ${OPAQUE_ISSUER}
    introspection: { endpoint: ${setup.introspectionUrl}, client_id: bench, client_secret: bench-secret }
    audiences: [${AUDIENCE}]
`;
}

export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export async function waitUntil(what: string, check: () => Promise<boolean>, withinMs = READY_DEADLINE_MS): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** `authgate start` from dist/, as production runs it; ready when /readyz says so. */
export async function startAuthgate(setup: GatewaySetup, cpu: number | undefined, profileDir: string | undefined): Promise<RunningAuthgate> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = join(setup.dir, `gateway-${port}.yaml`);
  await writeFile(file, gatewayYaml(setup, port, adminPort));
  const profile = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const gateway = spawnPinned(cpu, process.execPath, [...profile, join(setup.root, 'bin/authgate.js'), 'start', '-c', file], { cwd: setup.dir });
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const url = `http://127.0.0.1:${port}`;
  await waitUntil('authgate', async () => {
    if (gateway.child.exitCode !== null) throw new Error(`authgate exited with ${gateway.child.exitCode}`);
    return (await fetch(`${adminUrl}/readyz`)).ok;
  });
  // /readyz can answer while the gateway's own listener is still being bound (after the keys, before the port).
  await waitUntil('authgate listener', async () => (await fetch(`${url}/public/hello`)).ok);
  return { url, adminUrl, process: gateway };
}

/** Requests the gateway sent to introspection endpoints so far, from its own metrics. */
export async function introspectionCalls(adminUrl: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return text.split('\n').filter((line) => line.startsWith('authgate_introspection_total{'))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** Token-cache hits and misses so far, from the gateway's own metrics: shows whether a scenario hit the cache. */
export async function tokenCacheCounts(adminUrl: string): Promise<{ hit: number; miss: number }> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const count = (result: string): number => {
    const line = text.split('\n').find((entry) => entry.startsWith(`authgate_token_cache_total{result="${result}"}`));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  };
  return { hit: count('hit'), miss: count('miss') };
}

export async function announcedUrl(spawned: Spawned): Promise<string> {
  return `http://127.0.0.1:${String((await spawned.announcement).port)}`;
}
