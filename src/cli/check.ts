import { DEFAULT_FETCH_LIMITS } from '../http/json-request.js';
import { isKeyed, IssuerKeySet, type KeyedIssuer } from '../mechanisms/authenticators/jwt/key-set.js';
import { formatProblem, loadConfig, type ConfigProblem, type LoadResult } from '../config/load.js';
import { formatHostPort } from '../lib/listen.js';
import { describeRedis } from '../config/redis.js';
import type { GatewayConfig, IssuerConfig } from '../config/types.js';
import { createLogger } from '../observability/log.js';
import { Metrics } from '../observability/metrics.js';
import type { Io } from './io.js';

export const CHECK_USAGE = `usage: authgate check [-c FILE] [--online]

Validates the config: exit 0 with a summary (and any warnings), or exit 1 with one FILE:LINE:COL: key: message
line per problem. A jwks_file is loaded as the gateway would load it. --online also loads every other issuer's
keys as the gateway would (discovery document and JWKS,
same time and size limits) and reports an issuer whose discovery document names another issuer, whose JWKS
has no key usable for its algorithms, or that cannot be reached.`;

/**
 * `authgate check`: exit 0 with a summary and any warnings on stdout, or exit 1 with one
 * `FILE:LINE:COL: path: message` line per problem on stderr.
 */
export async function runCheck(file: string, out: Io, options: { online?: boolean } = {}): Promise<number> {
  const loaded = await loadConfig(file);
  const { config } = loaded;
  if (config === undefined) {
    for (const problem of loaded.problems) out.stderr.write(`${formatProblem(problem)}\n`);
    return 1;
  }
  // A local jwks_file is read offline too: a file that is no JWK Set would leave the gateway never ready.
  const findings = await checkIssuerKeys(config, loaded, (issuer) => options.online === true || issuer.keys.kind === 'jwks_file');
  for (const warning of [...loaded.warnings, ...findings.warnings]) {
    out.stdout.write(`${formatProblem({ ...warning, message: `warning: ${warning.message}` })}\n`);
  }
  if (findings.problems.length > 0) {
    for (const problem of findings.problems) out.stderr.write(`${formatProblem(problem)}\n`);
    return 1;
  }
  out.stdout.write(summarize(config));
  if (options.online) out.stdout.write(`online: keys loaded for ${keyedIssuerNames(config) || '(no issuer with keys to load)'}\n`);
  return 0;
}

/** The issuers whose keys come from a JWKS or discovery document, which `--online` loads. */
function keyedIssuerNames(config: GatewayConfig): string {
  return [...config.issuers.values()].filter(isKeyed).map((issuer) => issuer.name).join(', ');
}

interface Findings {
  readonly problems: ConfigProblem[];
  readonly warnings: ConfigProblem[];
}

/**
 * Loads the keys of each issuer `wanted` picks with the gateway's own key-set code (so the same limits and rules
 * apply) and turns what went wrong into findings at the issuer's entry.
 */
async function checkIssuerKeys(config: GatewayConfig, loaded: LoadResult, wanted: (issuer: KeyedIssuer) => boolean): Promise<Findings> {
  const findings: Findings = { problems: [], warnings: [] };
  const deps = { logger: createLogger('silent'), metrics: new Metrics(), now: Date.now, fetchLimits: DEFAULT_FETCH_LIMITS };
  await Promise.all(
    [...config.issuers.values()].filter(isKeyed).filter(wanted).map(async (issuer) => {
      const site = loaded.issuerSites?.get(issuer.name) ?? { file: config.file, line: 1, col: 1, path: `issuers.${issuer.name}` };
      const keys = new IssuerKeySet(issuer, deps);
      try {
        await keys.start();
        const { error } = keys.status();
        if (error !== undefined) findings.problems.push({ ...site, message: error });
        else for (const alg of unpublished(issuer, keys)) findings.warnings.push({ ...site, message: `no published key can verify ${alg}` });
      } finally {
        keys.release();
      }
    }),
  );
  return findings;
}

/** Allowed algorithms no loaded key can verify (tokens signed with them would always be refused). */
function unpublished(issuer: IssuerConfig, keys: IssuerKeySet): string[] {
  const usable = new Set(keys.algorithmsWithKeys());
  return issuer.algorithms.filter((alg) => !usable.has(alg));
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
