import { describe, expect, it } from 'vitest';
import { claimAsList, claimAsString, readClaim, scopeList } from '../../src/identity/claim-path.js';

const claims: Readonly<Record<string, unknown>> = JSON.parse(
  JSON.stringify({
    sub: 'alice',
    'https://example.com/roles': ['admin'],
    'https://example.com': { roles: ['shadowed'] },
    realm_access: { roles: ['realm-admin', 'user'] },
    resource_access: { 'my-client': { roles: ['editor'] }, 'other.client': { roles: ['viewer'] } },
    'other.client': 'top-level wins',
    email_verified: true,
    level: 3,
    empty: '',
    nothing: null,
    list_of_objects: [{ a: 1 }],
    nested: { deeper: { value: 'deep' }, list: ['x'] },
  }),
);
// JSON.parse makes "__proto__" an own property, exactly as a token payload would.
const hostile: Readonly<Record<string, unknown>> = JSON.parse('{"__proto__": {"roles": ["admin"]}, "a": {"__proto__": {"b": 1}}}');

describe('readClaim', () => {
  it.each<[string, Readonly<Record<string, unknown>>, string, unknown]>([
    ['top-level claim', claims, 'sub', 'alice'],
    ['URL-shaped claim name taken whole', claims, 'https://example.com/roles', ['admin']],
    ['nested path', claims, 'realm_access.roles', ['realm-admin', 'user']],
    ['nested path with a dash', claims, 'resource_access.my-client.roles', ['editor']],
    ['three levels', claims, 'nested.deeper.value', 'deep'],
    ['whole name wins over the walk', claims, 'other.client', 'top-level wins'],
    ['boolean', claims, 'email_verified', true],
    ['number', claims, 'level', 3],
    ['empty string is a value', claims, 'empty', ''],
    ['null is returned as is', claims, 'nothing', null],
    ['object at the end of the path', claims, 'nested.deeper', { value: 'deep' }],
    ['missing top-level', claims, 'missing', undefined],
    ['missing nested', claims, 'realm_access.groups', undefined],
    ['walk through a string', claims, 'sub.length', undefined],
    ['walk through an array', claims, 'nested.list.0', undefined],
    ['walk through an array by length', claims, 'nested.list.length', undefined],
    ['walk through null', claims, 'nothing.x', undefined],
    ['empty segment', claims, 'realm_access..roles', undefined],
    ['trailing dot', claims, 'realm_access.', undefined],
    ['empty path', claims, '', undefined],
    ['prototype member by name', claims, 'toString', undefined],
    ['prototype member via walk', claims, 'nested.constructor', undefined],
    ['constructor.name', claims, 'constructor.name', undefined],
    ['__proto__ own property of a payload is plain data', hostile, '__proto__.roles', ['admin']],
    ['__proto__ one level down', hostile, 'a.__proto__.b', 1],
  ])('%s', (_name, source, path, expected) => {
    expect(readClaim(source, path)).toEqual(expected);
  });

  it('does not read through the prototype of an object literal claim set', () => {
    const literal: Record<string, unknown> = { plain: {} };
    expect(readClaim(literal, 'plain.hasOwnProperty')).toBeUndefined();
    expect(readClaim(literal, '__proto__')).toBeUndefined();
  });

  it('does not walk into class instances', () => {
    expect(readClaim({ when: new Date(0) }, 'when.getTime')).toBeUndefined();
  });
});

describe('claimAsList', () => {
  it.each<[string, unknown, readonly string[]]>([
    ['string is one member', 'admin', ['admin']],
    ['space-separated string is NOT split', 'a b', ['a b']],
    ['array of strings', ['a', 'b'], ['a', 'b']],
    ['numbers and booleans become strings', [1, true, false, 2.5], ['1', 'true', 'false', '2.5']],
    ['objects, arrays and null members are skipped', ['a', { b: 1 }, ['c'], null], ['a']],
    ['number alone is not a list', 42, []],
    ['boolean alone is not a list', true, []],
    ['object is not a list', { roles: ['a'] }, []],
    ['null', null, []],
    ['undefined', undefined, []],
  ])('%s', (_name, value, expected) => {
    expect(claimAsList(value)).toEqual(expected);
  });
});

describe('scopeList', () => {
  it.each<[string, unknown, readonly string[]]>([
    ['space-separated string', 'read write', ['read', 'write']],
    ['runs of spaces', '  read   write ', ['read', 'write']],
    ['single scope', 'data:write', ['data:write']],
    ['empty string', '', []],
    ['array', ['read', 'write'], ['read', 'write']],
    ['array members are not split', ['read write'], ['read write']],
    ['non-string', 7, []],
    ['undefined', undefined, []],
  ])('%s', (_name, value, expected) => {
    expect(scopeList(value)).toEqual(expected);
  });
});

describe('claimAsString', () => {
  it.each<[string, unknown, string | undefined]>([
    ['string', 'x', 'x'],
    ['number', 12, '12'],
    ['boolean', false, 'false'],
    ['non-finite number', Number.POSITIVE_INFINITY, undefined],
    ['array', ['x'], undefined],
    ['object', { x: 1 }, undefined],
    ['null', null, undefined],
  ])('%s', (_name, value, expected) => {
    expect(claimAsString(value)).toBe(expected);
  });
});
