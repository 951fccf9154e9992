import { describe, expect, it } from 'vitest';
import type { CredentialSearch as TokenExtraction } from '../../../src/chain/kinds.js';
import { compileTokenQueryStripper } from '../../../src/mechanisms/credentials/query.js';
import { compileTokenExtractor } from '../../../src/mechanisms/credentials/search.js';
import { MAX_TOKEN_LENGTH } from '../../../src/http/bearer.js';
import type { TokenSource } from '../../../src/config/types.js';

const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl';
const OTHER = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIyIn0.c2ln';

const header: TokenSource = { kind: 'header', name: 'Authorization' };
const cookie: TokenSource = { kind: 'cookie', name: 'access_token' };
const query: TokenSource = { kind: 'query', name: 'access_token' };
const customHeader: TokenSource = { kind: 'header', name: 'X-Access-Token' };
const queryToken: TokenSource = { kind: 'query', name: 'token' };

const defaultSources = [header, cookie];
const withQuery = [header, cookie, query];

interface Case {
  readonly name: string;
  readonly sources?: readonly TokenSource[];
  readonly headers?: NodeJS.Dict<string[]>;
  readonly query?: string;
  readonly upgrade?: boolean;
  readonly expected: TokenExtraction | 'invalid_request';
}

const token = (value: string, source: TokenSource): TokenExtraction => ({ ok: true, credential: { scheme: 'bearer', value, source } });
const dpop = (value: string, proof: string): TokenExtraction => ({ ok: true, credential: { scheme: 'dpop', value, proof, source: header } });
const none: TokenExtraction = { ok: true, credential: undefined };
const PROOF = 'eyJ0eXAiOiJkcG9wK2p3dCJ9.eyJqdGkiOiJ4In0.c2lnbmF0dXJl';

const cases: Case[] = [
  { name: 'no credentials', expected: none },
  { name: 'Bearer token', headers: { authorization: [`Bearer ${JWT}`] }, expected: token(JWT, header) },
  { name: 'scheme in lower case', headers: { authorization: [`bearer ${JWT}`] }, expected: token(JWT, header) },
  { name: 'scheme in odd case', headers: { authorization: [`BeArEr ${JWT}`] }, expected: token(JWT, header) },
  { name: 'several spaces after the scheme', headers: { authorization: [`Bearer    ${JWT}`] }, expected: token(JWT, header) },
  { name: 'b64token with = padding', headers: { authorization: ['Bearer abc+/~-._=='] }, expected: token('abc+/~-._==', header) },
  { name: 'Basic is not a token', headers: { authorization: ['Basic dXNlcjpwYXNz'] }, expected: none },
  { name: 'Digest is not a token', headers: { authorization: ['Digest username="a"'] }, expected: none },
  { name: 'a scheme that only starts with Bearer', headers: { authorization: [`Bearerx ${JWT}`] }, expected: none },
  { name: 'empty Authorization', headers: { authorization: [''] }, expected: none },
  { name: 'Bearer alone', headers: { authorization: ['Bearer'] }, expected: 'invalid_request' },
  { name: 'Bearer with trailing space only', headers: { authorization: ['Bearer '] }, expected: 'invalid_request' },
  { name: 'extra words after the token', headers: { authorization: [`Bearer ${JWT} extra`] }, expected: 'invalid_request' },
  { name: 'two tokens in one header', headers: { authorization: [`Bearer ${JWT}, Bearer ${OTHER}`] }, expected: 'invalid_request' },
  { name: 'a colon after the scheme', headers: { authorization: [`Bearer: ${JWT}`] }, expected: 'invalid_request' },
  { name: 'a colon inside the token', headers: { authorization: [`Bearer a:${JWT}`] }, expected: 'invalid_request' },
  { name: 'quoted token', headers: { authorization: [`Bearer "${JWT}"`] }, expected: 'invalid_request' },
  { name: 'tab instead of space', headers: { authorization: [`Bearer\t${JWT}`] }, expected: 'invalid_request' },
  { name: 'padding in the middle', headers: { authorization: ['Bearer ab=c'] }, expected: 'invalid_request' },
  { name: 'two Authorization headers', headers: { authorization: [`Bearer ${JWT}`, `Bearer ${OTHER}`] }, expected: 'invalid_request' },
  { name: 'two Authorization headers, Basic first', headers: { authorization: ['Basic dXNlcjpwYXNz', `Bearer ${JWT}`] }, expected: 'invalid_request' },
  { name: 'two Authorization headers, Basic second', headers: { authorization: [`Bearer ${JWT}`, 'Basic dXNlcjpwYXNz'] }, expected: 'invalid_request' },
  { name: 'token in the cookie', headers: { cookie: [`a=1; access_token=${JWT}; b=2`] }, expected: token(JWT, cookie) },
  { name: 'token cookie in a second Cookie line', headers: { cookie: ['a=1', `access_token=${JWT}`] }, expected: token(JWT, cookie) },
  { name: 'cookie name is case-sensitive', headers: { cookie: [`Access_Token=${JWT}`] }, expected: none },
  { name: 'a cookie whose name ends with the token name', headers: { cookie: [`my_access_token=${JWT}`] }, expected: none },
  { name: 'empty token cookie is absent', headers: { cookie: ['access_token='] }, expected: none },
  { name: 'two token cookies in one line', headers: { cookie: [`access_token=${JWT}; access_token=${OTHER}`] }, expected: 'invalid_request' },
  { name: 'two token cookies on two lines', headers: { cookie: [`access_token=${JWT}`, `access_token=${OTHER}`] }, expected: 'invalid_request' },
  { name: 'header and cookie', headers: { authorization: [`Bearer ${JWT}`], cookie: [`access_token=${JWT}`] }, expected: 'invalid_request' },
  { name: 'Basic header and a token cookie', headers: { authorization: ['Basic dXNlcjpwYXNz'], cookie: [`access_token=${JWT}`] }, expected: token(JWT, cookie) },
  { name: 'cookie source not configured', sources: [header], headers: { cookie: [`access_token=${JWT}`] }, expected: none },
  { name: 'query token on an upgrade', sources: withQuery, query: `access_token=${JWT}`, upgrade: true, expected: token(JWT, query) },
  { name: 'query token with leading ?', sources: withQuery, query: `?x=1&access_token=${JWT}`, upgrade: true, expected: token(JWT, query) },
  { name: 'query token on an ordinary request', sources: withQuery, query: `access_token=${JWT}`, expected: 'invalid_request' },
  { name: 'query token when no query source is configured', query: `access_token=${JWT}`, upgrade: true, expected: 'invalid_request' },
  { name: 'query token on a plain request without a query source', query: `a=1&access_token=${JWT}`, expected: 'invalid_request' },
  { name: 'percent-encoded query parameter name', query: `access%5Ftoken=${JWT}`, expected: 'invalid_request' },
  { name: 'an unrelated parameter containing the name', query: `my_access_token=${JWT}&x=access_token`, expected: none },
  { name: 'header and query on an upgrade', sources: withQuery, headers: { authorization: [`Bearer ${JWT}`] }, query: `access_token=${JWT}`, upgrade: true, expected: 'invalid_request' },
  { name: 'cookie and query on an upgrade', sources: withQuery, headers: { cookie: [`access_token=${JWT}`] }, query: `access_token=${JWT}`, upgrade: true, expected: 'invalid_request' },
  { name: 'two query tokens', sources: withQuery, query: `access_token=${JWT}&access_token=${OTHER}`, upgrade: true, expected: 'invalid_request' },
  { name: 'empty query token', sources: withQuery, query: 'access_token=', upgrade: true, expected: 'invalid_request' },
  { name: 'bad percent-encoding in the query token', sources: withQuery, query: 'access_token=%zz', upgrade: true, expected: 'invalid_request' },
  { name: 'query source with another name', sources: [header, { kind: 'query', name: 'token' }], query: `token=${JWT}`, upgrade: true, expected: token(JWT, { kind: 'query', name: 'token' }) },
  { name: 'the second of two query sources on an upgrade', sources: [...withQuery, queryToken], query: `x=1&%74oken=${JWT}`, upgrade: true, expected: token(JWT, queryToken) },
  { name: 'the second of two query sources on an ordinary request', sources: [...withQuery, queryToken], query: `token=${JWT}`, expected: 'invalid_request' },
  { name: 'both of two query sources on an upgrade', sources: [...withQuery, queryToken], query: `access_token=${JWT}&token=${OTHER}`, upgrade: true, expected: 'invalid_request' },
  { name: 'custom header carries a bare token', sources: [customHeader], headers: { 'x-access-token': [JWT] }, expected: token(JWT, customHeader) },
  { name: 'custom header with a scheme is malformed', sources: [customHeader], headers: { 'x-access-token': [`Bearer ${JWT}`] }, expected: 'invalid_request' },
  { name: 'custom header twice', sources: [customHeader], headers: { 'x-access-token': [JWT, JWT] }, expected: 'invalid_request' },
  { name: 'custom header and Authorization both configured and sent', sources: [header, customHeader], headers: { authorization: [`Bearer ${JWT}`], 'x-access-token': [JWT] }, expected: 'invalid_request' },
  { name: 'DPoP credentials with their proof', headers: { authorization: [`DPoP ${JWT}`], dpop: [PROOF] }, expected: dpop(JWT, PROOF) },
  { name: 'DPoP scheme in lower case, several spaces', headers: { authorization: [`dpop   ${JWT}`], dpop: [PROOF] }, expected: dpop(JWT, PROOF) },
  { name: 'DPoP credentials without a DPoP header (the proof check refuses them)', headers: { authorization: [`DPoP ${JWT}`] }, expected: dpop(JWT, '') },
  { name: 'DPoP credentials with two DPoP headers', headers: { authorization: [`DPoP ${JWT}`], dpop: [PROOF, PROOF] }, expected: 'invalid_request' },
  { name: 'DPoP alone', headers: { authorization: ['DPoP'], dpop: [PROOF] }, expected: 'invalid_request' },
  { name: 'extra words after the DPoP token', headers: { authorization: [`DPoP ${JWT} extra`], dpop: [PROOF] }, expected: 'invalid_request' },
  { name: 'a scheme that only starts with DPoP', headers: { authorization: [`DPoPx ${JWT}`], dpop: [PROOF] }, expected: none },
  { name: 'a DPoP header beside Bearer credentials', headers: { authorization: [`Bearer ${JWT}`], dpop: [PROOF] }, expected: token(JWT, header) },
  { name: 'DPoP credentials and a token cookie', headers: { authorization: [`DPoP ${JWT}`], dpop: [PROOF], cookie: [`access_token=${JWT}`] }, expected: 'invalid_request' },
  { name: 'DPoP credentials where only a custom header is a source', sources: [customHeader], headers: { authorization: [`DPoP ${JWT}`], dpop: [PROOF] }, expected: none },
  { name: 'DPoP token over 8 KiB', headers: { authorization: [`DPoP ${'a'.repeat(MAX_TOKEN_LENGTH + 1)}`], dpop: [PROOF] }, expected: { ok: false, reason: 'token_too_long' } },
  { name: 'token of exactly 8 KiB', headers: { authorization: [`Bearer ${'a'.repeat(MAX_TOKEN_LENGTH)}`] }, expected: token('a'.repeat(MAX_TOKEN_LENGTH), header) },
  { name: 'token over 8 KiB in the header', headers: { authorization: [`Bearer ${'a'.repeat(MAX_TOKEN_LENGTH + 1)}`] }, expected: { ok: false, reason: 'token_too_long' } },
  { name: 'token over 8 KiB in the cookie', headers: { cookie: [`access_token=${'a'.repeat(MAX_TOKEN_LENGTH + 1)}`] }, expected: { ok: false, reason: 'token_too_long' } },
];

describe('compileTokenExtractor', () => {
  it.each(cases)('$name', ({ sources = defaultSources, headers = {}, query: rawQuery = '', upgrade = false, expected }) => {
    const result = compileTokenExtractor(sources)(headers, rawQuery, upgrade);
    if (expected === 'invalid_request') {
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect(result.reason).not.toBe('token_too_long');
        expect(result.reason).not.toContain(JWT);
      }
    } else {
      expect(result).toEqual(expected);
    }
  });
});

describe('compileTokenQueryStripper', () => {
  it.each([
    ['every spelling and copy of the token parameter', withQuery, `?a=1&access_token=${JWT}&access%5Ftoken=${JWT}&%61ccess_token=${OTHER}&b=2`, '?a=1&b=2'],
    ['every configured query source', [...withQuery, queryToken], `?token=${JWT}&a=1&%74oken=${OTHER}&access_token=${JWT}`, '?a=1'],
    ['access_token when no query source is configured', defaultSources, `?access%5ftoken=${JWT}`, ''],
    ['the spellings upstream frameworks fold to the name (case, . + [ for _, a trailing [])', withQuery,
      `?Access_Token=${JWT}&a=1&access.token=${JWT}&access+token=${JWT}&access[token=${JWT}&access_token[]=${JWT}&ACCESS%2ETOKEN=${JWT}`, '?a=1'],
    ['the spellings PHP reads as the name: leading spaces skipped, cut at a NUL', withQuery,
      `?+access_token=${JWT}&%20access_token=${JWT}&a=1&access_token%00x=${JWT}`, '?a=1'],
    ['a ;-part that holds the name (; separates pairs in some frameworks), keeping the other parts', withQuery,
      `?a=1;access_token=${JWT}&b=2&access_token=${JWT};c=3;d&;access_token=${JWT};`, '?a=1&b=2&c=3;d'],
    ['nothing else, byte for byte', withQuery, '?access_token_x=1&x=%41&accesstoken=2&&flag&%zz=3', '?access_token_x=1&x=%41&accesstoken=2&&flag&%zz=3'],
    ['nothing from a query without parameters', withQuery, '', ''],
  ] as Array<[string, readonly TokenSource[], string, string]>)('removes %s', (_name, sources, query, expected) => {
    expect(compileTokenQueryStripper(sources, false)(query)).toBe(expected);
  });

  it('keeps the query as it is when the token is forwarded', () => {
    const query = `?access_token=${JWT}&a=1`;
    expect(compileTokenQueryStripper(withQuery, true)(query)).toBe(query);
  });
});
