import type { MatchEntry, RouteMatch } from './match.js';
import { parsePathPattern, type PathPattern } from './path-pattern.js';

/**
 * Routes that can never match because an earlier route takes every request they would (a `check` warning).
 * Conservative: a pair is reported only when subsumption is certain from host, methods and path pattern alone.
 * Routes whose patterns do not parse are left to the config validator and never reported.
 */
export function findShadowedRoutes(
  routes: readonly MatchEntry[],
  pathCase: 'sensitive' | 'insensitive',
): Array<{ index: number; by: number }> {
  const patterns = routes.map((route) => {
    const pattern = parsePathPattern(route.match.path, pathCase);
    return typeof pattern === 'string' ? undefined : pattern;
  });
  const shadowed: Array<{ index: number; by: number }> = [];
  for (let index = 0; index < routes.length; index++) {
    const later = patterns[index];
    if (later === undefined) continue;
    for (let by = 0; by < index; by++) {
      const earlier = patterns[by];
      if (earlier === undefined) continue;
      const laterMatch = (routes[index] as MatchEntry).match;
      const earlierMatch = (routes[by] as MatchEntry).match;
      if (coversMatch(earlierMatch, earlier, laterMatch, later)) {
        shadowed.push({ index, by });
        break;
      }
    }
  }
  return shadowed;
}

function coversMatch(outer: RouteMatch, outerPath: PathPattern, inner: RouteMatch, innerPath: PathPattern): boolean {
  return coversMethods(outer.methods, inner.methods) && coversHost(outer.host, inner.host) && coversPath(outerPath, innerPath);
}

function coversMethods(outer: readonly string[] | undefined, inner: readonly string[] | undefined): boolean {
  if (outer === undefined) return true;
  return inner !== undefined && inner.every((method) => outer.includes(method));
}

/** Hosts in config are lower-cased; `*.s` matches one or more labels before `.s`. */
function coversHost(outer: string | undefined, inner: string | undefined): boolean {
  if (outer === undefined) return true;
  if (inner === undefined) return false;
  if (outer === inner) return true;
  if (!outer.startsWith('*.')) return false;
  const suffix = outer.slice(1);
  // `*.a.example.com` ⊆ `*.example.com` (every name it matches ends in `.example.com`), `a.example.com` too.
  if (inner.startsWith('*.')) return inner.slice(1).endsWith(suffix);
  return inner.length > suffix.length && inner.endsWith(suffix);
}

function coversPath(outer: PathPattern, inner: PathPattern): boolean {
  const outerCount = outer.segments.length;
  const innerCount = inner.segments.length;
  if (outer.rest ? innerCount < outerCount : inner.rest || innerCount !== outerCount) return false;
  for (let index = 0; index < outerCount; index++) {
    const outerSegment = outer.segments[index];
    // A wildcard takes any one segment; a literal only that literal (a wildcard in `inner` is wider than it).
    if (outerSegment !== undefined && outerSegment !== inner.segments[index]) return false;
  }
  return true;
}
