import { describe, expect, it } from 'vitest';
import type { Identity } from '../../../src/identity/identity.js';
import type { RequireRules } from '../../../src/config/types.js';
import { evaluateRules, explainRules, type RuleName } from '../../../src/mechanisms/authorizers/require.js';
import { identity, rules } from '../../helpers/identity.js';

const any = (...values: string[]) => ({ mode: 'any' as const, values });
const all = (...values: string[]) => ({ mode: 'all' as const, values });

/** [case, rules, identity, failing rule or undefined when the rules hold] */
const table: Array<[string, RequireRules, Identity, RuleName | undefined]> = [
  ['no rules at all', rules({}), identity(), undefined],

  ['roles any: one of them', rules({ roles: any('admin', 'ops') }), identity({ roles: ['user', 'ops'] }), undefined],
  ['roles any: none of them', rules({ roles: any('admin', 'ops') }), identity({ roles: ['user'] }), 'roles'],
  ['roles any: no roles at all', rules({ roles: any('admin') }), identity(), 'roles'],
  ['roles: case matters', rules({ roles: any('admin') }), identity({ roles: ['Admin'] }), 'roles'],
  ['roles: no prefix match', rules({ roles: any('admin') }), identity({ roles: ['admins', 'admi'] }), 'roles'],
  ['roles: no trimming', rules({ roles: any('admin') }), identity({ roles: [' admin', 'admin '] }), 'roles'],
  ['roles all: every one', rules({ roles: all('a', 'b') }), identity({ roles: ['b', 'c', 'a'] }), undefined],
  ['roles all: one missing', rules({ roles: all('a', 'b') }), identity({ roles: ['a'] }), 'roles'],

  ['permissions all: every one', rules({ permissions: all('read', 'write') }), identity({ permissions: ['write', 'read'] }), undefined],
  ['permissions all: readwrite is not read', rules({ permissions: all('read') }), identity({ permissions: ['readwrite'] }), 'permissions'],
  ['permissions all: one missing', rules({ permissions: all('read', 'write') }), identity({ permissions: ['read'] }), 'permissions'],
  ['permissions any', rules({ permissions: any('read', 'write') }), identity({ permissions: ['write'] }), undefined],
  ['permissions: a role does not count', rules({ permissions: all('write') }), identity({ roles: ['write'] }), 'permissions'],

  ['scopes any', rules({ scopes: any('data:write', 'data:admin') }), identity({ scopes: ['openid', 'data:admin'] }), undefined],
  ['scopes any: near miss', rules({ scopes: any('data:write') }), identity({ scopes: ['data:writer', 'data'] }), 'scopes'],
  ['scopes all: one missing', rules({ scopes: all('a', 'b') }), identity({ scopes: ['a'] }), 'scopes'],

  ['claims: boolean equal', rules({ claims: { email_verified: true } }), identity({ claims: { email_verified: true } }), undefined],
  ['claims: true is not "true"', rules({ claims: { email_verified: true } }), identity({ claims: { email_verified: 'true' } }), 'claims'],
  ['claims: "true" is not true', rules({ claims: { flag: 'true' } }), identity({ claims: { flag: true } }), 'claims'],
  ['claims: false is not absent', rules({ claims: { blocked: false } }), identity({ claims: {} }), 'claims'],
  ['claims: number equal', rules({ claims: { tier: 2 } }), identity({ claims: { tier: 2 } }), undefined],
  ['claims: 1 is not "1"', rules({ claims: { tier: 1 } }), identity({ claims: { tier: '1' } }), 'claims'],
  ['claims: string exact', rules({ claims: { type: 'access' } }), identity({ claims: { type: 'refresh' } }), 'claims'],
  ['claims: string case matters', rules({ claims: { type: 'access' } }), identity({ claims: { type: 'Access' } }), 'claims'],
  ['claims: array contains', rules({ claims: { groups: 'eng' } }), identity({ claims: { groups: ['ops', 'eng'] } }), undefined],
  ['claims: array lacks', rules({ claims: { groups: 'eng' } }), identity({ claims: { groups: ['engineering'] } }), 'claims'],
  ['claims: array of numbers', rules({ claims: { levels: 3 } }), identity({ claims: { levels: [1, 3] } }), undefined],
  ['claims: array with "3" is not 3', rules({ claims: { levels: 3 } }), identity({ claims: { levels: ['3'] } }), 'claims'],
  ['claims: nested array does not count', rules({ claims: { groups: 'eng' } }), identity({ claims: { groups: [['eng']] } }), 'claims'],
  ['claims: object is not equal', rules({ claims: { org: 'acme' } }), identity({ claims: { org: { name: 'acme' } } }), 'claims'],
  ['claims: nested path', rules({ claims: { 'realm_access.roles': 'admin' } }), identity({ claims: { realm_access: { roles: ['admin'] } } }), undefined],
  ['claims: URL-shaped name', rules({ claims: { 'https://example.com/tenant': 't1' } }), identity({ claims: { 'https://example.com/tenant': 't1' } }), undefined],
  ['claims: every key must hold', rules({ claims: { a: 1, b: 2 } }), identity({ claims: { a: 1, b: 3 } }), 'claims'],
  ['claims: prototype member never matches', rules({ claims: { 'constructor.name': 'Object' } }), identity({ claims: {} }), 'claims'],

  [
    'all keys hold together',
    rules({ roles: any('admin'), permissions: all('write'), scopes: any('api'), claims: { email_verified: true } }),
    identity({ roles: ['admin'], permissions: ['write'], scopes: ['api'], claims: { email_verified: true } }),
    undefined,
  ],
  [
    'first failing key is reported in order roles, permissions, scopes, claims',
    rules({ roles: any('admin'), permissions: all('write'), scopes: any('api'), claims: { email_verified: true } }),
    identity({ roles: ['admin'], permissions: ['read'], scopes: [], claims: {} }),
    'permissions',
  ],
  [
    'a passing key does not rescue a failing one',
    rules({ roles: any('admin'), claims: { email_verified: true } }),
    identity({ roles: ['admin'], claims: { email_verified: false } }),
    'claims',
  ],
];

describe('evaluateRules', () => {
  it.each(table)('%s', (_name, given, who, failing) => {
    const outcome = evaluateRules(given, who);
    if (failing === undefined) expect(outcome).toEqual({ ok: true });
    else expect(outcome).toMatchObject({ ok: false, rule: failing });
  });

  it('describes a failed list rule with what was needed and what the identity has', () => {
    expect(evaluateRules(rules({ roles: any('admin') }), identity({ roles: ['user'] }))).toEqual({
      ok: false,
      rule: 'roles',
      reason: 'needs any of roles [admin]; has [user]',
    });
  });

  it('names the required scopes when a scope rule failed, and only then', () => {
    expect(evaluateRules(rules({ scopes: all('data:read', 'data:write') }), identity({ scopes: ['data:read'] }))).toEqual({
      ok: false,
      rule: 'scopes',
      reason: 'needs all of scopes [data:read, data:write]; has [data:read]',
      requiredScopes: ['data:read', 'data:write'],
    });
    expect(evaluateRules(rules({ permissions: all('x') }), identity())).not.toHaveProperty('requiredScopes');
  });

  it('describes a failed claim rule with the expected and actual values', () => {
    const outcome = evaluateRules(rules({ claims: { email_verified: true } }), identity({ claims: { email_verified: 'true' } }));
    expect(outcome).toMatchObject({ reason: 'claim email_verified must equal true; has "true"' });
    const missing = evaluateRules(rules({ claims: { groups: 'eng' } }), identity({ claims: { groups: ['ops'] } }));
    expect(missing).toMatchObject({ reason: 'claim groups must contain "eng"; has ["ops"]' });
  });

  it('keeps reasons bounded when an identity carries very many values', () => {
    const many = Array.from({ length: 500 }, (_, i) => `group-${i}`);
    const outcome = evaluateRules(rules({ roles: any('admin') }), identity({ roles: many }));
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) {
      expect(outcome.reason).toContain('…+480 more');
      expect(outcome.reason.length).toBeLessThan(400);
    }
  });
});

describe('explainRules', () => {
  it('lists every configured rule with its verdict, one entry per claim', () => {
    const given = rules({ roles: any('admin'), scopes: any('api'), claims: { email_verified: true, tier: 2 } });
    const who = identity({ roles: ['admin'], scopes: ['web'], claims: { email_verified: true, tier: 1 } });
    expect(explainRules(given, who)).toEqual([
      { rule: 'roles', ok: true, detail: 'needs any of roles [admin]; has [admin]' },
      { rule: 'scopes', ok: false, detail: 'needs any of scopes [api]; has [web]' },
      { rule: 'claims', ok: true, detail: 'claim email_verified must equal true; has true' },
      { rule: 'claims', ok: false, detail: 'claim tier must equal 2; has 1' },
    ]);
  });

  it('agrees with evaluateRules on every table case', () => {
    for (const [, given, who, failing] of table) {
      const firstFailure = explainRules(given, who).find((entry) => !entry.ok);
      expect(firstFailure?.rule).toBe(failing);
    }
  });

  it('says nothing when there are no rules', () => {
    expect(explainRules(rules({}), identity())).toEqual([]);
  });
});
