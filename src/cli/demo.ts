/**
 * `authgate demo` (SPEC §2): a dev issuer, an echo upstream and the gateway on the bundled gateway.yaml, all on
 * loopback, then tokens for two demo users and curl lines that can be pasted as they are.
 *
 * The bundled config reads AUTHGATE_DEMO_ISSUER / AUTHGATE_DEMO_UPSTREAM; the config is loaded with them set to
 * the addresses the demo servers really listen on (port 0 becomes the port the OS picked). The demo never reloads,
 * so the process environment is left as it was.
 */
import type { GatewayConfig } from '../config/types.js';
import { formatProblem, loadConfig } from '../config/load.js';
import { DemoListenError } from '../demo/listen.js';
import { DEV_ISSUER_ENV, startDevIssuer, type DemoUser, type DevIssuer } from '../demo/issuer.js';
import { ECHO_UPSTREAM_ENV, startEchoUpstream, type EchoUpstream } from '../demo/echo.js';
import { startGateway, type RunningGateway } from '../server/listener.js';
import type { Logger } from '../observability/log.js';
import type { TextSink } from './io.js';

export interface RunningDemo {
  readonly gatewayUrl: string;
  readonly adminUrl: string;
  readonly issuerUrl: string;
  readonly upstreamUrl: string;
  /** Access tokens by demo user name (`alice`, `bob`). */
  readonly tokens: Readonly<Record<DemoUserName, string>>;
  close(): Promise<void>;
}

export interface DemoOptions {
  readonly configFile: string;
  readonly stdout: TextSink;
  /** The gateway's logger; by default JSON logs at the config's level on stdout. */
  readonly logger?: Logger;
}

type DemoUserName = 'alice' | 'bob';

const DEMO_ISSUER_NAME = 'demo';
const DEFAULT_ISSUER_URL = 'http://127.0.0.1:9400';
const DEFAULT_UPSTREAM_URL = 'http://127.0.0.1:9401';
const TOKEN_LIFETIME_SECONDS = 12 * 3600;

const USERS: Readonly<Record<DemoUserName, DemoUser>> = {
  alice: { subject: 'alice', email: 'alice@example.com', roles: ['admin', 'user'], permissions: ['read', 'write'] },
  bob: { subject: 'bob', email: 'bob@example.com', roles: ['user'], permissions: ['read'] },
};

interface Example {
  readonly expect: number;
  readonly why: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly user: DemoUserName | undefined;
  readonly body?: string;
}

const EXAMPLES: readonly Example[] = [
  { expect: 200, why: 'public route, no token needed', method: 'GET', path: '/api/public/hello', user: undefined },
  { expect: 401, why: 'protected route, no token', method: 'GET', path: '/api/things', user: undefined },
  { expect: 200, why: 'alice has role admin', method: 'GET', path: '/api/admin/users', user: 'alice' },
  { expect: 403, why: 'bob lacks role admin', method: 'GET', path: '/api/admin/users', user: 'bob' },
  { expect: 200, why: 'alice has permission write', method: 'POST', path: '/api/data', user: 'alice', body: '{"value":42}' },
  { expect: 403, why: 'bob lacks permission write', method: 'POST', path: '/api/data', user: 'bob', body: '{"value":42}' },
];

export async function runDemo(options: DemoOptions): Promise<RunningDemo> {
  const started: Array<{ close(): Promise<void> }> = [];
  const closeAll = async (): Promise<void> => {
    // Last started first: the gateway stops before the upstream and issuer it depends on.
    for (let server = started.pop(); server !== undefined; server = started.pop()) await server.close();
  };
  try {
    const issuer = await startDevIssuer(process.env[DEV_ISSUER_ENV] || DEFAULT_ISSUER_URL);
    started.push(issuer);
    const upstream = await startEchoUpstream(process.env[ECHO_UPSTREAM_ENV] || DEFAULT_UPSTREAM_URL);
    started.push(upstream);
    const config = await loadDemoConfig(options.configFile, {
      ...process.env,
      [DEV_ISSUER_ENV]: issuer.url,
      [ECHO_UPSTREAM_ENV]: upstream.url,
    });
    const { audience, lifetimeSeconds } = demoTokenShape(config, issuer);
    const gateway = await startDemoGateway(config, options.logger);
    started.push(gateway);

    const tokens = {
      alice: await issuer.mint(USERS.alice, { audience, lifetimeSeconds }),
      bob: await issuer.mint(USERS.bob, { audience, lifetimeSeconds }),
    };
    options.stdout.write(banner({ configFile: config.file, lifetimeSeconds, gateway, issuer, upstream, tokens }));
    return {
      gatewayUrl: gateway.url,
      adminUrl: gateway.adminUrl,
      issuerUrl: issuer.url,
      upstreamUrl: upstream.url,
      tokens,
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

async function loadDemoConfig(file: string, env: NodeJS.ProcessEnv): Promise<GatewayConfig> {
  const { config, problems } = await loadConfig(file, env);
  if (config === undefined) {
    throw new Error(`the demo config is invalid:\n${problems.map((p) => `  ${formatProblem(p)}`).join('\n')}`);
  }
  return config;
}

/**
 * Audience and lifetime for the demo tokens. The config's `demo` issuer must be this dev issuer, or no demo
 * token would pass; and a `max_token_age` shorter than 12 h caps the lifetime (longer tokens are refused).
 */
function demoTokenShape(config: GatewayConfig, issuer: DevIssuer): { audience: string; lifetimeSeconds: number } {
  const entry = config.issuers.get(DEMO_ISSUER_NAME);
  const audience = entry?.audiences[0];
  if (entry?.issuer !== issuer.url || audience === undefined) {
    throw new Error(
      `${config.file}: issuers.${DEMO_ISSUER_NAME} must have issuer \${${DEV_ISSUER_ENV}} (${issuer.url}) and an audience; ` +
        `the demo tokens would be refused otherwise`,
    );
  }
  const maxAgeSeconds = entry.maxTokenAgeMs === undefined ? Infinity : Math.floor(entry.maxTokenAgeMs / 1000);
  return { audience, lifetimeSeconds: Math.min(TOKEN_LIFETIME_SECONDS, maxAgeSeconds) };
}

async function startDemoGateway(config: GatewayConfig, logger: Logger | undefined): Promise<RunningGateway> {
  try {
    return await startGateway(config, logger === undefined ? {} : { logger });
  } catch (error) {
    const { code, port } = error as NodeJS.ErrnoException & { port?: number };
    if (code !== 'EADDRINUSE' && code !== 'EACCES') throw error;
    const [what, envVar, listen] =
      port === config.admin.listen.port
        ? ['admin listener', 'AUTHGATE_ADMIN_LISTEN', config.admin.listen]
        : ['gateway', 'AUTHGATE_LISTEN', config.server.listen];
    throw new DemoListenError(
      `${what}: cannot listen on ${listen.host}:${listen.port} (${code}); ` +
        `set ${envVar} to use another port, e.g. ${envVar}=${listen.host}:${listen.port + 100}`,
    );
  }
}

function curlLine(gatewayUrl: string, example: Example, tokens: Readonly<Record<DemoUserName, string>>): string {
  const parts = ['curl -sS -i'];
  if (example.method !== 'GET') parts.push(`-X ${example.method}`);
  if (example.user !== undefined) parts.push(`-H 'Authorization: Bearer ${tokens[example.user]}'`);
  if (example.body !== undefined) parts.push(`-H 'Content-Type: application/json' -d '${example.body}'`);
  parts.push(`${gatewayUrl}${example.path}`);
  return parts.join(' ');
}

function banner(running: {
  configFile: string;
  lifetimeSeconds: number;
  gateway: RunningGateway;
  issuer: DevIssuer;
  upstream: EchoUpstream;
  tokens: Readonly<Record<DemoUserName, string>>;
}): string {
  const { configFile, lifetimeSeconds, gateway, issuer, upstream, tokens } = running;
  const users = (Object.keys(USERS) as DemoUserName[]).map((name) => {
    const user = USERS[name];
    return [
      `  ${name}: roles [${user.roles.join(', ')}], permissions [${user.permissions.join(', ')}]`,
      `  ${name.toUpperCase()}_TOKEN=${tokens[name]}`,
    ].join('\n');
  });
  const examples = EXAMPLES.map((example) => {
    const who = example.user ?? 'anonymous';
    return `# ${example.expect}: ${example.method} ${example.path} as ${who} (${example.why})\n${curlLine(gateway.url, example, tokens)}`;
  });
  return [
    'authgate demo is running. Stop it with Ctrl-C.',
    '',
    `  gateway        ${gateway.url}`,
    `  admin          ${gateway.adminUrl}  (/healthz, /readyz, /metrics)`,
    `  dev issuer     ${issuer.url}  (${issuer.discoveryUrl})`,
    `  echo upstream  ${upstream.url}  (answers with the request it received)`,
    '',
    `Access tokens (RS256, typ at+jwt, audience from the config, valid ${formatLifetime(lifetimeSeconds)}):`,
    ...users,
    '',
    'Try these (each line works on its own):',
    ...examples,
    '',
    `Routes and rules: ${configFile}. WebSocket: ${gateway.url.replace(/^http/, 'ws')}/ws (token required).`,
    '',
  ].join('\n');
}

function formatLifetime(seconds: number): string {
  return seconds % 3600 === 0 ? `${seconds / 3600}h` : seconds % 60 === 0 ? `${seconds / 60}m` : `${seconds}s`;
}
