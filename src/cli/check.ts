import { formatProblem, loadConfig } from '../config/load.js';
import { formatHostPort } from '../admin/listen.js';
import { describeRedis } from '../config/redis.js';
import type { GatewayConfig } from '../config/types.js';
import type { Io } from './io.js';

/**
 * `authgate check`: exit 0 with a summary and any warnings on stdout, or exit 1 with one
 * `FILE:LINE:COL: path: message` line per problem on stderr.
 */
export async function runCheck(file: string, out: Io): Promise<number> {
  const { config, problems, warnings } = await loadConfig(file);
  if (config === undefined) {
    for (const problem of problems) out.stderr.write(`${formatProblem(problem)}\n`);
    return 1;
  }
  for (const warning of warnings) out.stdout.write(`${formatProblem({ ...warning, message: `warning: ${warning.message}` })}\n`);
  out.stdout.write(summarize(config));
  return 0;
}

function summarize(config: GatewayConfig): string {
  const names = (map: ReadonlyMap<string, unknown>): string => (map.size === 0 ? '(none)' : [...map.keys()].join(', '));
  const store = config.store.redis === undefined ? 'memory (single instance)' : describeRedis(config.store.redis);
  return [
    `${config.file}: ok`,
    `  listen     ${formatHostPort(config.server.listen.host, config.server.listen.port)}${config.server.tls ? ' (TLS)' : ''}, admin ${formatHostPort(config.admin.listen.host, config.admin.listen.port)}`,
    `  routes     ${config.routes.length}`,
    `  issuers    ${names(config.issuers)}`,
    `  upstreams  ${names(config.upstreams)}`,
    `  store      ${store}`,
    '',
  ].join('\n');
}
