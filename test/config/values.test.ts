import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/config/duration.js';
import { closest, editDistance } from '../../src/config/suggest.js';
import { isOrigin, parseHostPattern, parseKeyServerUrl, parseListen } from '../../src/config/values.js';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['0s', 0],
    ['30s', 30_000],
    ['10m', 600_000],
    ['1h', 3_600_000],
    ['7d', 604_800_000],
    ['1.5s', undefined],
    ['30', undefined],
    ['30 s', undefined],
    ['-1s', undefined],
    ['1h30m', undefined],
    ['10S', undefined],
    ['1w', undefined],
    ['', undefined],
    ['99999999999999999d', undefined],
  ])('%j → %j', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });
});

describe('parseListen', () => {
  it.each([
    ['0.0.0.0:8080', { host: '0.0.0.0', port: 8080 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:8080', { host: '::1', port: 8080 }],
    ['[::]:443', { host: '::', port: 443 }],
    ['localhost:9090', { host: 'localhost', port: 9090 }],
    ['8080', 'expected host:port, got "8080"'],
    ['::1:8080', '"::1" is not an IP address or host name (write IPv6 addresses as [::1]:8080)'],
    ['127.0.0.1:65536', '"65536" is not a port number'],
    ['127.0.0.1:', '"" is not a port number'],
    ['127.0.0.1:08', '"08" is not a port number'],
    ['bad_host:80', '"bad_host" is not an IP address or host name (write IPv6 addresses as [::1]:8080)'],
  ])('%j → %j', (text, expected) => {
    expect(parseListen(text)).toEqual(expected);
  });
});

describe('parseHostPattern', () => {
  it.each([
    ['API.Example.com', 'api.example.com'],
    ['*.example.com', '*.example.com'],
    ['127.0.0.1', '127.0.0.1'],
    ['[::1]', '[::1]'],
    ['*', { error: '"*" is not a host name or "*.suffix" pattern' }],
    ['api.*.com', { error: '"api.*.com" is not a host name or "*.suffix" pattern' }],
    ['api.example.com:8443', { error: '"api.example.com:8443" must not have a :port (hosts are matched without the request\'s port)' }],
    ['*.example.com:443', { error: '"*.example.com:443" must not have a :port (hosts are matched without the request\'s port)' }],
    ['[::1]:8080', { error: '"[::1]:8080" must not have a :port (hosts are matched without the request\'s port)' }],
    ['api.example.com:x', { error: '"api.example.com:x" must not have a :port (hosts are matched without the request\'s port)' }],
    ['exa mple.com', { error: '"exa mple.com" is not a host name or "*.suffix" pattern' }],
  ])('%j → %j', (text, expected) => {
    expect(parseHostPattern(text)).toEqual(expected);
  });
});

describe('parseKeyServerUrl', () => {
  const https = 'must be an https URL (plain http only to 127.0.0.1, [::1] or localhost)';
  it.each([
    ['https://idp.example.com/', 'https://idp.example.com/'],
    ['http://127.0.0.1:9400', 'http://127.0.0.1:9400/'],
    ['http://127.8.0.1', 'http://127.8.0.1/'],
    ['http://[::1]:9400/jwks', 'http://[::1]:9400/jwks'],
    ['http://localhost/', 'http://localhost/'],
    ['http://idp.example.com/', https],
    ['http://127.0.0.1.evil.com/', https],
    ['ftp://idp.example.com/', https],
    ['https://user:pw@idp.example.com/', 'must not contain credentials'],
    ['idp.example.com', '"idp.example.com" is not a URL'],
  ])('%j → %j', (text, expected) => {
    const url = parseKeyServerUrl(text);
    expect(typeof url === 'string' ? url : url.href).toBe(expected);
  });
});

describe('isOrigin', () => {
  it.each([
    ['https://app.example.com', true],
    ['http://localhost:3000', true],
    ['*', true],
    ['https://app.example.com/', false],
    ['https://app.example.com/path', false],
    ['app.example.com', false],
    ['ftp://app.example.com', false],
  ])('%j → %j', (text, expected) => {
    expect(isOrigin(text)).toBe(expected);
  });
});

describe('editDistance and closest', () => {
  it.each([
    ['api', 'api', 0],
    ['apii', 'api', 1],
    ['GTE', 'GET', 1],
    ['upstrem', 'upstream', 1],
    ['kitten', 'sitting', 3],
    ['', 'abc', 3],
  ])('editDistance(%j, %j) = %j', (a, b, distance) => {
    expect(editDistance(a, b)).toBe(distance);
  });

  it.each([
    ['apii', ['web', 'api'], 'api'],
    ['rs256', ['RS256', 'RS384'], 'RS256'],
    ['trusted_proxy', ['listen', 'trusted_proxies'], 'trusted_proxies'],
    ['billing', ['api', 'web'], undefined],
    ['ab', ['xy'], undefined],
  ])('closest(%j, %j) = %j', (word, candidates, expected) => {
    expect(closest(word, candidates)).toBe(expected);
  });
});
