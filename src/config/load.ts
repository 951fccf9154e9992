import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isMap, LineCounter, parseDocument, type YAMLError } from 'yaml';
import { findShadowedRoutes } from '../routing/shadow.js';
import { applyReferences, maskReferences, unmask } from './interpolate.js';
import { readIssuers } from './issuers.js';
import { declaredProviders, readLogin } from './login.js';
import { formatProblem, ProblemSink, type ConfigProblem } from './problems.js';
import { keySlot, Reader, type Named, type Slot } from './reader.js';
import { readRoutes, type RoutesRead } from './routes.js';
import {
  readAdmin,
  readCors,
  readIdentity,
  readLogging,
  readRateLimits,
  readServer,
  readStore,
  readTokens,
  readUpstreams,
} from './sections.js';
import type { GatewayConfig, IssuerConfig, RouteConfig } from './types.js';

export { formatProblem, type ConfigProblem };

export interface LoadResult {
  /** Defined exactly when `problems` is empty. */
  config: GatewayConfig | undefined;
  problems: ConfigProblem[];
  warnings: ConfigProblem[];
  /** Where each issuer entry is written, for findings made after loading (`authgate check --online`). */
  issuerSites?: ReadonlyMap<string, Omit<ConfigProblem, 'message'>>;
}

const TOP_LEVEL_KEYS = [
  'version', 'server', 'admin', 'store', 'logging', 'tokens', 'issuers', 'upstreams', 'identity', 'rate_limits',
  'cors', 'routes', 'login',
];

export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    return { config: undefined, problems: [{ file, line: 1, col: 1, path: '', message: `cannot read the file (${reason})` }], warnings: [] };
  }
  return parseConfig(text, file, env);
}

/**
 * Parses and validates config text. `${…}` references are resolved inside scalars after parsing (see
 * interpolate.ts), so every position reported is a position in the file as written.
 */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): LoadResult {
  const lineCounter = new LineCounter();
  const sink = new ProblemSink(file, lineCounter);
  const masked = maskReferences(text);
  const doc = parseDocument(masked.text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  reportSyntaxErrors(doc.errors, sink);
  if (doc.errors.length > 0) return finish(undefined, sink);
  for (const warning of doc.warnings) sink.warning(warning.pos[0], '', warning.message);
  if (doc.contents !== null && !isMap(doc.contents)) {
    sink.problem(doc.contents.range?.[0] ?? 0, '', 'expected a mapping of settings starting with version: 1');
    return finish(undefined, sink);
  }

  const reader = new Reader(doc, sink, applyReferences(doc, masked, env, sink), text);
  const absoluteFile = resolve(file);
  const read = readGateway(reader, absoluteFile);
  if (sink.problems.length > 0) return finish(undefined, sink);
  warnAboutShadowedRoutes(reader, read.routes, read.config.server.pathCase);
  warnAboutUnusedIssuers(reader, read.config.routes, read.issuers);
  const issuerSites = new Map([...read.issuers.slots].map(([name, slot]) => [name, { file, ...lineCounter.linePos(slot.anchor), path: slot.path }]));
  return { ...finish(read.config, sink), issuerSites };
}

/**
 * One broken line makes the YAML parser report every token after it with the same code; only the first of
 * such a run is worth reading. Errors of different kinds are all reported.
 */
function reportSyntaxErrors(errors: readonly YAMLError[], sink: ProblemSink): void {
  let previousCode: string | undefined;
  for (const error of errors) {
    if (error.code !== previousCode) sink.problem(error.pos[0], '', `invalid YAML: ${unmask(error.message)}`);
    previousCode = error.code;
  }
}

function finish(config: GatewayConfig | undefined, sink: ProblemSink): LoadResult {
  return { config, problems: byPosition(sink.problems), warnings: byPosition(sink.warnings) };
}

function byPosition(problems: ConfigProblem[]): ConfigProblem[] {
  return problems.sort((a, b) => a.line - b.line || a.col - b.col);
}

interface GatewayRead {
  readonly config: GatewayConfig;
  readonly routes: RoutesRead;
  readonly issuers: Named<IssuerConfig>;
}

function readGateway(r: Reader, file: string): GatewayRead {
  const baseDir = dirname(file);
  const root = r.section(r.root(), TOP_LEVEL_KEYS);
  const versionSlot = root.slot('version');
  const version = r.required(versionSlot) ? r.integer(versionSlot, 1) : undefined;
  if (version !== undefined && version !== 1) r.problem(versionSlot, 'unsupported version (this authgate reads version 1)');
  const { server, workersSlot } = readServer(r, root.slot('server'), baseDir);
  const issuers = readIssuers(r, root.slot('issuers'), baseDir);
  const upstreams = readUpstreams(r, root.slot('upstreams'), baseDir);
  const rateLimits = readRateLimits(r, root.slot('rate_limits'));
  const store = readStore(r, root.slot('store'), baseDir);
  const loginContext = { issuers: issuers.values, issuerNames: issuers.names, workers: server.workers, redis: store.redis !== undefined, baseDir };
  const login = root.has('login') ? readLogin(r, root.slot('login'), loginContext) : undefined;
  const routes = readRoutes(r, root.slot('routes'), {
    server,
    upstreams: upstreams.names,
    issuers: issuers.names,
    rateLimitNames: rateLimits.names,
    rateLimits: rateLimits.values,
    loginProviders: root.has('login') ? declaredProviders(root.slot('login'), login) : undefined,
  });
  if (issuers.names.length === 0) requireIssuerForProtectedRoutes(r, routes);
  refuseTwoIntrospectingIssuers(r, routes, issuers.values);
  requireSharedStoreForWorkers(r, workersSlot, server.workers, store, routes.routes);
  const config: GatewayConfig = {
    file,
    server,
    admin: readAdmin(r, root.slot('admin'), server),
    store,
    logging: readLogging(r, root.slot('logging')),
    tokens: readTokens(r, root.slot('tokens')),
    issuers: issuers.values,
    upstreams: upstreams.values,
    identity: readIdentity(r, root.slot('identity'), baseDir),
    rateLimits: rateLimits.values,
    cors: root.has('cors') ? readCors(r, root.slot('cors')) : undefined,
    routes: routes.routes,
    login,
  };
  return { config, routes, issuers };
}

function requireIssuerForProtectedRoutes(r: Reader, { routes, slots }: RoutesRead): void {
  const index = routes.findIndex((route) => route.auth !== 'none');
  const route = routes[index];
  const slot = slots[index];
  if (route === undefined || slot === undefined) return;
  r.problem(slot, `route "${route.name}" has auth: ${route.auth}, but no issuers are configured`);
}

/**
 * An opaque token names no issuer: the one introspecting issuer among a route's issuers is the only one it can be
 * sent to. With two, the token would go to an identity provider chosen by configuration order.
 */
function refuseTwoIntrospectingIssuers(r: Reader, { routes, slots }: RoutesRead, issuers: ReadonlyMap<string, IssuerConfig>): void {
  routes.forEach((route, index) => {
    const slot = slots[index];
    if (route.auth === 'none' || slot === undefined) return;
    const names = route.issuers ?? [...issuers.keys()];
    const introspecting = names.filter((name) => issuers.get(name)?.introspection !== undefined);
    if (introspecting.length < 2) return;
    const listed = route.issuers === undefined ? ' (a route without issuers: accepts every issuer)' : '';
    r.problem(slot, `route "${route.name}" accepts two issuers with introspection (${introspecting.join(', ')})${listed}: an opaque token could go to either; list one of them in the route's issuers`);
  });
}

/**
 * Workers are separate processes: on the in-memory store each would keep its own revocations and counters, so a
 * logout on one would not hold on the others. Refused rather than warned about (SPEC §3: memory is one instance).
 */
function requireSharedStoreForWorkers(
  r: Reader,
  slot: Slot,
  workers: GatewayConfig['server']['workers'],
  store: GatewayConfig['store'],
  routes: readonly RouteConfig[],
): void {
  if (workers === 1 || store.redis !== undefined) return;
  if (!routes.some((route) => route.auth !== 'none' || route.rateLimit.length > 0)) return;
  r.problem(slot, 'more than one worker needs store.redis when routes authenticate or rate-limit: each worker would keep its own revocations and counters');
}

function warnAboutShadowedRoutes(r: Reader, { routes, slots }: RoutesRead, pathCase: 'sensitive' | 'insensitive'): void {
  for (const { index, by } of findShadowedRoutes(routes, pathCase)) {
    const slot = slots[index];
    const route = routes[index];
    const earlier = routes[by];
    if (slot === undefined || route === undefined || earlier === undefined) continue;
    r.warning(slot, `route "${route.name}" is never reached: route "${earlier.name}" (routes[${by}]) takes every request it would`);
  }
}

function warnAboutUnusedIssuers(r: Reader, routes: GatewayConfig['routes'], issuers: Named<IssuerConfig>): void {
  const protectedRoutes = routes.filter((route) => route.auth !== 'none');
  for (const [name, slot] of issuers.slots) {
    if (protectedRoutes.some((route) => route.issuers === undefined || route.issuers.includes(name))) continue;
    const why = protectedRoutes.length === 0 ? 'every route has auth: none' : 'every protected route lists other issuers';
    r.warning(keySlot(slot), `no route can use this issuer (${why})`);
  }
}

