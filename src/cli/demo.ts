/**
 * `authgate demo`: a dev issuer, an echo upstream and the gateway on the bundled gateway.yaml, all on loopback,
 * then tokens for two demo users, curl lines that can be pasted as they are, and a URL to sign in with a browser.
 *
 * The bundled config reads AUTHGATE_DEMO_ISSUER / AUTHGATE_DEMO_UPSTREAM (and AUTHGATE_EXTERNAL_URL, see
 * `browserSignIn`); the config is loaded with them set to the addresses the demo servers really listen on (port 0
 * becomes the port the OS picked). The process environment is left as it was.
 */
import type { LoginConfig } from '../config/login.js';
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
  /** Where to sign in with a browser, when the config has browser sign-in through the dev issuer. */
  readonly browser: BrowserSignIn | undefined;
  close(): Promise<void>;
}

export interface BrowserSignIn {
  /** A login route anyone signed in may open. */
  readonly appUrl: string;
  /** A login route that needs role admin (alice has it, bob has not). */
  readonly adminUrl: string;
  readonly signOutUrl: string;
}

export interface DemoOptions {
  readonly configFile: string;
  readonly stdout: TextSink;
  /** The gateway's logger; by default JSON logs at the config's level on stdout. */
  readonly logger?: Logger;
}

type DemoUserName = 'alice' | 'bob';

const DEMO_ISSUER_NAME = 'demo';
/** Where browsers reach the gateway (login.external_url in the bundled config). */
const EXTERNAL_URL_ENV = 'AUTHGATE_EXTERNAL_URL';
const APP_PATH = '/app/';
const ADMIN_PATH = '/app/admin/';
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
    const issuer = await startDevIssuer(process.env[DEV_ISSUER_ENV] || DEFAULT_ISSUER_URL, USERS);
    started.push(issuer);
    const upstream = await startEchoUpstream(process.env[ECHO_UPSTREAM_ENV] || DEFAULT_UPSTREAM_URL);
    started.push(upstream);
    const env = { ...process.env, [DEV_ISSUER_ENV]: issuer.url, [ECHO_UPSTREAM_ENV]: upstream.url };
    const config = await loadDemoConfig(options.configFile, env);
    const { audience, lifetimeSeconds } = demoTokenShape(config, issuer);
    const gateway = await startDemoGateway(config, options.logger);
    started.push(gateway);
    const browser = await browserSignIn({ configFile: options.configFile, env, config, gateway, issuer, audience });

    const tokens = {
      alice: await issuer.mint(USERS.alice, { audience, lifetimeSeconds }),
      bob: await issuer.mint(USERS.bob, { audience, lifetimeSeconds }),
    };
    options.stdout.write(banner({ configFile: config.file, lifetimeSeconds, gateway, issuer, upstream, tokens, browser }));
    return {
      gatewayUrl: gateway.url,
      adminUrl: gateway.adminUrl,
      issuerUrl: issuer.url,
      upstreamUrl: upstream.url,
      tokens,
      browser,
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

/**
 * Browser sign-in works only where login.external_url is where browsers really reach the gateway. Unless the user
 * set AUTHGATE_EXTERNAL_URL, it becomes the URL the gateway listens on (a port 0 is only known once it listens: the
 * config is then loaded again and applied as a reload). The demo provider's client is then registered at the dev
 * issuer with the gateway's callback. Undefined when the config signs no one in through the dev issuer.
 */
async function browserSignIn(demo: {
  configFile: string;
  env: NodeJS.ProcessEnv;
  config: GatewayConfig;
  gateway: RunningGateway;
  issuer: DevIssuer;
  audience: string;
}): Promise<BrowserSignIn | undefined> {
  let { config } = demo;
  const provider = [...(config.login?.providers.values() ?? [])].find((entry) => entry.issuer === DEMO_ISSUER_NAME);
  if (config.login === undefined || provider === undefined) return undefined;
  const listening = loopbackOrigin(demo.gateway.url);
  if (!demo.env[EXTERNAL_URL_ENV] && config.login.externalUrl.origin !== listening) {
    config = await loadDemoConfig(demo.configFile, { ...demo.env, [EXTERNAL_URL_ENV]: listening });
    await demo.gateway.reload(config);
  }
  const prefix = config.server.reservedPrefix;
  const external = (config.login as LoginConfig).externalUrl;
  demo.issuer.registerClient({ clientId: provider.clientId, redirectUris: [new URL(`${prefix}/callback`, external).href], audience: demo.audience });
  const at = (path: string): string => new URL(path, external).href;
  return { appUrl: at(APP_PATH), adminUrl: at(ADMIN_PATH), signOutUrl: at(`${prefix}/sign_out?rd=${APP_PATH}`) };
}

/** The gateway's URL as a browser on this machine reaches it: a listener on every address answers on loopback. */
function loopbackOrigin(gatewayUrl: string): string {
  const url = new URL(gatewayUrl);
  if (url.hostname === '0.0.0.0') url.hostname = '127.0.0.1';
  else if (url.hostname === '[::]') url.hostname = '[::1]';
  return url.origin;
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
  browser: BrowserSignIn | undefined;
}): string {
  const { configFile, lifetimeSeconds, gateway, issuer, upstream, tokens, browser } = running;
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
    ...(browser === undefined ? [] : browserLines(browser)),
    `Routes and rules: ${configFile}. WebSocket: ${gateway.url.replace(/^http/, 'ws')}/ws (token required).`,
    '',
  ].join('\n');
}

function browserLines(browser: BrowserSignIn): string[] {
  return [
    `Sign in with a browser (pick alice or bob; no passwords): ${browser.appUrl}`,
    '  the echo upstream shows what it received: the identity headers, never the session cookie',
    `  ${browser.adminUrl} needs role admin: alice passes, bob gets a 403 page`,
    `  sign out: ${browser.signOutUrl}`,
    '',
  ];
}

function formatLifetime(seconds: number): string {
  return seconds % 3600 === 0 ? `${seconds / 3600}h` : seconds % 60 === 0 ? `${seconds / 60}m` : `${seconds}s`;
}
