import { describe, expect, it } from 'vitest';
import type { CorsConfig } from '../../../src/config/types.js';
import { compileCors } from '../../../src/mechanisms/cors/policy.js';

const APP = 'https://app.example.com';
const withCredentials: CorsConfig = {
  origins: [APP],
  methods: ['GET', 'POST'],
  headers: ['Authorization', 'Content-Type'],
  credentials: true,
  maxAgeMs: 600_000,
};
const anyOrigin: CorsConfig = { ...withCredentials, origins: ['*'], credentials: false };

const PREFLIGHT_VARY = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers';

describe('compileCors: actual responses', () => {
  it.each([
    { case: 'a listed origin is echoed, with credentials', config: withCredentials, origin: APP,
      expected: { 'access-control-allow-origin': APP, 'access-control-allow-credentials': 'true', vary: 'Origin' } },
    { case: 'origins compare case-insensitively; the request\'s spelling is echoed', config: withCredentials, origin: 'https://APP.example.com',
      expected: { 'access-control-allow-origin': 'https://APP.example.com', 'access-control-allow-credentials': 'true', vary: 'Origin' } },
    { case: 'another origin gets only Vary', config: withCredentials, origin: 'https://evil.example.com', expected: { vary: 'Origin' } },
    { case: 'another scheme is another origin', config: withCredentials, origin: 'http://app.example.com', expected: { vary: 'Origin' } },
    { case: '* without credentials answers *', config: anyOrigin, origin: 'https://any.example.com',
      expected: { 'access-control-allow-origin': '*', vary: 'Origin' } },
  ])('$case', ({ config, origin, expected }) => {
    expect(compileCors(config).responseHeaders(origin)).toEqual(expected);
  });
});

describe('compileCors: preflights', () => {
  const granted = {
    'access-control-allow-origin': APP,
    'access-control-allow-methods': 'GET, POST',
    'access-control-allow-headers': 'Authorization, Content-Type',
    'access-control-max-age': '600',
    'access-control-allow-credentials': 'true',
    vary: PREFLIGHT_VARY,
  };
  it.each([
    { case: 'listed origin, method and headers', origin: APP, method: 'POST', requested: 'authorization, content-type', expected: granted },
    { case: 'requested header names in any case and spacing', origin: APP, method: 'GET', requested: ' Authorization ,CONTENT-TYPE', expected: granted },
    { case: 'CORS-safelisted headers need no listing', origin: APP, method: 'GET', requested: 'accept, accept-language, content-language', expected: granted },
    { case: 'no requested headers', origin: APP, method: 'GET', requested: undefined, expected: granted },
    { case: 'an origin not on the list', origin: 'https://evil.example.com', method: 'GET', requested: undefined, expected: undefined },
    { case: 'a method not on the list', origin: APP, method: 'DELETE', requested: undefined, expected: undefined },
    { case: 'a header not on the list', origin: APP, method: 'GET', requested: 'authorization, x-user-id', expected: undefined },
  ])('$case', ({ origin, method, requested, expected }) => {
    expect(compileCors(withCredentials).preflightHeaders(origin, method, requested)).toEqual(expected);
  });

  it('answers * for any origin when credentials are off, and says nothing about credentials', () => {
    expect(compileCors(anyOrigin).preflightHeaders('https://any.example.com', 'GET', undefined)).toEqual({
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'GET, POST',
      'access-control-allow-headers': 'Authorization, Content-Type',
      'access-control-max-age': '600',
      vary: PREFLIGHT_VARY,
    });
  });
});
