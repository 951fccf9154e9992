/**
 * Route `require.expr`: a CEL expression over the caller and the request. The expression was compiled when the
 * config loaded; per request only the inputs it reads are built (a rule on `claims` never parses the query or
 * copies the headers), and anything but `true` denies.
 */
import type { GatewayConfig } from '../../config/types.js';
import type { ExpressionInput, ExpressionRule, InputPath } from '../../expressions/cel.js';
import { readInput } from '../../expressions/cel.js';
import type { Identity } from '../../identity/identity.js';
import { compileParams, parsePathPattern, type Params } from '../../routing/path-pattern.js';
import type { Authorization, Authorizer, MechanismType, RequestContext } from '../../chain/kinds.js';
import { buildUpstreamHeaders, compileHeaderPolicy, type HeaderPolicy } from '../finalizers/header-hygiene.js';

const PASS: Authorization = Object.freeze({ ok: true });
const NOTHING: Readonly<Record<string, never>> = Object.freeze({});
/** What an expression that never reads `request` (or `now`) is given: nothing of the request is built for it. */
const UNREAD_REQUEST: ExpressionInput['request'] = Object.freeze({ method: '', host: '', path: '', query: NOTHING, headers: NOTHING });
const UNREAD_NOW = new Date(0);

/** Builds the inputs of one expression on one route; what the expression does not read stays empty. */
export type InputBuilder = (identity: Identity, ctx: RequestContext) => ExpressionInput;

/** The identity fields an expression sees, built once per identity: a cached identity serves many requests. */
const identityRecords = new WeakMap<Identity, Readonly<Record<string, unknown>>>();

function identityRecord(identity: Identity): Readonly<Record<string, unknown>> {
  let record = identityRecords.get(identity);
  if (record === undefined) {
    const fields: Record<string, unknown> = {
      roles: identity.roles,
      permissions: identity.permissions,
      scopes: identity.scopes,
      issuer: identity.issuer.issuer,
      issuer_name: identity.issuer.name,
    };
    // Absent fields stay absent, so `has(identity.email)` tells whether the caller has one.
    if (identity.subject !== undefined) fields.subject = identity.subject;
    if (identity.email !== undefined) fields.email = identity.email;
    if (identity.clientId !== undefined) fields.client_id = identity.clientId;
    record = Object.freeze(fields);
    identityRecords.set(identity, record);
  }
  return record;
}

function queryRecord(query: string): Record<string, string[]> {
  const lists: Record<string, string[]> = {};
  for (const [name, value] of new URLSearchParams(query)) (lists[name] ??= []).push(value);
  return lists;
}

/** The headers the upstream would get (the client's, after stripping), one string per name. */
function headerRecord(ctx: RequestContext, policy: HeaderPolicy): Record<string, string> {
  const built = buildUpstreamHeaders(ctx.headers, policy, { ...ctx, forwardToken: false });
  const headers: Record<string, string> = {};
  for (const name in built) {
    const value = built[name];
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  return headers;
}

export function compileInputs(reads: readonly InputPath[], routePath: string, config: GatewayConfig): InputBuilder {
  const readsInput = (variable: string, field?: string): boolean =>
    reads.some((path) => path[0] === variable && (field === undefined || path.length === 1 || path[1] === field));
  const pattern = parsePathPattern(routePath, config.server.pathCase);
  const params: ((path: string) => Params) | undefined = typeof pattern === 'string' || !readsInput('params') ? undefined : compileParams(pattern);
  const policy = readsInput('request', 'headers') ? compileHeaderPolicy({ identity: config.identity, tokenSources: config.tokens }) : undefined;
  const query = readsInput('request', 'query');
  const request = readsInput('request');
  const now = readsInput('now');
  const identityFields = readsInput('identity');
  return (identity, ctx) => ({
    claims: identity.claims,
    identity: identityFields ? identityRecord(identity) : NOTHING,
    request: request
      ? {
          method: ctx.method,
          host: ctx.host,
          path: ctx.path,
          query: query ? queryRecord(ctx.query) : NOTHING,
          headers: policy ? headerRecord(ctx, policy) : NOTHING,
        }
      : UNREAD_REQUEST,
    params: params ? params(ctx.path) : NOTHING,
    now: now ? new Date() : UNREAD_NOW,
  });
}

/** `authgate explain`'s line: the expression, every input it read with its value, and the result. */
export function explainExpression(rule: ExpressionRule, input: ExpressionInput): { ok: boolean; detail: string } {
  const verdict = rule.evaluate(input);
  const inputs = rule.reads.map((path) => `${path.join('.')} = ${JSON.stringify(readInput(input, path)) ?? 'nothing'}`);
  const result = verdict.allowed ? 'true' : verdict.reason;
  return { ok: verdict.allowed, detail: `${rule.source}; read ${inputs.length > 0 ? inputs.join(', ') : 'nothing'} → ${result}` };
}

/** The registry's `expr`: a route's `require.expr`, with its inputs compiled once per route. */
export const expressionRules: MechanismType<Authorizer> = {
  create({ config }) {
    return {
      forRoute(route) {
        const rule = route.require?.expr;
        if (rule === undefined) return undefined;
        const inputs = compileInputs(rule.reads, route.match.path, config);
        return {
          authorize(identity, ctx) {
            const verdict = rule.evaluate(inputs(identity, ctx));
            return verdict.allowed ? PASS : { ok: false, rule: 'expr', reason: verdict.reason };
          },
        };
      },
    };
  },
};
