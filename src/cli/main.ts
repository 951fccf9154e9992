import { fileURLToPath } from 'node:url';
import { runCheck } from './check.js';
import { runDemo } from './demo.js';
import { runExplain } from './explain.js';
import { configFile, parse, UsageError, type Io } from './io.js';
import { DEFAULT_ADMIN_URL, runRevoke } from './revoke.js';
import { runStart } from './start.js';
import { runToken } from './token.js';

const USAGE = `usage:
  authgate start   [-c FILE]
  authgate check   [-c FILE]
  authgate explain [-c FILE] (--token JWT | --claims JSON) METHOD URL
  authgate revoke  --jti ID --exp UNIX | --subject SUB [--issuer NAME] [--before UNIX] [--admin URL]
  authgate demo
  authgate token   --key FILE --issuer ISS --audience AUD [--claims JSON] [--ttl 1h] [--kid KID]

FILE defaults to $AUTHGATE_CONFIG, then ./gateway.yaml. revoke reads the admin token from $AUTHGATE_ADMIN_TOKEN;
--admin defaults to ${DEFAULT_ADMIN_URL}. Exit codes: 0 ok, 1 invalid config or failed command, 2 usage.`;

/** The bundled demo config, next to package.json whether run from src (tsx) or dist. */
function bundledConfig(): string {
  return fileURLToPath(new URL('../../gateway.yaml', import.meta.url));
}

const configOption = { config: { type: 'string', short: 'c' } } as const;

/** Returns the exit code, or undefined for a long-running command that exits on a signal. */
export async function main(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr },
  env: NodeJS.ProcessEnv = process.env,
): Promise<number | undefined> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'start':
        return await runStart(configFile(parse(rest, configOption).values.config), io);
      case 'check':
        return await runCheck(configFile(parse(rest, configOption).values.config), io);
      case 'explain':
        return await runExplain(rest, io);
      case 'revoke':
        return await runRevoke(rest, io, env);
      case 'token':
        return await runToken(rest, io, env);
      case 'demo': {
        parse(rest, {});
        const demo = await runDemo({ configFile: bundledConfig(), stdout: io.stdout });
        for (const signal of ['SIGINT', 'SIGTERM'] as const) {
          process.once(signal, () => void demo.close().then(() => process.exit(0)));
        }
        return undefined;
      }
      case '-h':
      case '--help':
      case 'help':
        io.stdout.write(`${USAGE}\n`);
        return 0;
      default:
        throw new UsageError(command ? `unknown command "${command}"` : 'missing command');
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`authgate: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }
}
