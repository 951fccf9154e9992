import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/load.js';

const HEAD = `version: 1
issuers:
  idp: { issuer: https://idp.example.com/, jwks_uri: https://idp.example.com/jwks.json, audiences: [api] }
upstreams:
  api: { url: http://127.0.0.1:3000 }
routes:
  - name: all
    match: { path: "/t/{tenant}/**" }
    upstream: api
    require:
`;

function problems(expr: string): string[] {
  return parseConfig(`${HEAD}${expr}`, 'gw.yaml').problems.map(formatProblem);
}

/** Line 11 is the first line of `expr:`; `col` counts from 1 in the file as written. */
describe('require.expr problems point inside the expression', () => {
  it.each([
    // `claims.tenant == == 1`: the error is at the second `==`, character 17 of the expression.
    { case: 'a plain scalar', yaml: '      expr: claims.tenant == == 1\n', at: '11:30' },
    { case: 'a double-quoted scalar with an escape before the error', yaml: '      expr: "claims[\\"tenant\\"] == == 1"\n', at: '11:36' },
    { case: "a single-quoted scalar with a doubled quote", yaml: "      expr: 'claims.t == ''x'' && && true'\n", at: '11:35' },
    { case: 'a block literal, on its second line', yaml: '      expr: |\n        claims.tenant == params.tenant &&\n          == 1\n', at: '13:11' },
    { case: 'a folded block, on its second line', yaml: '      expr: >-\n        claims.tenant == params.tenant\n        && == 1\n', at: '13:12' },
  ])('$case', ({ yaml, at }) => {
    const found = problems(yaml);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(new RegExp(`^gw\\.yaml:${at}: routes\\[0\\]\\.require\\.expr: `));
  });

  it('a type error names the column of the offending operand', () => {
    // `1 + "a"`: no such overload; the error is at the operator's expression.
    expect(problems('      expr: \'claims.x == 1 && (1 + "a") == 2\'\n')).toEqual([expect.stringMatching(/^gw\.yaml:11:\d+: routes\[0\]\.require\.expr: .*(overload|\+)/)]);
  });

  it('a result that is not boolean is refused at load', () => {
    expect(problems("      expr: '\"text\"'\n")).toEqual(['gw.yaml:11:14: routes[0].require.expr: the expression yields string; a rule must yield bool']);
  });

  it('a valid expression loads and knows what it reads', () => {
    const { config } = parseConfig(`${HEAD}      expr: 'claims.tenant == params.tenant && request.headers["x-team"] == "a" && now > timestamp("2020-01-01T00:00:00Z")'\n`, 'gw.yaml');
    expect(config?.routes[0]?.require?.expr?.reads).toEqual([['claims', 'tenant'], ['params', 'tenant'], ['request', 'headers', 'x-team'], ['now']]);
  });
});

describe('require.expr and the route path', () => {
  it('params.x without a {x} segment in the path is a problem at params.x', () => {
    expect(problems("      expr: 'claims.t == params.tenant && claims.o == params.owner'\n")).toEqual([
      'gw.yaml:11:55: routes[0].require.expr: params.owner: the route\'s path "/t/{tenant}/**" has no {owner} segment',
    ]);
  });
});

describe('require.expr with server.path_case: insensitive', () => {
  function warnings(expr: string): string[] {
    const yaml = `${HEAD.replace('version: 1\n', 'version: 1\nserver: { path_case: insensitive }\n')}${expr}`;
    return parseConfig(yaml, 'gw.yaml').warnings.map(formatProblem);
  }

  it('warns at a path literal with a capital letter, which the lower-cased request.path never matches', () => {
    expect(warnings(`      expr: 'request.path.startsWith("/t/Acme/") || request.path == "/t/acme/x"'\n`)).toEqual([
      'gw.yaml:12:38: routes[0].require.expr: request.path is lower-cased (server.path_case: insensitive), so it never matches "/t/Acme/": write "/t/acme/"',
    ]);
  });

  it('says nothing of literals when the expression does not read the path', () => {
    expect(warnings(`      expr: 'claims.home == "/Users/Acme"'\n`)).toEqual([]);
  });
});
