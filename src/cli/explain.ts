import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Context } from '../chain/context.js';
import { decide } from '../chain/run.js';
import type { Verdict } from '../chain/verdict.js';
import { JwtAuthenticator, JwtMechanism, type TokenVerifier } from '../mechanisms/authenticators/jwt/authenticator.js';
import { buildIdentity } from '../mechanisms/authenticators/jwt/claims.js';
import { unknownIssuerDetail } from '../mechanisms/authenticators/jwt/diagnose.js';
import { formatProblem, loadConfig } from '../config/load.js';
import type { GatewayConfig, IssuerConfig, RouteConfig } from '../config/types.js';
import type { Identity } from '../identity/identity.js';
import type { VerifyResult } from '../mechanisms/authenticators/jwt/types.js';
import { registry, type Registry } from '../plan/registry.js';
import { buildRuntime, closeRuntime, startRuntime } from '../server/runtime.js';
import { createLogger } from '../observability/log.js';
import { Metrics } from '../observability/metrics.js';
import { isPlainObject } from '../lib/json.js';
import { explainRules } from '../mechanisms/authorizers/require.js';
import { buildInputs, compileInputs, explainExpression } from '../mechanisms/authorizers/expression.js';
import { createStore } from '../store/index.js';
import { explainLogin, type LoginExplanation } from './explain-login.js';
import { configFile, parse, UsageError, type Io } from './io.js';
import { upstreamBasePath } from '../proxy/forwarder.js';

/** Stands in for the token when --claims skips verification; the dry-run verifier never reads it. */
const DRY_RUN_TOKEN = 'claims-dry-run';
/** The lifetime given to a dry-run identity whose claims carry no `exp`. */
const DRY_RUN_LIFETIME_S = 3600;
/** Exit code of a request the gateway would refuse (0: forwarded, 1: config error, 2: usage error). */
const EXIT_DENIED = 3;

export const EXPLAIN_USAGE = `usage: authgate explain [-c FILE] [--token JWT [--dpop PROOF] | --claims JSON] [-H 'Name: value']... [--json] METHOD URL

Runs one request through the gateway's checks without sending anything upstream: which route matched, every
step with pass/FAIL and the values compared, and the headers the upstream would get. --claims skips the
signature and token checks (a dry run for policy authors); its "iss" picks the issuer (required when several
are configured) and a missing "exp" becomes now + 1h. Without either, the request carries no credential. On a
route with browser sign-in it also says what a browser without a session and an API client without a token get.
--dpop sends the token in the DPoP scheme with PROOF as its DPoP header and shows each proof check (the proof's
htm and htu must name METHOD and URL). --json prints the same as one JSON object.
Exit codes: 0 forwarded, 3 refused, 1 config error, 2 usage error.`;

interface Step {
  readonly stage: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** What `--json` prints; the text output is rendered from the same. */
interface ExplainReport {
  readonly request: { readonly method: string; readonly scheme: 'http' | 'https'; readonly host: string; readonly target: string };
  readonly dryRun: boolean;
  readonly route: string | null;
  readonly steps: readonly Step[];
  readonly rules: readonly { readonly rule: string; readonly ok: boolean; readonly detail: string }[];
  readonly verdict: 'allow' | 'deny';
  /** The status authgate answers with when it refuses; null when the request is forwarded. */
  readonly status: number | null;
  readonly error: string | null;
  readonly reason: string | null;
  readonly upstream: { readonly name: string; readonly path: string } | null;
  readonly upstreamHeaders: Readonly<Record<string, string>>;
  /** On a login route: what requests without credentials get, and where a session's identity comes from. */
  readonly login: LoginExplanation | null;
}

interface ExplainArgs {
  readonly config: string;
  readonly method: string;
  readonly target: { host: string; path: string; proto: 'http' | 'https' };
  readonly token: string | undefined;
  /** The DPoP proof: the token then goes in the DPoP scheme. */
  readonly dpop: string | undefined;
  readonly claims: Record<string, unknown> | undefined;
  readonly headers: readonly string[];
  readonly json: boolean;
}

function parseExplainArgs(argv: string[]): ExplainArgs {
  const { values, positionals } = parse(
    argv,
    {
      config: { type: 'string', short: 'c' },
      token: { type: 'string' },
      dpop: { type: 'string' },
      claims: { type: 'string' },
      header: { type: 'string', multiple: true, short: 'H' },
      json: { type: 'boolean' },
    },
    true,
  );
  const [method, url] = positionals;
  if (!method || !url || positionals.length !== 2) throw new UsageError('explain needs METHOD and URL');
  if (values.token !== undefined && values.claims !== undefined) throw new UsageError('explain takes --token or --claims, not both');
  if (values.dpop !== undefined && values.token === undefined) throw new UsageError('--dpop needs --token: a proof is checked against a real token');
  const target = splitUrl(url);
  if (!target) throw new UsageError(`URL must be absolute (http://host/path) or a path: ${url}`);
  return {
    config: configFile(values.config),
    method: method.toUpperCase(),
    target,
    token: values.token,
    dpop: values.dpop,
    claims: values.claims === undefined ? undefined : parseClaimsArgument(values.claims),
    headers: values.header ?? [],
    json: values.json ?? false,
  };
}

/**
 * `authgate explain`: run one request through the same chain the gateway runs and report every step's verdict
 * and the headers the upstream would get. `--claims` replaces verification with the given payload so policy
 * authors can try rules without minting a token.
 */
export async function runExplain(argv: string[], io: Io): Promise<number> {
  const args = parseExplainArgs(argv);
  const loaded = await loadConfig(args.config);
  if (!loaded.config) {
    for (const problem of loaded.problems) io.stderr.write(`${formatProblem(problem)}\n`);
    return 1;
  }
  const config = loaded.config;
  const steps: Step[] = [];
  const dryRun = args.claims === undefined ? undefined : dryRunVerifier(config, args.claims, steps);
  const logger = createLogger('silent');
  const metrics = new Metrics();
  const store = createStore({ redis: undefined, prefix: config.store.prefix }, config.rateLimits, { logger, metrics });
  // The JWT mechanism verifies with one that attaches the compared values to every refusal, or is the dry run.
  const verifier = dryRun ?? new JwtAuthenticator(config.issuers, { logger, metrics, explain: true });
  // A dry run has no token to introspect; a real token is introspected as the gateway would.
  const jwt = { create: () => new JwtMechanism(verifier, config.issuers) };
  const authenticators: Registry['authenticators'] = dryRun === undefined ? { introspection: registry.authenticators.introspection, jwt } : { jwt };
  const explaining = { ...registry, authenticators };
  const runtime = buildRuntime(config, { logger, metrics, store }, undefined, explaining);
  try {
    await startRuntime(runtime);
    const credentialed = args.token !== undefined || args.claims !== undefined;
    const ctx = requestContext(args, credentialed);
    const verdict = await decide(runtime.head, ctx, (stage, ok, detail) => steps.push({ stage, ok, detail }));
    const route = ctx.plan?.route;
    // The same request without a credential: what a browser without a session and an API client without a token get.
    const bare = route?.login === undefined ? undefined : credentialed ? await decide(runtime.head, requestContext(args, false)) : verdict;
    const login = route === undefined || bare === undefined ? undefined : explainLogin(config, route, `${ctx.path}${ctx.query}`, bare);
    const report = reportOf(args, dryRun !== undefined, steps, ctx, verdict, config, login);
    io.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : renderText(report));
    return verdict.ok ? 0 : EXIT_DENIED;
  } finally {
    closeRuntime(runtime);
    await store.close();
  }
}

/** The request as explained; `credentialed`: with the --token (or the --claims stand-in) as a bearer token. */
function requestContext(args: ExplainArgs, credentialed: boolean): Context {
  const headers: IncomingHttpHeaders = { host: args.target.host };
  for (const line of args.headers) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  if (!credentialed) delete headers.authorization;
  else if (args.dpop === undefined) headers.authorization = `Bearer ${args.token ?? DRY_RUN_TOKEN}`;
  else {
    headers.authorization = `DPoP ${args.token ?? DRY_RUN_TOKEN}`;
    headers.dpop = args.dpop;
  }
  return new Context({
    method: args.method,
    target: args.target.path,
    host: args.target.host,
    headers,
    headersDistinct: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v : [String(v)]])),
    peerIp: '127.0.0.1',
    trustedPeer: false,
    proto: args.target.proto,
    transport: 'request',
    requestId: 'explain',
  });
}

function reportOf(
  args: ExplainArgs,
  dryRun: boolean,
  steps: readonly Step[],
  ctx: Context,
  verdict: Verdict,
  config: GatewayConfig,
  login: LoginExplanation | undefined,
): ExplainReport {
  const route = ctx.plan?.route;
  const rules = route?.require && ctx.identity ? [...explainRules(route.require, ctx.identity), ...expressionLine(route, ctx.identity, ctx, config)] : [];
  return {
    request: { method: args.method, scheme: args.target.proto, host: args.target.host, target: args.target.path },
    dryRun,
    route: route?.name ?? null,
    steps,
    rules,
    verdict: verdict.ok ? 'allow' : 'deny',
    status: verdict.ok ? null : verdict.error.status,
    error: verdict.ok ? null : verdict.error.code,
    reason: verdict.ok ? null : verdict.reason,
    upstream: verdict.ok ? { name: ctx.plan?.upstream ?? '-', path: upstreamPath(config, ctx.plan?.upstream, `${ctx.path}${ctx.query}`) } : null,
    upstreamHeaders: verdict.ok ? headerLines(ctx.upstreamHeaders ?? {}, config.identity.assertion?.header.toLowerCase()) : {},
    login: login ?? null,
  };
}

/** The route's expression, the inputs it read and what it yielded. */
function expressionLine(route: RouteConfig, identity: Identity, ctx: Context, config: GatewayConfig): { rule: string; ok: boolean; detail: string }[] {
  const rule = route.require?.expr;
  if (rule === undefined) return [];
  const built = buildInputs(compileInputs(rule.reads, route.match.path, config), identity, ctx);
  if (!built.ok) return [{ rule: 'expr', ok: false, detail: built.reason }];
  return [{ rule: 'expr', ...explainExpression(rule, built.input) }];
}

/** The path the upstream is asked for: its URL's own path first. */
function upstreamPath(config: GatewayConfig, upstream: string | undefined, pathAndQuery: string): string {
  const url = upstream === undefined ? undefined : config.upstreams.get(upstream)?.url;
  return (url === undefined ? '' : upstreamBasePath(url)) + pathAndQuery;
}

function headerLines(headers: OutgoingHttpHeaders, assertionHeader: string | undefined): Record<string, string> {
  const lines: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    // A fresh id per request: not something the upstream would see as shown here.
    if (name === 'x-request-id' || value === undefined) continue;
    const text = Array.isArray(value) ? value.join(', ') : String(value);
    lines[name] = name === assertionHeader ? unsignedAssertion(text) : text;
  }
  return lines;
}

/**
 * What the assertion says, without its signature: explain signs with the real key (for any `--claims` given), and
 * a pasted printout must not be an assertion an upstream would accept.
 */
function unsignedAssertion(jws: string): string {
  const [header, payload] = jws.split('.');
  const decode = (part: string | undefined): string => Buffer.from(part ?? '', 'base64url').toString('utf8');
  return `${decode(header)}.${decode(payload)} (signed; signature left out)`;
}

function renderText(report: ExplainReport): string {
  const { method, scheme, host, target } = report.request;
  const out = [`${method} ${scheme}://${host}${target}${report.dryRun ? '   (dry run: --claims, signature and token checks skipped)' : ''}`];
  for (const step of report.steps) out.push(`  ${step.ok ? 'pass' : 'FAIL'}  ${step.stage.padEnd(12)} ${step.detail}`);
  if (report.rules.length > 0) out.push('  rules:');
  for (const rule of report.rules) out.push(`    ${rule.ok ? 'pass' : 'FAIL'}  ${rule.rule.padEnd(11)} ${rule.detail}`);
  if (report.login) out.push(...loginLines(report.login));
  if (report.upstream) {
    out.push(`result: forwarded to upstream ${report.upstream.name} as ${report.upstream.path}`, 'upstream headers:');
    for (const [name, value] of Object.entries(report.upstreamHeaders)) out.push(`  ${name}: ${value}`);
  } else {
    out.push(`result: ${report.status} ${report.error} (${report.reason})`);
  }
  return `${out.join('\n')}\n`;
}

function loginLines(login: LoginExplanation): string[] {
  const outcome = ({ status, location, detail }: LoginExplanation['navigation']): string =>
    `${status ?? 'forwarded'}${location === null ? '' : ` → ${location}`} ${detail}`;
  return [
    `  browser sign-in (login: ${login.providers.join(', ')}):`,
    `    a browser navigation without a session: ${outcome(login.navigation)}`,
    `    an API client or script without a token: ${outcome(login.apiClient)}`,
    `    with a session: ${login.session}`,
  ];
}

/**
 * Accepts the claims as given, for the issuer their `iss` names; with one issuer configured `iss` may be left out.
 * A missing `exp` becomes now + 1h (noted as a step), so the identity is one a real token could carry.
 */
function dryRunVerifier(config: GatewayConfig, given: Record<string, unknown>, steps: Step[]): TokenVerifier {
  const issuer = dryRunIssuer(config, given.iss);
  const claims = { ...given };
  if (claims.exp === undefined) {
    claims.exp = Math.floor(Date.now() / 1000) + DRY_RUN_LIFETIME_S;
    steps.push({ stage: 'claims', ok: true, detail: `no exp in --claims: using now + 1h (${new Date(Number(claims.exp) * 1000).toISOString()})` });
  }
  return {
    start: async () => undefined,
    close: () => undefined,
    issuerStatus: () => new Map(),
    verify: async (_token, allowed): Promise<VerifyResult> => {
      if (typeof issuer === 'string') {
        return { ok: false, status: 401, description: 'The access token issuer is not accepted', reason: 'unknown_issuer', detail: issuer };
      }
      if (allowed && !allowed.includes(issuer.name)) {
        const detail = `issuer ${issuer.name} is not among this route's issuers [${allowed.join(', ')}]`;
        return { ok: false, status: 401, description: 'The access token issuer is not accepted', reason: 'issuer_not_allowed', detail };
      }
      return { ok: true, identity: buildIdentity(issuer, claims) };
    },
  };
}

/** The issuer `iss` names, the only one when `iss` is left out, or why there is none (a refusal detail). */
function dryRunIssuer(config: GatewayConfig, iss: unknown): IssuerConfig | string {
  const issuers = [...config.issuers.values()];
  if (iss === undefined) {
    if (issuers.length === 1) return issuers[0] as IssuerConfig;
    if (issuers.length === 0) return 'no issuer is configured';
    const names = issuers.map((i) => JSON.stringify(i.issuer)).join(', ');
    throw new UsageError(`several issuers are configured: add "iss" to --claims naming one of ${names}`);
  }
  return issuers.find((i) => i.issuer === iss) ?? unknownIssuerDetail(iss, issuers.map((i) => i.issuer));
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
