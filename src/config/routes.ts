import { isMap, isScalar, isSeq } from 'yaml';
import { parsePathPattern } from '../routing/path-pattern.js';
import { readClaimValues } from './issuers.js';
import type { Reader, Slot } from './reader.js';
import { readCors, readHostPattern, readMethod } from './sections.js';
import { didYouMean } from './suggest.js';
import type { ExpressionRule } from '../expressions/cel.js';
import { readExpression } from './expression.js';
import type { AuthMode, CorsConfig, ListRule, RateLimitConfig, RequireRules, RouteConfig, ServerConfig } from './types.js';

/** Route names become metric labels and log fields. */
const ROUTE_NAME = /^[A-Za-z0-9_.-]+$/;

export interface RouteContext {
  readonly server: ServerConfig;
  readonly upstreams: readonly string[];
  readonly issuers: readonly string[];
  readonly rateLimitNames: readonly string[];
  readonly rateLimits: ReadonlyMap<string, RateLimitConfig>;
  /** `login.providers`: each name and the issuer it signs in with (if it read well); undefined without a `login` section. */
  readonly loginProviders: ReadonlyMap<string, string | undefined> | undefined;
}

export interface RoutesRead {
  readonly routes: RouteConfig[];
  /** Where each of `routes` is written, same order. */
  readonly slots: Slot[];
}

export function readRoutes(r: Reader, slot: Slot, context: RouteContext): RoutesRead {
  const items = r.required(slot) ? r.list(slot) ?? [] : [];
  if (slot.node !== undefined && items.length === 0) r.problem(slot, 'must list at least one route');
  const routes: RouteConfig[] = [];
  const slots: Slot[] = [];
  /** Each route name read so far, and where (`routes[1]`). */
  const names = new Map<string, string>();
  for (const item of items) {
    const route = readRoute(r, item, context, names);
    if (route !== undefined) {
      routes.push(route);
      slots.push(item);
    }
  }
  return { routes, slots };
}

function readRoute(r: Reader, slot: Slot, context: RouteContext, names: Map<string, string>): RouteConfig | undefined {
  const s = r.section(slot, ['name', 'match', 'upstream', 'auth', 'issuers', 'require', 'rate_limit', 'cors', 'login']);
  const name = readRouteName(r, s.slot('name'), names);
  const match = readMatch(r, s.slot('match'), context.server);
  const upstream = readReference(r, s.slot('upstream'), 'upstream', context.upstreams, true);
  const auth = r.oneOf(s.slot('auth'), ['none', 'optional', 'required'] as const) ?? 'required';
  const issuersSlot = s.slot('issuers');
  const issuers = r.items(issuersSlot, (item) => readReference(r, item, 'issuer', context.issuers, false), { nonEmpty: true });
  const requireSlot = s.slot('require');
  const require = s.has('require') ? readRequire(r, requireSlot, match?.path, context.server) : undefined;
  if (auth === 'none') {
    for (const given of [issuersSlot, requireSlot]) {
      if (given.node !== undefined) r.problem(given, 'not allowed with auth: none (nothing is verified on this route)');
    }
  }
  const rateLimit = readRouteRateLimits(r, s.slot('rate_limit'), context, auth) ?? [];
  const cors = s.has('cors') ? readRouteCors(r, s.slot('cors')) : undefined;
  const login = s.has('login') ? readRouteLogin(r, s.slot('login'), context, auth) : undefined;
  if (login !== undefined && issuers !== undefined) requireLoginIssuers(r, s.slot('login'), login, issuers, context);
  if (name === undefined || match === undefined || upstream === undefined) return undefined;
  return { name, match, upstream, auth, issuers: issuers ?? undefined, require, rateLimit, cors, login };
}

/** `login: corp` or `login: [corp, partners]`: the providers a browser without credentials may sign in with. */
function readRouteLogin(r: Reader, slot: Slot, context: RouteContext, auth: AuthMode): string[] | undefined {
  if (context.loginProviders === undefined) return r.problem(slot, 'needs a top-level login section naming the providers');
  if (auth !== 'required') return r.problem(slot, `not allowed with auth: ${auth} (a login route sends browsers without credentials to sign in)`);
  const known = [...context.loginProviders.keys()];
  if (isScalar(slot.node)) {
    const one = readReference(r, slot, 'login provider', known, true);
    return one === undefined ? undefined : [one];
  }
  return r.items(slot, (item) => readReference(r, item, 'login provider', known, true), { nonEmpty: true });
}

/** A login route takes only sessions whose provider signs in with an issuer it admits: any other would loop. */
function requireLoginIssuers(r: Reader, slot: Slot, login: readonly string[], issuers: readonly string[], context: RouteContext): void {
  for (const provider of login) {
    const issuer = context.loginProviders?.get(provider);
    if (issuer !== undefined && !issuers.includes(issuer)) {
      r.problem(slot, `provider ${provider} signs in with issuer ${issuer}, which the route's issuers leave out: its sessions would be refused`);
    }
  }
}

/** `params.x` in an expression needs a `{x}` segment in the route's path, or every request would be denied. */
function checkParams(r: Reader, exprSlot: Slot, rule: ExpressionRule, path: string, server: ServerConfig): void {
  const pattern = parsePathPattern(path, server.pathCase);
  if (typeof pattern === 'string') return;
  for (const [variable, name] of rule.reads) {
    if (variable !== 'params' || name === undefined || pattern.names.includes(name)) continue;
    const at = Math.max(0, rule.source.indexOf(`params.${name}`));
    r.problemInside(exprSlot, at, `params.${name}: the route's path "${path}" has no {${name}} segment`);
  }
}

/** A string literal of an expression that starts like a path and has a capital letter in it. */
const CAPITALIZED_PATH_LITERAL = /(["'])(\/[^"'\\]*[A-Z][^"'\\]*)\1/g;

/**
 * With `path_case: insensitive`, `request.path` is lower-cased as the routes see it, so a path literal with a
 * capital letter never equals it (nor prefixes it): a rule that silently never matches.
 */
function warnAboutCapitalPaths(r: Reader, exprSlot: Slot, rule: ExpressionRule): void {
  if (!rule.reads.some(([variable, field]) => variable === 'request' && (field === 'path' || field === undefined))) return;
  for (const literal of rule.source.matchAll(CAPITALIZED_PATH_LITERAL)) {
    const text = literal[2] as string;
    r.warningInside(exprSlot, literal.index, `request.path is lower-cased (server.path_case: insensitive), so it never matches "${text}": write "${text.toLowerCase()}"`);
  }
}

function readRouteName(r: Reader, slot: Slot, names: Map<string, string>): string | undefined {
  const name = r.required(slot) ? r.string(slot) : undefined;
  if (name === undefined) return undefined;
  if (!ROUTE_NAME.test(name)) return r.problem(slot, `"${name}" may contain only letters, digits, "_", "-" and "."`);
  const first = names.get(name);
  if (first !== undefined) return r.problem(slot, `duplicate route name "${name}" (first at ${first})`);
  names.set(name, slot.path.replace(/\.name$/, ''));
  return name;
}

function readMatch(r: Reader, slot: Slot, server: ServerConfig): RouteConfig['match'] | undefined {
  if (!r.required(slot)) return undefined;
  const s = r.section(slot, ['path', 'methods', 'host']);
  const pathSlot = s.slot('path');
  const path = r.required(pathSlot) ? readPathPattern(r, pathSlot, server) : undefined;
  const methods = r.items(s.slot('methods'), (item) => readMethod(r, item), { nonEmpty: true });
  const host = s.has('host') ? readHostPattern(r, s.slot('host')) : undefined;
  return path === undefined ? undefined : { path, methods, host };
}

/** Parsed exactly as the router will parse it, so `check` accepts what `start` can route, and nothing else. */
function readPathPattern(r: Reader, slot: Slot, server: ServerConfig): string | undefined {
  const path = r.string(slot);
  if (path === undefined) return undefined;
  const pattern = parsePathPattern(path, server.pathCase);
  if (typeof pattern === 'string') return r.problem(slot, pattern);
  const { segments } = pattern;
  const reserved = server.reservedPrefix.slice(1).split('/');
  const fold = (text: string): string => (server.pathCase === 'insensitive' ? text.toLowerCase() : text);
  if (reserved.every((segment, i) => segments[i] !== undefined && segments[i] === fold(segment))) {
    return r.problem(slot, `is under the reserved prefix ${server.reservedPrefix} (see server.reserved_prefix)`);
  }
  return path;
}

function readReference(
  r: Reader,
  slot: Slot,
  kind: string,
  known: readonly string[],
  required: boolean,
): string | undefined {
  if (required && !r.required(slot)) return undefined;
  const name = r.string(slot);
  if (name === undefined || known.includes(name)) return name;
  return r.problem(slot, `unknown ${kind} "${name}"${didYouMean(name, known)}`);
}

/** One name or a list of names of `rate_limits` entries. */
function readRouteRateLimits(r: Reader, slot: Slot, context: RouteContext, auth: AuthMode): string[] | undefined {
  const readOne = (item: Slot): string | undefined => {
    const name = readReference(r, item, 'rate limit', context.rateLimitNames, false);
    const key = name === undefined ? undefined : context.rateLimits.get(name)?.key.kind;
    if (auth === 'none' && key !== undefined && key !== 'ip' && key !== 'header') {
      return r.problem(item, `rate limit "${name}" is keyed by ${key}, which a route with auth: none never has`);
    }
    return name;
  };
  if (isScalar(slot.node)) {
    const name = readOne(slot);
    return name === undefined ? undefined : [name];
  }
  return r.items(slot, readOne);
}

function readRequire(r: Reader, slot: Slot, path: string | undefined, server: ServerConfig): RequireRules | undefined {
  const s = r.section(slot, ['roles', 'permissions', 'scopes', 'claims', 'expr']);
  const expr = s.has('expr') ? readExpression(r, s.slot('expr')) : undefined;
  if (expr !== undefined && path !== undefined) checkParams(r, s.slot('expr'), expr, path, server);
  if (expr !== undefined && server.pathCase === 'insensitive') warnAboutCapitalPaths(r, s.slot('expr'), expr);
  return {
    roles: readListRule(r, s.slot('roles'), 'any'),
    permissions: readListRule(r, s.slot('permissions'), 'all'),
    scopes: readListRule(r, s.slot('scopes'), 'any'),
    claims: s.has('claims') ? readClaimValues(r, s.slot('claims')) : undefined,
    expr,
  };
}

/** A plain list takes the key's default mode; `{ any: [...] }` / `{ all: [...] }` say it explicitly. */
function readListRule(r: Reader, slot: Slot, defaultMode: ListRule['mode']): ListRule | undefined {
  const { node } = slot;
  if (node === undefined) return undefined;
  if (isSeq(node)) {
    const values = r.stringList(slot, { nonEmpty: true });
    return values === undefined ? undefined : { mode: defaultMode, values };
  }
  if (!isMap(node)) return r.problem(slot, 'expected a list, { any: [...] } or { all: [...] }');
  const s = r.section(slot, ['any', 'all']);
  const modes = (['any', 'all'] as const).filter((mode) => s.has(mode));
  const [mode, other] = modes;
  if (mode === undefined || other !== undefined) return r.problem(slot, 'expected exactly one of any or all');
  const values = r.stringList(s.slot(mode), { nonEmpty: true });
  return values === undefined ? undefined : { mode, values };
}

/** `cors: false` turns CORS off for the route; a mapping replaces the global settings. */
function readRouteCors(r: Reader, slot: Slot): CorsConfig | false | undefined {
  const { node } = slot;
  if (isScalar(node) && node.value === false) return false;
  if (!isMap(node)) return r.problem(slot, 'expected a mapping or false');
  return readCors(r, slot);
}
