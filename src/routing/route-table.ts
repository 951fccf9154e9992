import type { MatchEntry } from './match.js';
import { compileHostPattern, normalizeHost, type HostPredicate } from './hosts.js';
import { parsePathPattern, type PathPattern } from './path-pattern.js';

/**
 * The route table (SPEC §6 patterns, first match in file order). Each route is compiled once per config into the
 * cheapest predicate its pattern allows: a string comparison for literal paths, a prefix test for literal `/**`
 * patterns, and an allocation-free segment walk for patterns with wildcards. No regex runs per request, and only
 * the routes that can match the path's first segment are tried.
 *
 * `path` must come from `normalizeTarget` (no `//`, no dot-segments, escapes canonical).
 */
export interface RouteTable<T extends MatchEntry> {
  match(host: string, method: string, path: string): T | undefined;
}

type PathPredicate = (path: string) => boolean;

interface CompiledRoute<T> {
  readonly route: T;
  readonly methods: ReadonlySet<string> | undefined;
  readonly host: HostPredicate | undefined;
  readonly path: PathPredicate;
}

const ANY_PATH: PathPredicate = () => true;

/** Malformed Host: routes that name a host never match it; routes without one still do. */
const NO_HOST = '';

export function compileRoutes<T extends MatchEntry>(routes: readonly T[], pathCase: 'sensitive' | 'insensitive'): RouteTable<T> {
  const byFirstSegment = new Map<string, CompiledRoute<T>[]>();
  const anyFirstSegment: CompiledRoute<T>[] = [];
  const keys: (string | undefined)[] = [];
  const compiled = routes.map((route): CompiledRoute<T> => {
    const pattern = parsePathPattern(route.match.path, pathCase);
    if (typeof pattern === 'string') throw new Error(`route "${route.name}": ${pattern}`);
    keys.push(firstSegmentKey(pattern));
    return {
      route,
      methods: route.match.methods ? new Set(route.match.methods) : undefined,
      host: route.match.host === undefined ? undefined : compileHostPattern(route.match.host),
      path: compilePathPredicate(pattern),
    };
  });
  // Candidates per first path segment, in file order: the routes naming that segment plus those that take any.
  for (const key of keys) if (key !== undefined && !byFirstSegment.has(key)) byFirstSegment.set(key, []);
  for (const [index, entry] of compiled.entries()) {
    const key = keys[index];
    if (key === undefined) {
      anyFirstSegment.push(entry);
      for (const candidates of byFirstSegment.values()) candidates.push(entry);
    } else {
      byFirstSegment.get(key)?.push(entry);
    }
  }
  const foldCase = pathCase === 'insensitive';

  return {
    match(host, method, path) {
      const candidate = foldCase ? path.toLowerCase() : path;
      const slash = candidate.indexOf('/', 1);
      const first = slash < 0 ? candidate.slice(1) : candidate.slice(1, slash);
      let requestHost: string | undefined;
      for (const entry of byFirstSegment.get(first) ?? anyFirstSegment) {
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

/** The literal first segment a pattern requires (`''` for the root alone), or undefined when any can match. */
function firstSegmentKey({ segments, rest }: PathPattern): string | undefined {
  if (segments.length === 0) return rest ? undefined : '';
  return segments[0];
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
