import type { RouteConfig } from '../config/types.js';
import { compileHostPattern, normalizeHost, type HostPredicate } from './hosts.js';
import { parsePathPattern, type PathPattern } from './path-pattern.js';

/**
 * The route table (SPEC §6 patterns, first match in file order). Each route is compiled once per config into the
 * cheapest predicate its pattern allows: a string comparison for literal paths, a prefix test for literal `/**`
 * patterns, and an allocation-free segment walk for patterns with wildcards. No regex runs per request.
 *
 * `path` must come from `normalizeTarget` (no `//`, no dot-segments, escapes canonical).
 */
export interface RouteTable {
  match(host: string, method: string, path: string): RouteConfig | undefined;
}

type PathPredicate = (path: string) => boolean;

interface CompiledRoute {
  readonly route: RouteConfig;
  readonly methods: ReadonlySet<string> | undefined;
  readonly host: HostPredicate | undefined;
  readonly path: PathPredicate;
}

const ANY_PATH: PathPredicate = () => true;

/** Malformed Host: routes that name a host never match it; routes without one still do. */
const NO_HOST = '';

export function compileRoutes(routes: readonly RouteConfig[], pathCase: 'sensitive' | 'insensitive'): RouteTable {
  const compiled: CompiledRoute[] = routes.map((route) => {
    let pattern: PathPattern;
    try {
      pattern = parsePathPattern(route.match.path, pathCase);
    } catch (error) {
      throw new Error(`route "${route.name}": ${(error as Error).message}`);
    }
    return {
      route,
      methods: route.match.methods ? new Set(route.match.methods) : undefined,
      host: route.match.host === undefined ? undefined : compileHostPattern(route.match.host),
      path: compilePathPredicate(pattern),
    };
  });
  const foldCase = pathCase === 'insensitive';

  return {
    match(host, method, path) {
      const candidate = foldCase ? path.toLowerCase() : path;
      let requestHost: string | undefined;
      for (const entry of compiled) {
        if (entry.methods !== undefined && !entry.methods.has(method)) continue;
        if (!entry.path(candidate)) continue;
        if (entry.host !== undefined) {
          requestHost ??= normalizeHost(host) ?? NO_HOST;
          if (!entry.host(requestHost)) continue;
        }
        return entry.route;
      }
      return undefined;
    },
  };
}

function compilePathPredicate({ segments, rest }: PathPattern): PathPredicate {
  if (segments.every((segment) => segment !== undefined)) {
    const literal = `/${segments.join('/')}`;
    if (rest) {
      if (segments.length === 0) return ANY_PATH;
      const below = `${literal}/`;
      return (path) => path === literal || path.startsWith(below);
    }
    if (segments.length === 0) return (path) => path === '/';
    const withSlash = `${literal}/`;
    return (path) => path === literal || path === withSlash;
  }
  return (path) => matchSegments(segments, rest, path);
}

/** Walks `path` segment by segment against the pattern without splitting it. */
function matchSegments(segments: readonly (string | undefined)[], rest: boolean, path: string): boolean {
  // A trailing slash is not a segment: `/a/x/` matches `/a/*` as `/a/x` does.
  const end = path.length > 1 && path.charCodeAt(path.length - 1) === 0x2f ? path.length - 1 : path.length;
  let start = 1;
  for (const segment of segments) {
    if (start >= end) return false;
    let stop = path.indexOf('/', start);
    if (stop < 0 || stop > end) stop = end;
    if (segment !== undefined && (stop - start !== segment.length || !path.startsWith(segment, start))) return false;
    start = stop + 1;
  }
  return rest || start > end;
}
