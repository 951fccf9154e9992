import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { CHECK_USAGE, runCheck } from './check.js';
import { runDemo } from './demo.js';
import { EXPLAIN_USAGE, runExplain } from './explain.js';
import { configFile, parse, UsageError, type Io } from './io.js';
import { DEFAULT_ADMIN_URL, runRevoke } from './revoke.js';
import { runStart } from './start.js';
import { runToken, TOKEN_USAGE } from './token.js';

const EXIT_CODES = 'Exit codes: 0 ok, 1 invalid config or failed command, 2 usage error (explain: 3 refused).';

const USAGE = `usage:
  authgate start   [-c FILE]
  authgate check   [-c FILE] [--online]
  authgate explain [-c FILE] [--token JWT [--dpop PROOF] | --claims JSON] [-H 'Name: value']... [--json] METHOD URL
  authgate revoke  --jti ID --exp UNIX | --subject SUB [--issuer NAME] [--before UNIX] [--admin URL]
  authgate demo
  authgate token   --key FILE --issuer ISS --audience AUD [--claims JSON] [--ttl 1h] [--kid KID] | --key FILE --jwks
  authgate --version

FILE defaults to $AUTHGATE_CONFIG, then ./gateway.yaml. \`authgate COMMAND --help\` explains a command.
${EXIT_CODES}`;

const COMMAND_USAGE: Readonly<Record<string, string>> = {
  start: `usage: authgate start [-c FILE]

Runs the gateway on FILE ($AUTHGATE_CONFIG, then ./gateway.yaml). Reloads on SIGHUP and when the file changes
(a config that does not load is logged and the running one stays); drains and exits on SIGTERM or SIGINT.`,
  check: CHECK_USAGE,
  explain: EXPLAIN_USAGE,
  token: TOKEN_USAGE,
  revoke: `usage: authgate revoke --jti ID --exp UNIX [--issuer NAME] [--admin URL]
       authgate revoke --subject SUB [--before UNIX] [--issuer NAME] [--admin URL]

Revokes one token (by jti, until it expires) or every token of a subject issued up to --before (default now),
through the admin API at --admin (default ${DEFAULT_ADMIN_URL}) with the token in $AUTHGATE_ADMIN_TOKEN.`,
  demo: `usage: authgate demo

Starts a local development issuer, an echo upstream and the gateway on the bundled gateway.yaml, all on
loopback, and prints tokens for two demo users, ready-to-paste curl lines and a URL to sign in with a browser.
Stops on Ctrl-C.`,
};

/** The bundled demo config, next to package.json whether run from src (tsx) or dist. */
function bundledConfig(): string {
  return fileURLToPath(new URL('../../gateway.yaml', import.meta.url));
}

async function packageVersion(): Promise<string> {
  const text = await readFile(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

const configOption = { config: { type: 'string', short: 'c' } } as const;
const checkOptions = { ...configOption, online: { type: 'boolean' } } as const;

function wantsHelp(args: readonly string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}

/** Returns the exit code, or undefined for a long-running command that exits on a signal. */
export async function main(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr },
  env: NodeJS.ProcessEnv = process.env,
): Promise<number | undefined> {
  const [command, ...rest] = argv;
  const usage = (command !== undefined && COMMAND_USAGE[command]) || USAGE;
  try {
    if (command !== undefined && COMMAND_USAGE[command] !== undefined && wantsHelp(rest)) {
      io.stdout.write(`${usage}\n`);
      return 0;
    }
    return await dispatch(command, rest, io, env);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`authgate: ${err.message}\n${usage}\n`);
      return 2;
    }
    throw err;
  }
}

async function dispatch(command: string | undefined, rest: string[], io: Io, env: NodeJS.ProcessEnv): Promise<number | undefined> {
  switch (command) {
    case 'start':
      return await runStart(configFile(parse(rest, configOption).values.config), io);
    case 'check': {
      const { values } = parse(rest, checkOptions);
      return await runCheck(configFile(values.config), io, { online: values.online ?? false });
    }
    case 'explain':
      return await runExplain(rest, io);
    case 'revoke':
      return await runRevoke(rest, io, env);
    case 'token':
      return await runToken(rest, io, env);
    case 'demo':
      parse(rest, {});
      return startDemo(io);
    case '--version':
      parse(rest, {});
      io.stdout.write(`${await packageVersion()}\n`);
      return 0;
    case '-h':
    case '--help':
    case 'help':
      io.stdout.write(`${USAGE}\n`);
      return 0;
    default:
      throw new UsageError(command ? `unknown command "${command}"` : 'missing command');
  }
}

async function startDemo(io: Io): Promise<undefined> {
  const demo = await runDemo({ configFile: bundledConfig(), stdout: io.stdout });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void demo.close().then(() => process.exit(0)));
  }
  return undefined;
}
