import { describe, expect, it } from 'vitest';
import { compileExpression, EXPRESSION_LIMITS, type ExpressionInput } from '../../src/expressions/cel.js';

function input(overrides: Partial<ExpressionInput> = {}): ExpressionInput {
  return {
    claims: { sub: 'alice', tenant: 'acme', level: 3, admin: false, roles: ['reader'], org: { id: 'o1', plan: 'pro' } },
    identity: { subject: 'alice', email: 'alice@acme.test', roles: ['reader'], permissions: ['read', 'write'] },
    request: { method: 'GET', host: 'api.acme.test', path: '/tenants/acme/docs/7', query: new Map([['tag', ['a', 'b']]]), headers: new Map([['x-team', 'blue']]) },
    params: { tenant: 'acme', owner: 'alice' },
    now: new Date('2026-01-01T00:00:00Z'),
    ...overrides,
  };
}

function run(source: string, values: ExpressionInput = input()): { allowed: boolean; reason?: string } {
  const compiled = compileExpression(source);
  if (!compiled.ok) throw new Error(`did not compile: ${compiled.message} at ${compiled.offset}`);
  return compiled.evaluate(values);
}

/** The CEL semantics our rules rely on, pinned against this library (it is not run against the conformance suite). */
const SEMANTICS: Array<[source: string, allowed: boolean]> = [
  ['claims.sub == "alice"', true],
  ['claims.sub == "bob"', false],
  ['claims.level == 3', true],
  ['claims.level > 2 && claims.level < 4', true],
  ['claims.admin == false', true],
  ['"write" in identity.permissions', true],
  ['"delete" in identity.permissions', false],
  ['"id" in claims.org', true],
  ['"missing" in claims.org', false],
  ['has(claims.org.plan)', true],
  ['has(claims.nothing)', false],
  ['size(identity.permissions) == 2', true],
  ['size(claims.sub) == 5', true],
  ['request.path.startsWith("/tenants/")', true],
  ['request.path.endsWith("/7") && request.host.contains("acme")', true],
  ['request.query.tag[1] == "b"', true],
  ['request.headers["x-team"] == "blue"', true],
  ['now > timestamp("2025-12-31T00:00:00Z")', true],
  ['identity.permissions.exists(p, p == "write")', true],
  ['identity.roles.all(r, r.startsWith("read"))', true],
  // Short-circuit: the erroring side is never needed.
  ['false && claims.missing == 1', false],
  ['true || claims.missing == 1', true],
  ['claims.missing == 1 || true', true],
  ['claims.missing == 1 && false', false],
];

describe('CEL semantics we rely on', () => {
  it.each(SEMANTICS)('%s → %s', (source, allowed) => {
    expect(run(source).allowed).toBe(allowed);
  });
});

describe('rules', () => {
  it.each([
    ['tenant from the path, with write permission', 'claims.tenant == params.tenant && "write" in identity.permissions', input(), true],
    ['another tenant in the path', 'claims.tenant == params.tenant', input({ params: { tenant: 'globex' } }), false],
    ['owner', 'params.owner == identity.subject || "admin" in identity.roles', input(), true],
    ['admin, not owner', 'params.owner == identity.subject || "admin" in identity.roles', input({ params: { owner: 'bob' }, identity: { subject: 'carol', roles: ['admin'] } }), true],
    ['neither owner nor admin', 'params.owner == identity.subject || "admin" in identity.roles', input({ params: { owner: 'bob' } }), false],
  ])('%s', (_name, source, values, allowed) => {
    expect(run(source, values).allowed).toBe(allowed);
  });

  it.each([
    ['a missing claim', 'claims.tenant == params.tenant', input({ claims: {} }), 'expression error: No such key: tenant'],
    ['a missing nested claim', 'claims.org.region == "eu"', input(), 'expression error: No such key: region'],
    ['a type mismatch at run time', 'claims.tenant > 3', input(), 'expression error:'],
    ['in on a non-list', '"x" in claims.tenant', input(), 'expression error:'],
    ['a string result', 'claims.tenant', input(), 'expression yielded a string, not true'],
    ['an int result', 'claims.level', input(), 'expression yielded'],
    ['a list result', 'identity.roles', input(), 'expression yielded a list, not true'],
    ['false', 'claims.admin', input(), 'expression is false'],
  ])('denies on %s, with a reason', (_name, source, values, reason) => {
    const verdict = run(source, values);
    expect(verdict.allowed).toBe(false);
    expect(verdict.reason).toContain(reason);
  });
});

describe('compileExpression refuses, with the offset inside the expression', () => {
  it.each([
    ['a syntax error', 'claims.tenant == ', 17, 'Unexpected token'],
    ['an unclosed string', 'claims.tenant == "acme', 17, ''],
    ['an unknown variable', 'claims.tenant == tenant', 17, 'tenant'],
    ['an impossible operator', 'params.tenant + 1 == 2', 0, 'no such overload'],
    ['a non-boolean type', 'size(claims)', 0, 'a rule must yield bool'],
    ['a string-typed expression', 'params.tenant', 0, 'a rule must yield bool'],
    ['matches()', 'true && request.path.matches("^(a+)+$")', 8, 'matches() is not available'],
    ['a macro inside a macro', 'identity.roles.all(r, identity.permissions.exists(p, p == r))', 22, 'inside another macro'],
  ])('%s', (_name, source, offset, message) => {
    const compiled = compileExpression(source);
    expect(compiled.ok).toBe(false);
    if (compiled.ok) return;
    expect(compiled.offset).toBe(offset);
    expect(compiled.message).toContain(message);
  });

  it('a huge expression, by length and by AST size', () => {
    const long = compileExpression(`claims.sub == "${'a'.repeat(EXPRESSION_LIMITS.maxLength)}"`);
    expect(long).toMatchObject({ ok: false, message: expect.stringContaining(`at most ${EXPRESSION_LIMITS.maxLength}`) });
    const wide = compileExpression(Array.from({ length: 100 }, () => '1==1').join('||'));
    expect(wide).toMatchObject({ ok: false, message: `Exceeded maxAstNodes (${EXPRESSION_LIMITS.maxAstNodes})` });
    const deep = compileExpression(`${'('.repeat(40)}true${')'.repeat(40)}`);
    expect(deep).toMatchObject({ ok: false, message: `Exceeded maxDepth (${EXPRESSION_LIMITS.maxDepth})` });
  });
});
