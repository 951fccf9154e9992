import type { IncomingHttpHeaders } from 'node:http';
import { buildIdentity } from '../auth/claims.js';
import { formatProblem, loadConfig } from '../config/load.js';
import type { GatewayConfig, IssuerConfig } from '../config/types.js';
import type { VerifyResult } from '../auth/types.js';
import { decide, type RequestFacts, type Trace } from '../gateway/pipeline.js';
import { buildRuntime, closeRuntime, type Runtime, type TokenVerifier } from '../gateway/runtime.js';
import { createLogger } from '../observability/log.js';
import { Metrics } from '../observability/metrics.js';
import { isPlainObject } from '../lib/json.js';
import { explainRules } from '../policy/rules.js';
import { createStore } from '../store/index.js';
import { configFile, parse, UsageError, type Io } from './io.js';

/** Stands in for the token when --claims skips verification; the dry-run verifier never reads it. */
const DRY_RUN_TOKEN = 'claims-dry-run';

/**
 * `authgate explain`: run one request through the same chain the gateway runs and print every step's verdict
 * and the headers the upstream would get. `--claims` replaces verification with the given payload so policy
 * authors can try rules without minting a token.
 */
export async function runExplain(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      config: { type: 'string', short: 'c' },
      token: { type: 'string' },
      claims: { type: 'string' },
      header: { type: 'string', multiple: true, short: 'H' },
    },
    true,
  );
  const [method, url] = positionals;
  if (!method || !url || positionals.length !== 2) throw new UsageError('explain needs METHOD and URL');
  if ((values.token === undefined) === (values.claims === undefined)) throw new UsageError('explain needs exactly one of --token or --claims');
  const claims = values.claims === undefined ? undefined : parseClaimsArgument(values.claims);
  const target = splitUrl(url);
  if (!target) throw new UsageError(`URL must be absolute (http://host/path) or a path: ${url}`);

  const loaded = await loadConfig(configFile(values.config));
  if (!loaded.config) {
    for (const problem of loaded.problems) io.stderr.write(`${formatProblem(problem)}\n`);
    return 1;
  }
  const config = loaded.config;
  const logger = createLogger('silent');
  const metrics = new Metrics();
  const built = buildRuntime(config, { logger, metrics });
  const runtime: Runtime = claims ? { ...built, authenticator: dryRunVerifier(config, claims) } : built;
  const store = createStore({ redis: undefined, prefix: config.store.prefix }, config.rateLimits, { logger, metrics });
  try {
    if (!claims) await runtime.authenticator.start();
    const headers: IncomingHttpHeaders = { host: target.host };
    for (const line of values.header ?? []) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    headers.authorization = `Bearer ${values.token ?? DRY_RUN_TOKEN}`;
    const facts: RequestFacts = {
      method: method.toUpperCase(),
      target: target.path,
      host: target.host,
      headers,
      headersDistinct: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v : [String(v)]])),
      peerIp: '127.0.0.1',
      trustedPeer: false,
      proto: target.proto,
      upgrade: false,
      requestId: 'explain',
    };
    const out: string[] = [`${facts.method} ${target.host}${target.path}${claims ? '   (dry run: --claims, signature and token checks skipped)' : ''}`];
    const trace: Trace = (stage, ok, detail) => out.push(`  ${ok ? 'pass' : 'FAIL'}  ${stage.padEnd(12)} ${detail}`);
    const decision = await decide(facts, runtime, { store, metrics }, trace);
    if (decision.route?.require && decision.identity) {
      out.push('  rules:');
      for (const rule of explainRules(decision.route.require, decision.identity)) {
        out.push(`    ${rule.ok ? 'pass' : 'FAIL'}  ${rule.rule.padEnd(11)} ${rule.detail}`);
      }
    }
    if (decision.allow) {
      out.push(`result: forwarded to upstream ${decision.route.upstream} as ${decision.path}${decision.query}`, 'upstream headers:');
      for (const [name, value] of Object.entries(decision.upstreamHeaders)) {
        if (name === 'x-request-id') continue;
        out.push(`  ${name}: ${Array.isArray(value) ? value.join(', ') : String(value)}`);
      }
    } else {
      out.push(`result: ${decision.error.status} ${decision.error.code} (${decision.reason})`);
    }
    io.stdout.write(`${out.join('\n')}\n`);
    return 0;
  } finally {
    closeRuntime(runtime);
    await store.close();
  }
}

/** Accepts the claims as given; `iss` picks the issuer (else the first configured one), as verification would. */
function dryRunVerifier(config: GatewayConfig, claims: Record<string, unknown>): TokenVerifier {
  const issuers = [...config.issuers.values()];
  const issuer: IssuerConfig | undefined = issuers.find((i) => i.issuer === claims.iss) ?? issuers[0];
  return {
    start: async () => undefined,
    close: () => undefined,
    issuerStatus: () => new Map(),
    verify: async (_token, allowed): Promise<VerifyResult> => {
      if (!issuer || (allowed && !allowed.includes(issuer.name))) {
        return { ok: false, status: 401, description: 'The access token issuer is not accepted', reason: 'unknown_issuer' };
      }
      return { ok: true, identity: buildIdentity(issuer, claims) };
    },
  };
}

/** `--claims`: a JSON object, or a UsageError (exit 2) saying what is wrong with it. */
function parseClaimsArgument(text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError('--claims is not valid JSON');
  }
  if (!isPlainObject(parsed)) throw new UsageError('--claims must be a JSON object');
  return parsed;
}

/** The request target verbatim (no URL parsing that would resolve dot segments before the normalizer sees them). */
function splitUrl(url: string): { host: string; path: string; proto: 'http' | 'https' } | undefined {
  if (url.startsWith('/')) return { host: 'localhost', path: url, proto: 'http' };
  const match = /^(https?):\/\/([^/?#]+)(.*)$/i.exec(url);
  if (!match) return undefined;
  return { proto: match[1]?.toLowerCase() === 'https' ? 'https' : 'http', host: match[2] ?? '', path: match[3] || '/' };
}
