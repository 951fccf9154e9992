import { describe, expect, it } from 'vitest';
import { compileHostMatcher, normalizeHost } from '../../src/routing/hosts.js';

describe('normalizeHost', () => {
  it.each([
    ['api.example.com', 'api.example.com'],
    ['API.Example.COM', 'api.example.com'],
    ['api.example.com:8080', 'api.example.com'],
    ['api.example.com.', 'api.example.com'],
    ['api.example.com.:443', 'api.example.com'],
    ['localhost', 'localhost'],
    ['127.0.0.1:80', '127.0.0.1'],
    ['api.example.com:65535', 'api.example.com'],
    ['api.example.com:1', 'api.example.com'],
    ['[::1]', '[::1]'],
    ['[::1]:8080', '[::1]'],
    ['[2001:DB8::1]', '[2001:db8::1]'],
    ['under_score.example.com', 'under_score.example.com'],
  ])('%j → %j', (host, expected) => {
    expect(normalizeHost(host)).toBe(expected);
  });

  it.each([
    '',
    '.',
    ':8080',
    'api.example.com:',
    'api.example.com:http',
    'api.example.com:123456',
    'api.example.com:0',
    'api.example.com:00000',
    'api.example.com:65536',
    'api.example.com:99999',
    'shop.example.com:@docs.example.com',
    'api.example.com:80:80',
    'api.example.com..',
    'api..example.com',
    '.api.example.com',
    'evil.com/.example.com',
    'evil.com#.example.com',
    'user@api.example.com',
    'api example.com',
    'api.example.com\u0000',
    'caf\u00e9.example.com',
    '[::1',
    '[]',
    '[::1]x',
    '[::1]:',
    '[::g]',
  ])('%j is not a host', (host) => {
    expect(normalizeHost(host)).toBeUndefined();
  });
});

describe('compileHostMatcher', () => {
  const allowed = compileHostMatcher(['api.example.com', '*.apps.example.com', 'localhost']);

  it.each([
    ['api.example.com', true],
    ['API.EXAMPLE.COM:8443', true],
    ['api.example.com.', true],
    ['localhost:8080', true],
    ['a.apps.example.com', true],
    ['a.b.apps.example.com', true],
    ['A.Apps.Example.Com', true],
    ['apps.example.com', false],
    ['.apps.example.com', false],
    ['xapps.example.com', false],
    ['example.com', false],
    ['api.example.com.evil.com', false],
    ['evil.com#.apps.example.com', false],
    ['other.example.com', false],
    ['', false],
  ])('%j → %s', (host, expected) => {
    expect(allowed(host)).toBe(expected);
  });

  it('matches nothing when the list is empty', () => {
    expect(compileHostMatcher([])('api.example.com')).toBe(false);
  });
});
