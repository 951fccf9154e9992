import { describe, expect, it } from 'vitest';
import type { RouteConfig, RouteMatchConfig } from '../../src/config/types.js';
import { findShadowedRoutes } from '../../src/routing/shadow.js';

type Match = Partial<RouteMatchConfig> & { path: string };

function routes(...matches: Match[]): RouteConfig[] {
  return matches.map((match, index) => ({
    name: `r${index}`,
    match: { host: undefined, methods: undefined, ...match },
    upstream: 'api',
    auth: 'required',
    issuers: undefined,
    require: undefined,
    rateLimit: [],
    cors: undefined,
    login: undefined,
  }));
}

/** Two routes: is the second certainly shadowed by the first? */
const pairs: ReadonlyArray<readonly [earlier: Match, later: Match, shadowed: boolean]> = [
  // Paths.
  [{ path: '/**' }, { path: '/anything' }, true],
  [{ path: '/**' }, { path: '/' }, true],
  [{ path: '/a/**' }, { path: '/a' }, true],
  [{ path: '/a/**' }, { path: '/a/b/c' }, true],
  [{ path: '/a/**' }, { path: '/a/*/**' }, true],
  [{ path: '/a/**' }, { path: '/a/**' }, true],
  [{ path: '/a/**' }, { path: '/b' }, false],
  [{ path: '/a/**' }, { path: '/ab' }, false],
  [{ path: '/a/b/**' }, { path: '/a/**' }, false],
  [{ path: '/a/*' }, { path: '/a/b' }, true],
  [{ path: '/a/*' }, { path: '/a/{id}' }, true],
  [{ path: '/a/{id}' }, { path: '/a/*' }, true],
  [{ path: '/a/b' }, { path: '/a/*' }, false],
  [{ path: '/a/*' }, { path: '/a/b/c' }, false],
  [{ path: '/a/*' }, { path: '/a' }, false],
  [{ path: '/a/*' }, { path: '/a/*/**' }, false],
  [{ path: '/a/*/**' }, { path: '/a/**' }, false],
  [{ path: '/a/*/c' }, { path: '/a/b/c' }, true],
  [{ path: '/a/*/c' }, { path: '/a/b/d' }, false],
  [{ path: '/a/b' }, { path: '/a/b/' }, true],
  [{ path: '/a/b' }, { path: '/a/b' }, true],
  [{ path: '/a/b' }, { path: '/a/c' }, false],
  [{ path: '/%61' }, { path: '/a' }, true],
  [{ path: '/A' }, { path: '/a' }, false],
  // Methods.
  [{ path: '/a', methods: ['GET', 'POST'] }, { path: '/a', methods: ['GET'] }, true],
  [{ path: '/a' }, { path: '/a', methods: ['DELETE'] }, true],
  [{ path: '/a', methods: ['GET'] }, { path: '/a', methods: ['GET', 'POST'] }, false],
  [{ path: '/a', methods: ['GET'] }, { path: '/a' }, false],
  // Hosts.
  [{ path: '/a' }, { path: '/a', host: 'api.example.com' }, true],
  [{ path: '/a', host: 'api.example.com' }, { path: '/a', host: 'api.example.com' }, true],
  [{ path: '/a', host: 'api.example.com' }, { path: '/a' }, false],
  [{ path: '/a', host: 'api.example.com' }, { path: '/a', host: 'www.example.com' }, false],
  [{ path: '/a', host: '*.example.com' }, { path: '/a', host: 'api.example.com' }, true],
  [{ path: '/a', host: '*.example.com' }, { path: '/a', host: 'a.b.example.com' }, true],
  [{ path: '/a', host: '*.example.com' }, { path: '/a', host: '*.eu.example.com' }, true],
  [{ path: '/a', host: '*.example.com' }, { path: '/a', host: 'example.com' }, false],
  [{ path: '/a', host: '*.example.com' }, { path: '/a', host: 'badexample.com' }, false],
  [{ path: '/a', host: '*.example.com' }, { path: '/a', host: '*.badexample.com' }, false],
  [{ path: '/a', host: '*.eu.example.com' }, { path: '/a', host: '*.example.com' }, false],
  [{ path: '/a', host: 'api.example.com' }, { path: '/a', host: '*.example.com' }, false],
  // Everything must hold at once.
  [{ path: '/a/**', host: '*.example.com', methods: ['GET'] }, { path: '/a/b', host: 'x.example.com', methods: ['GET'] }, true],
  [{ path: '/a/**', host: '*.example.com', methods: ['GET'] }, { path: '/a/b', host: 'x.example.com', methods: ['PUT'] }, false],
  [{ path: '/a/**', host: '*.example.com', methods: ['GET'] }, { path: '/b', host: 'x.example.com', methods: ['GET'] }, false],
];

describe('findShadowedRoutes', () => {
  it.each(pairs)('%j then %j → shadowed %s', (earlier, later, shadowed) => {
    expect(findShadowedRoutes(routes(earlier, later), 'sensitive')).toEqual(shadowed ? [{ index: 1, by: 0 }] : []);
  });

  it('folds case under path_case insensitive', () => {
    expect(findShadowedRoutes(routes({ path: '/A/**' }, { path: '/a/b' }), 'insensitive')).toEqual([{ index: 1, by: 0 }]);
    expect(findShadowedRoutes(routes({ path: '/A/**' }, { path: '/a/b' }), 'sensitive')).toEqual([]);
  });

  it('reports each shadowed route once, by the earliest route that covers it', () => {
    const config = routes(
      { path: '/public', methods: ['GET'] },
      { path: '/api/**' },
      { path: '/api/*' },
      { path: '/api/users', methods: ['GET'] },
      { path: '/public' },
      { path: '/public', methods: ['GET'] },
    );
    expect(findShadowedRoutes(config, 'sensitive')).toEqual([
      { index: 2, by: 1 },
      { index: 3, by: 1 },
      { index: 5, by: 0 },
    ]);
  });

  it('ignores routes whose pattern does not parse', () => {
    expect(findShadowedRoutes(routes({ path: '/a/**/b' }, { path: '/a/x/b' }, { path: '/a/x/b' }), 'sensitive')).toEqual([
      { index: 2, by: 1 },
    ]);
  });
});
