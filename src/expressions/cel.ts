/**
 * Expression rules in the Common Expression Language, compiled once when the config loads and evaluated per
 * request. The rule is fail-closed: only a result that is exactly boolean `true` allows; any other value or any
 * evaluation error (a missing claim, a type mismatch) denies with a reason.
 *
 * Cost is bounded at compile time. CEL has no loops or recursion; the only iteration is the comprehension macros
 * (`all`, `exists`, `exists_one`, `map`, `filter`) over lists and maps that come from the request or the token,
 * whose size the gateway already caps (header and token limits). So the work of one evaluation is at most
 * (AST nodes) × (input size)^(macro nesting): we cap the source length, the AST size and depth, literal sizes, and
 * refuse a macro inside another macro. A macro's body may still hold a whole list (`ids.all(i, i in ids)`), which
 * costs the square of its size: the request inputs an expression is handed are capped for that
 * (MAX_EXPRESSION_ENTRIES in mechanisms/authorizers/expression.ts). `matches()` is refused: this
 * library compiles a backtracking JavaScript RegExp on every call, a denial-of-service risk on request input.
 */
import { Environment, type ASTNode } from '@marcbachmann/cel-js';

export const EXPRESSION_LIMITS = {
  /** Characters of source. */
  maxLength: 2048,
  maxAstNodes: 256,
  maxDepth: 24,
  maxListElements: 64,
  maxMapEntries: 64,
  maxCallArguments: 8,
} as const;

const MACROS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);
const REFUSED_FUNCTIONS: ReadonlyMap<string, string> = new Map([
  ['matches', 'matches() is not available (a backtracking regular expression on request input); use startsWith, endsWith or contains'],
]);

/** What an expression can read; built by the caller per request. */
export interface ExpressionInput {
  readonly claims: Readonly<Record<string, unknown>>;
  /** The identity fields (`subject`, `email`, `roles`…). */
  readonly identity: Readonly<Record<string, unknown>>;
  readonly request: {
    readonly method: string;
    readonly host: string;
    /** Normalized. */
    readonly path: string;
    /** Maps, not objects: a parameter or header called `constructor` must stay a name, never the value's type. */
    readonly query: ReadonlyMap<string, readonly string[]>;
    /** Lower-case names. */
    readonly headers: ReadonlyMap<string, string>;
  };
  readonly params: Readonly<Record<string, string>>;
  readonly now: Date;
}

export type Verdict = { readonly allowed: true } | { readonly allowed: false; readonly reason: string };

/** An input an expression reads: `['claims', 'tenant']`, `['request', 'headers', 'x-team']`, `['now']`. */
export type InputPath = readonly string[];

export interface ExpressionRule {
  readonly ok: true;
  readonly source: string;
  /** Every input the expression can read, outermost access only, in source order, without repeats. */
  readonly reads: readonly InputPath[];
  evaluate(input: ExpressionInput): Verdict;
}

export type CompiledExpression =
  | ExpressionRule
  | { readonly ok: false; readonly message: string; /** 0-based character offset inside the source. */ readonly offset: number };

const environment = new Environment({
  homogeneousAggregateLiterals: true,
  limits: {
    maxAstNodes: EXPRESSION_LIMITS.maxAstNodes,
    maxDepth: EXPRESSION_LIMITS.maxDepth,
    maxListElements: EXPRESSION_LIMITS.maxListElements,
    maxMapEntries: EXPRESSION_LIMITS.maxMapEntries,
    maxCallArguments: EXPRESSION_LIMITS.maxCallArguments,
  },
})
  .registerVariable('claims', 'map<string, dyn>')
  .registerVariable('identity', 'map<string, dyn>')
  .registerVariable('request', 'map<string, dyn>')
  .registerVariable('params', 'map<string, string>')
  .registerVariable('now', 'google.protobuf.Timestamp');

interface CelErrorShape {
  readonly summary?: string;
  readonly message: string;
  readonly range?: { readonly start: number };
}

function failure(error: CelErrorShape): { ok: false; message: string; offset: number } {
  return { ok: false, message: error.summary ?? error.message, offset: error.range?.start ?? 0 };
}

export function compileExpression(source: string): CompiledExpression {
  if (source.length > EXPRESSION_LIMITS.maxLength) {
    return { ok: false, message: `the expression is ${source.length} characters; at most ${EXPRESSION_LIMITS.maxLength} are allowed`, offset: EXPRESSION_LIMITS.maxLength };
  }
  let program: ReturnType<Environment['parse']>;
  try {
    program = environment.parse(source);
  } catch (error) {
    return failure(error as CelErrorShape);
  }
  const refused = refusedConstruct(program.ast, 0);
  if (refused !== undefined) return { ok: false, ...refused };
  const checked = program.check();
  if (!checked.valid) return failure(checked.error as CelErrorShape);
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    return { ok: false, message: `the expression yields ${checked.type}; a rule must yield bool`, offset: 0 };
  }
  return { ok: true, source, reads: inputsRead(program.ast), evaluate: (input) => verdict(() => program(input as unknown as Record<string, unknown>)) };
}

const VARIABLES = new Set(['claims', 'identity', 'request', 'params', 'now']);

/** The variable accesses of the AST (`claims.org.id`, `request.headers["x-team"]`): what to build and to explain. */
function inputsRead(root: ASTNode): InputPath[] {
  const found = new Map<string, InputPath>();
  const visit = (node: ASTNode): void => {
    const path = accessPath(node);
    if (path !== undefined) {
      if (VARIABLES.has(path[0] as string)) found.set(path.join('\u0000'), path);
      return;
    }
    for (const child of children(node)) visit(child);
  };
  visit(root);
  return [...found.values()];
}

/** `a.b["c"]` as ['a', 'b', 'c']; undefined when the node is no plain access chain from an identifier. */
function accessPath(node: ASTNode): string[] | undefined {
  if (node.op === 'id') return typeof node.args === 'string' ? [node.args] : undefined;
  if (node.op !== '.' && node.op !== '[]') return undefined;
  const [target, key] = node.args as [ASTNode, unknown];
  if (node.op === '.' && typeof key === 'string') return accessPath(target)?.concat(key);
  const literal = key as ASTNode | undefined;
  if (node.op === '[]' && literal?.op === 'value' && typeof literal.args === 'string') return accessPath(target)?.concat(literal.args);
  return undefined;
}

/** The value at `path` in `input`, for `explain`; undefined where nothing is. */
export function readInput(input: ExpressionInput, path: InputPath): unknown {
  let value: unknown = input;
  for (const key of path) {
    if (value instanceof Map) value = value.get(key);
    else value = typeof value === 'object' && value !== null && Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined;
  }
  return value;
}

function verdict(run: () => unknown): Verdict {
  let result: unknown;
  try {
    result = run();
  } catch (error) {
    return { allowed: false, reason: `expression error: ${(error as CelErrorShape).summary ?? (error as Error).message}` };
  }
  if (result === true) return { allowed: true };
  return { allowed: false, reason: result === false ? 'expression is false' : `expression yielded ${describe(result)}, not true` };
}

function describe(value: unknown): string {
  if (typeof value === 'bigint') return `int ${value}`;
  if (typeof value === 'string') return 'a string';
  if (Array.isArray(value)) return 'a list';
  return value === null ? 'null' : typeof value;
}

/** A macro nested in another macro, or a refused function: the first one found, with its offset. */
function refusedConstruct(node: ASTNode, macroDepth: number): { message: string; offset: number } | undefined {
  const name = node.op === 'rcall' || node.op === 'call' ? (node.args as unknown[])[0] : undefined;
  const offset = node.start ?? 0;
  if (typeof name === 'string') {
    const reason = REFUSED_FUNCTIONS.get(name);
    if (reason !== undefined) return { message: reason, offset };
    if (node.op === 'rcall' && MACROS.has(name)) {
      if (macroDepth >= 1) return { message: `${name}() inside another macro is not allowed (its cost would grow with the square of the input)`, offset };
      macroDepth += 1;
    }
  }
  for (const child of children(node)) {
    const found = refusedConstruct(child, macroDepth);
    if (found !== undefined) return found;
  }
  return undefined;
}

function children(node: ASTNode): ASTNode[] {
  const found: ASTNode[] = [];
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(visit);
    else if (typeof value === 'object' && value !== null && 'op' in value) found.push(value as ASTNode);
  };
  visit(node.args);
  return found;
}
