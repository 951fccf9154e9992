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
import { buildUpstreamHeaders, headerPolicyOf, type HeaderPolicy } from '../finalizers/header-hygiene.js';

const PASS: Authorization = Object.freeze({ ok: true });
const NOTHING: Readonly<Record<string, never>> = Object.freeze({});
const NO_ENTRIES: ReadonlyMap<string, never> = new Map<string, never>();
/** What an expression that never reads `request` (or `now`) is given: nothing of the request is built for it. */
const UNREAD_REQUEST: ExpressionInput['request'] = Object.freeze({ method: '', host: '', path: '', query: NO_ENTRIES, headers: NO_ENTRIES });
/**
 * Query values or headers an expression is handed at most. A macro may hold a whole list in its body
 * (`ids.all(i, i in ids + ids)`), which costs the square of its size: bounded here, one request cannot pin the
 * event loop; a request with more is denied.
 */
export const MAX_EXPRESSION_ENTRIES = 256;

class TooLargeForExpression extends Error {}
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

function queryRecord(query: string): Map<string, string[]> {
  const lists = new Map<string, string[]>();
  let count = 0;
  for (const [name, value] of new URLSearchParams(query)) {
    if (++count > MAX_EXPRESSION_ENTRIES) throw new TooLargeForExpression(`more than ${MAX_EXPRESSION_ENTRIES} query values`);
    const list = lists.get(name);
    if (list === undefined) lists.set(name, [value]);
    else list.push(value);
  }
  return lists;
}

/** The headers the upstream would get (the client's, after stripping), one string per name. */
function headerRecord(ctx: RequestContext, policy: HeaderPolicy): Map<string, string> {
  const built = buildUpstreamHeaders(ctx.headers, policy, { ...ctx, forwardToken: false });
  const headers = new Map<string, string>();
  for (const name in built) {
    const value = built[name];
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : String(value));
  }
  if (headers.size > MAX_EXPRESSION_ENTRIES) throw new TooLargeForExpression(`more than ${MAX_EXPRESSION_ENTRIES} headers`);
  return headers;
}

export function compileInputs(reads: readonly InputPath[], routePath: string, config: GatewayConfig): InputBuilder {
  const readsInput = (variable: string, field?: string): boolean =>
    reads.some((path) => path[0] === variable && (field === undefined || path.length === 1 || path[1] === field));
  const pattern = parsePathPattern(routePath, config.server.pathCase);
  const params: ((path: string) => Params) | undefined = typeof pattern === 'string' || !readsInput('params') ? undefined : compileParams(pattern);
  const policy = readsInput('request', 'headers') ? headerPolicyOf(config) : undefined;
  const query = readsInput('request', 'query');
  const request = readsInput('request');
  const now = readsInput('now');
  const identityFields = readsInput('identity');
  // An upstream that ignores case serves /e/ADMIN as /e/admin: a rule on the path must see it as the routes do.
  const pathFor = config.server.pathCase === 'insensitive' ? (path: string) => path.toLowerCase() : (path: string) => path;
  return (identity, ctx) => ({
    claims: identity.claims,
    identity: identityFields ? identityRecord(identity) : NOTHING,
    request: request
      ? {
          method: ctx.method,
          host: ctx.host,
          path: pathFor(ctx.path),
          query: query ? queryRecord(ctx.query) : NO_ENTRIES,
          headers: policy ? headerRecord(ctx, policy) : NO_ENTRIES,
        }
      : UNREAD_REQUEST,
    params: params ? params(ctx.path) : NOTHING,
    now: now ? new Date() : UNREAD_NOW,
  });
}

/** The inputs of one request, or why it is too large to be handed to an expression. */
export function buildInputs(inputs: InputBuilder, identity: Identity, ctx: RequestContext): { ok: true; input: ExpressionInput } | { ok: false; reason: string } {
  try {
    return { ok: true, input: inputs(identity, ctx) };
  } catch (error) {
    if (!(error instanceof TooLargeForExpression)) throw error;
    return { ok: false, reason: `the request is too large for the expression: ${error.message}` };
  }
}

/** A Map written as the object it stands for (JSON.stringify writes every Map as `{}`). */
function mapsAsObjects(_key: string, value: unknown): unknown {
  return value instanceof Map ? Object.fromEntries(value) : value;
}

/** `authgate explain`'s line: the expression, every input it read with its value, and the result. */
export function explainExpression(rule: ExpressionRule, input: ExpressionInput): { ok: boolean; detail: string } {
  const verdict = rule.evaluate(input);
  const inputs = rule.reads.map((path) => `${path.join('.')} = ${JSON.stringify(readInput(input, path), mapsAsObjects) ?? 'nothing'}`);
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
            const built = buildInputs(inputs, identity, ctx);
            if (!built.ok) return { ok: false, rule: 'expr', reason: built.reason };
            const verdict = rule.evaluate(built.input);
            return verdict.allowed ? PASS : { ok: false, rule: 'expr', reason: verdict.reason };
          },
        };
      },
    };
  },
};
