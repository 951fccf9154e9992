import { describe, expect, it } from 'vitest';
import { parseAllowedRedirect, type AllowedRedirect } from '../../src/config/login.js';
import { safeReturnTo, type RedirectPolicy } from '../../src/login/return-to.js';

function allowed(text: string): AllowedRedirect {
  const entry = parseAllowedRedirect(text);
  if (typeof entry === 'string') throw new Error(entry);
  return entry;
}

const policy: RedirectPolicy = {
  origin: 'https://app.example.com',
  allowed: [allowed('https://docs.example.org'), allowed('https://*.example.com')],
};

describe('safeReturnTo', () => {
  it.each([
    // Same-origin paths are kept (re-serialized by the URL parser).
    ['/', '/'],
    ['/app/page?x=1#top', '/app/page?x=1#top'],
    ['/app/a b'.replace(' ', '%20'), '/app/a%20b'],
    ['/app/../admin', '/admin'],
    ['https://app.example.com/app/x?y=2', '/app/x?y=2'],
    // Listed origins, exact and by subdomain wildcard.
    ['https://docs.example.org/guide', 'https://docs.example.org/guide'],
    ['https://shop.example.com/cart', 'https://shop.example.com/cart'],
    ['https://a.b.example.com/', 'https://a.b.example.com/'],
  ])('keeps %j as %j', (raw, expected) => {
    expect(safeReturnTo(raw, policy)).toBe(expected);
  });

  it.each([
    // Protocol-relative and backslash forms a browser reads as another host.
    '//evil.example',
    '//evil.example/app',
    '/\\evil.example',
    '\\\\evil.example',
    '/.//evil.example',
    'https://app.example.com//evil.example',
    // Scheme without slashes: a browser resolves it to https://evil.example.
    'https:evil.example',
    'https:/evil.example',
    // Encoded slashes an upstream or a later decode could turn into //evil.example.
    '/%2F%2Fevil.example',
    '/%2f%2fevil.example',
    '/%5Cevil.example',
    '/%5C%5Cevil.example',
    '/%E0%A4%A', // undecodable
    // Script and other schemes.
    'javascript:alert(1)',
    'JavaScript:alert(1)',
    'data:text/html,<script>alert(1)</script>',
    'ftp://shop.example.com/',
    // Hosts that merely end with an allowed one, or contain it.
    'https://notexample.com/',
    'https://evildocs.example.org/',
    'https://app.example.com.evil.example/',
    'https://evilexample.com/',
    'https://example.com/',
    'https://docs.example.org.evil.example/',
    'https://xdocs.example.org/',
    'https://app.example.com@evil.example/',
    'https://user@shop.example.com/',
    // Another scheme or port than the listed origin.
    'http://docs.example.org/',
    'http://shop.example.com/',
    'https://shop.example.com:8443/',
    'https://docs.example.org:444/',
    // CR/LF, tab, NUL, DEL and spaces, which the parser would drop or trim.
    '/app\r\nSet-Cookie: x=1',
    '/\r\n//evil.example',
    '/\t/evil.example',
    '/app\u0000',
    '/app\u007f',
    ' //evil.example',
    '/app ',
    // Not a path and not an absolute URL.
    'evil.example',
    'app/page',
    '',
    undefined,
    `/${'a'.repeat(2048)}`,
  ])('refuses %j (returns to /)', (raw) => {
    expect(safeReturnTo(raw, policy)).toBe('/');
  });

  it('with no allowed_redirects, every other origin returns to /', () => {
    const own = { origin: 'http://127.0.0.1:8080', allowed: [] };
    expect(safeReturnTo('http://127.0.0.1:8080/x', own)).toBe('/x');
    expect(safeReturnTo('http://127.0.0.1:8081/x', own)).toBe('/');
    expect(safeReturnTo('http://localhost:8080/x', own)).toBe('/');
  });
});

describe('parseAllowedRedirect', () => {
  it.each([
    ['https://app.example.com', { kind: 'origin', origin: 'https://app.example.com' }],
    ['https://app.example.com/', { kind: 'origin', origin: 'https://app.example.com' }],
    ['https://App.Example.com:443', { kind: 'origin', origin: 'https://app.example.com' }],
    ['http://127.0.0.1:8080', { kind: 'origin', origin: 'http://127.0.0.1:8080' }],
    ['https://*.example.com', { kind: 'subdomains', protocol: 'https:', suffix: '.example.com', port: '' }],
    ['https://*.Example.com:8443', { kind: 'subdomains', protocol: 'https:', suffix: '.example.com', port: '8443' }],
  ])('%j', (text, expected) => {
    expect(parseAllowedRedirect(text)).toEqual(expected);
  });

  it.each([
    ['app.example.com', 'expected an origin'],
    ['javascript:alert(1)', 'expected an http or https origin'],
    ['https://app.example.com/path', 'origin only'],
    ['https://app.example.com?x', 'origin only'],
    ['https://u:p@app.example.com', 'origin only'],
    ['https://a*.example.com', 'whole first label'],
    ['https://*.*.example.com', 'whole first label'],
    ['https://app.*.com', 'whole first label'],
  ])('%j is refused: %s', (text, message) => {
    expect(parseAllowedRedirect(text)).toContain(message);
  });
});
