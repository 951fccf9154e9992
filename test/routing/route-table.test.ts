import { describe, expect, it } from 'vitest';
import type { RouteConfig, RouteMatchConfig } from '../../src/config/types.js';
import { compileParams, parsePathPattern } from '../../src/routing/path-pattern.js';
import { compileRoutes } from '../../src/routing/route-table.js';

function route(name: string, match: Partial<RouteMatchConfig> & { path: string }): RouteConfig {
  return {
    name,
    match: { host: undefined, methods: undefined, ...match },
    upstream: 'api',
    auth: 'required',
    issuers: undefined,
    require: undefined,
    rateLimit: [],
    cors: undefined,
    login: undefined,
  };
}

/** One route per table: whether `path` (already normalized) matches `pattern`. */
const patternCases: ReadonlyArray<readonly [pattern: string, path: string, matches: boolean]> = [
  ['/', '/', true],
  ['/', '/a', false],
  ['/admin', '/admin', true],
  ['/admin', '/admin/', true],
  ['/admin', '/admin/users', false],
  ['/admin', '/admins', false],
  ['/admin', '/adm', false],
  ['/admin', '/Admin', false],
  ['/admin', '/', false],
  ['/admin/', '/admin', true],
  ['/api/public', '/api/public', true],
  ['/api/public', '/api/public/x', false],
  ['/%61dmin', '/admin', true],
  ['/a/*', '/a/x', true],
  ['/a/*', '/a/x/', true],
  ['/a/*', '/a/', false],
  ['/a/*', '/a', false],
  ['/a/*', '/a/x/y', false],
  ['/a/*', '/b/x', false],
  ['/a/*/c', '/a/b/c', true],
  ['/a/*/c', '/a/b/d', false],
  ['/a/*/c', '/a/b/c/d', false],
  ['/api/resource/{id}', '/api/resource/42', true],
  ['/api/resource/{id}', '/api/resource/42/', true],
  ['/api/resource/{id}', '/api/resource', false],
  ['/api/resource/{id}', '/api/resource/', false],
  ['/api/resource/{id}', '/api/resource/42/owner', false],
  ['/api/resource/{id}', '/api/resources/42', false],
  ['/u/{user}/posts/{post}', '/u/ann/posts/7', true],
  ['/u/{user}/posts/{post}', '/u/ann/post/7', false],
  ['/api/admin/**', '/api/admin', true],
  ['/api/admin/**', '/api/admin/', true],
  ['/api/admin/**', '/api/admin/users', true],
  ['/api/admin/**', '/api/admin/users/42/roles', true],
  ['/api/admin/**', '/api/administrator', false],
  ['/api/admin/**', '/api/adm', false],
  ['/api/admin/**', '/api', false],
  ['/**', '/', true],
  ['/**', '/anything/at/all', true],
  ['/a/*/**', '/a/x', true],
  ['/a/*/**', '/a/x/y/z', true],
  ['/a/*/**', '/a', false],
  ['/a/{id}/**', '/a/1/b', true],
  ['/a/{id}/**', '/b/1', false],
];

describe('compileRoutes: path patterns', () => {
  it.each(patternCases)('%j vs %j → %s', (pattern, path, matches) => {
    const table = compileRoutes([route('r', { path: pattern })], 'sensitive');
    expect(table.match('api.example.com', 'GET', path)?.name).toBe(matches ? 'r' : undefined);
  });
});

describe('compileRoutes: path_case', () => {
  const cases: ReadonlyArray<readonly [pattern: string, path: string, sensitive: boolean, insensitive: boolean]> = [
    ['/Admin', '/admin', false, true],
    ['/admin', '/ADMIN/', false, true],
    ['/Api/**', '/aPI/x/Y', false, true],
    ['/a/{id}/Edit', '/A/1/EDIT', false, true],
    ['/caf%c3%a9', '/caf%C3%A9', true, true],
    ['/admin', '/admin', true, true],
    ['/admin', '/admins', false, false],
  ];
  it.each(cases)('%j vs %j: sensitive %s, insensitive %s', (pattern, path, sensitive, insensitive) => {
    const routes = [route('r', { path: pattern })];
    expect(compileRoutes(routes, 'sensitive').match('h', 'GET', path) !== undefined).toBe(sensitive);
    expect(compileRoutes(routes, 'insensitive').match('h', 'GET', path) !== undefined).toBe(insensitive);
  });
});

describe('compileRoutes: hosts and methods', () => {
  const table = compileRoutes(
    [
      route('admin-exact-host', { host: 'api.example.com', path: '/admin/**' }),
      route('tenant-wildcard', { host: '*.tenants.example.com', path: '/admin/**' }),
      route('delete', { path: '/api/resource/{id}', methods: ['DELETE'] }),
      route('read', { path: '/api/resource/{id}', methods: ['GET', 'HEAD'] }),
      route('fallback', { path: '/**' }),
    ],
    'sensitive',
  );

  const cases: ReadonlyArray<readonly [host: string, method: string, path: string, expected: string]> = [
    ['api.example.com', 'GET', '/admin/x', 'admin-exact-host'],
    ['API.EXAMPLE.COM', 'GET', '/admin/x', 'admin-exact-host'],
    ['api.example.com:8443', 'GET', '/admin', 'admin-exact-host'],
    ['api.example.com.', 'POST', '/admin', 'admin-exact-host'],
    ['[::1]:8080', 'GET', '/admin', 'fallback'],
    ['other.example.com', 'GET', '/admin', 'fallback'],
    ['api.example.com.evil', 'GET', '/admin', 'fallback'],
    ['', 'GET', '/admin', 'fallback'],
    ['evil/api.example.com', 'GET', '/admin', 'fallback'],
    ['a.tenants.example.com', 'GET', '/admin', 'tenant-wildcard'],
    ['a.b.tenants.example.com:80', 'GET', '/admin', 'tenant-wildcard'],
    ['tenants.example.com', 'GET', '/admin', 'fallback'],
    ['x.example.com', 'DELETE', '/api/resource/1', 'delete'],
    ['x.example.com', 'GET', '/api/resource/1', 'read'],
    ['x.example.com', 'HEAD', '/api/resource/1', 'read'],
    ['x.example.com', 'POST', '/api/resource/1', 'fallback'],
    ['x.example.com', 'delete', '/api/resource/1', 'fallback'],
    ['x.example.com', 'GET', '/api/resource', 'fallback'],
  ];
  it.each(cases)('%j %s %s → %s', (host, method, path, expected) => {
    expect(table.match(host, method, path)?.name).toBe(expected);
  });

  it('takes the first match in file order', () => {
    const ordered = compileRoutes([route('first', { path: '/a/**' }), route('second', { path: '/a/b' })], 'sensitive');
    expect(ordered.match('h', 'GET', '/a/b')?.name).toBe('first');
    const reversed = compileRoutes([route('second', { path: '/a/b' }), route('first', { path: '/a/**' })], 'sensitive');
    expect(reversed.match('h', 'GET', '/a/b')?.name).toBe('second');
  });

  it('keeps file order between routes naming a first segment and routes taking any', () => {
    const mixed = compileRoutes(
      [
        route('exact-a-b', { path: '/a/b' }),
        route('any-then-c', { path: '/*/c' }),
        route('under-a', { path: '/a/**' }),
        route('root', { path: '/' }),
        route('catch-all', { path: '/**' }),
        route('never', { path: '/x/y' }),
      ],
      'sensitive',
    );
    const expected: ReadonlyArray<readonly [path: string, name: string]> = [
      ['/a/b', 'exact-a-b'],
      ['/a/c', 'any-then-c'],
      ['/a/d', 'under-a'],
      ['/a', 'under-a'],
      ['/x/c', 'any-then-c'],
      ['/x/y', 'catch-all'],
      ['/zzz', 'catch-all'],
      ['/', 'root'],
    ];
    expect(expected.map(([path]) => [path, mixed.match('h', 'GET', path)?.name])).toEqual(expected);
  });

  it('answers undefined when no route matches', () => {
    const only = compileRoutes([route('r', { path: '/a', methods: ['GET'] })], 'sensitive');
    expect(only.match('h', 'POST', '/a')).toBeUndefined();
    expect(only.match('h', 'GET', '/b')).toBeUndefined();
  });
});

describe('path pattern problems', () => {
  it.each([
    ['/a/**/b', 'path pattern "/a/**/b": "**" must be the last segment'],
    ['/a*', 'path pattern "/a*": "*" must be a whole segment'],
    ['/a/b**', 'path pattern "/a/b**": "*" must be a whole segment'],
    ['a/b', 'path pattern "a/b": not origin-form'],
    ['/a;b', 'path pattern "/a;b": matrix parameter'],
    ['/../a', 'path pattern "/../a": dot-segment above root'],
    ['/a?b=1', 'path pattern "/a?b=1": a query string is not part of a path'],
  ])('%j: %s', (pattern, problem) => {
    expect(parsePathPattern(pattern, 'sensitive')).toBe(problem);
    expect(() => compileRoutes([route('bad', { path: pattern })], 'sensitive')).toThrow(`route "bad": ${problem}`);
  });

  it.each(['/', '/a', '/a/', '/a/*', '/a/{id}', '/a/**', '/**', '/a/{id}/b/*/**'])('%j is fine', (pattern) => {
    expect(parsePathPattern(pattern, 'sensitive')).toMatchObject({ segments: expect.any(Array), rest: expect.any(Boolean) });
  });
});

describe('route parameters', () => {
  const paramsOf = (pattern: string, path: string, pathCase: 'sensitive' | 'insensitive' = 'sensitive') => {
    const parsed = parsePathPattern(pattern, pathCase);
    if (typeof parsed === 'string') throw new Error(parsed);
    return compileParams(parsed)(path);
  };

  it('names each {name} segment, decoded, and keeps the case of the request', () => {
    expect(paramsOf('/t/{tenant}/docs/{id}/**', '/t/Acme/docs/7/x/y')).toEqual({ tenant: 'Acme', id: '7' });
    expect(paramsOf('/T/{tenant}', '/t/a%20b', 'insensitive')).toEqual({ tenant: 'a b' });
    expect(paramsOf('/t/*/{id}', '/t/x/9/')).toEqual({ id: '9' });
  });

  it('a pattern without names shares one empty object: its routes allocate nothing', () => {
    expect(paramsOf('/a/*/**', '/a/b/c')).toEqual({});
    expect(paramsOf('/a/*/**', '/a/b/c')).toBe(paramsOf('/x', '/x'));
  });
});
