import { describe, expect, it } from 'vitest';
import { boundUrl, demoAddress, DemoListenError } from '../../src/demo/listen.js';

describe('demoAddress', () => {
  it.each([
    ['http://127.0.0.1:9400', { host: '127.0.0.1', port: 9400, basePath: '' }],
    ['http://127.0.0.1:0', { host: '127.0.0.1', port: 0, basePath: '' }],
    ['http://localhost', { host: 'localhost', port: 80, basePath: '' }],
    ['http://[::1]:9400/realms/demo/', { host: '::1', port: 9400, basePath: '/realms/demo' }],
  ])('%s', (url, expected) => {
    expect(demoAddress(url, 'VAR')).toEqual(expected);
  });

  it.each([
    ['127.0.0.1:9400', /VAR=127\.0\.0\.1:9400 is not a URL/],
    ['https://127.0.0.1:9400', /VAR=https:\/\/127\.0\.0\.1:9400 must be an http:\/\/ URL/],
    ['not a url', /VAR=not a url is not a URL/],
  ])('refuses %s naming the variable', (url, message) => {
    expect(() => demoAddress(url, 'VAR')).toThrow(DemoListenError);
    expect(() => demoAddress(url, 'VAR')).toThrow(message);
  });
});

describe('boundUrl', () => {
  it.each([
    ['the requested URL when the port was fixed', 'http://localhost:9400', 9400, 'http://localhost:9400'],
    ['the real port when 0 was asked for', 'http://127.0.0.1:0', 43125, 'http://127.0.0.1:43125'],
    ['IPv6 in brackets, base path kept', 'http://[::1]:0/realms/demo', 43125, 'http://[::1]:43125/realms/demo'],
  ])('%s', (_name, requested, port, expected) => {
    expect(boundUrl(requested, demoAddress(requested, 'VAR'), port)).toBe(expected);
  });
});
