import { describe, expect, it } from 'vitest';
import { buildIdentity, compileClaimsValidator, normalizeTokenType, type ClaimsFailure } from '../../../../src/mechanisms/authenticators/jwt/claims.js';
import type { IssuerConfig } from '../../../../src/config/types.js';
import { issuerConfigFor } from '../../../helpers/idp.js';

const NOW = 1_700_000_000; // seconds
const SKEW = 30;
const base = issuerConfigFor(
  { issuer: 'https://idp.test/', audience: 'https://api.test', jwksUri: 'https://idp.test/jwks' },
  { clockSkewMs: SKEW * 1000 },
);
const strict: IssuerConfig = {
  ...base,
  maxTokenAgeMs: 3_600_000,
  tokenTypes: ['at+jwt', 'JWT'],
  requireClaims: { type: 'access', 'ext.tier': 'gold' },
};

/** Entra ID style: the subject is read from `oid`. */
const mappedSubject: IssuerConfig = { ...base, claims: { ...base.claims, subject: 'oid' } };

const valid = { iss: base.issuer, aud: 'https://api.test', sub: 'u', iat: NOW - 10, exp: NOW + 300 };

describe('normalizeTokenType', () => {
  it.each([
    ['at+jwt', 'at+jwt'],
    ['AT+JWT', 'at+jwt'],
    ['application/at+jwt', 'at+jwt'],
    ['Application/AT+JWT', 'at+jwt'],
    ['JWT', 'jwt'],
    ['application/', ''],
  ])('%s → %s', (typ, expected) => {
    expect(normalizeTokenType(typ)).toBe(expected);
  });
});

describe('compileClaimsValidator', () => {
  type Case = [name: string, config: IssuerConfig, claims: Record<string, unknown>, typ: string | undefined, expected: ClaimsFailure | 'ok'];
  const strictClaims = { ...valid, type: 'access', ext: { tier: 'gold' } };
  const cases: Case[] = [
    ['valid', base, valid, 'JWT', 'ok'],
    ['exp missing', base, { ...valid, exp: undefined }, 'JWT', 'expired'],
    ['exp a string', base, { ...valid, exp: String(NOW + 300) }, 'JWT', 'expired'],
    ['exp not finite', base, { ...valid, exp: Number.POSITIVE_INFINITY }, 'JWT', 'expired'],
    ['exp null', base, { ...valid, exp: null }, 'JWT', 'expired'],
    ['exp past, beyond skew', base, { ...valid, exp: NOW - SKEW - 1 }, 'JWT', 'expired'],
    ['exp past, exactly at skew', base, { ...valid, exp: NOW - SKEW }, 'JWT', 'expired'],
    ['exp past, within skew', base, { ...valid, exp: NOW - SKEW + 1 }, 'JWT', 'ok'],
    ['nbf future beyond skew', base, { ...valid, nbf: NOW + SKEW + 1 }, 'JWT', 'not_yet_valid'],
    ['nbf future within skew', base, { ...valid, nbf: NOW + SKEW }, 'JWT', 'ok'],
    ['nbf a string', base, { ...valid, nbf: 'now' }, 'JWT', 'claims'],
    ['iat future beyond skew', base, { ...valid, iat: NOW + SKEW + 1 }, 'JWT', 'not_yet_valid'],
    ['iat a string', base, { ...valid, iat: String(NOW) }, 'JWT', 'claims'],
    ['aud missing', base, { ...valid, aud: undefined }, 'JWT', 'audience'],
    ["aud another service's", base, { ...valid, aud: 'https://other.test' }, 'JWT', 'audience'],
    ['aud with a trailing slash', base, { ...valid, aud: 'https://api.test/' }, 'JWT', 'audience'],
    ['aud in other case', base, { ...valid, aud: 'https://API.test' }, 'JWT', 'audience'],
    ['aud array containing ours', base, { ...valid, aud: ['https://other.test', 'https://api.test'] }, 'JWT', 'ok'],
    ['aud array without ours', base, { ...valid, aud: ['https://other.test'] }, 'JWT', 'audience'],
    ['aud an object', base, { ...valid, aud: { 'https://api.test': true } }, 'JWT', 'audience'],
    ['sub a number', base, { ...valid, sub: 42 }, 'JWT', 'claims'],
    ['sub an array', base, { ...valid, sub: ['admin'] }, 'JWT', 'claims'],
    ['sub missing', base, { ...valid, sub: undefined }, 'JWT', 'ok'],
    ['mapped subject a number', mappedSubject, { ...valid, oid: 42 }, 'JWT', 'claims'],
    ['mapped subject an object', mappedSubject, { ...valid, oid: { id: 'u' } }, 'JWT', 'claims'],
    ['mapped subject a string', mappedSubject, { ...valid, oid: 'u-1' }, 'JWT', 'ok'],
    ['mapped subject missing', mappedSubject, valid, 'JWT', 'ok'],
    ['jti a number', base, { ...valid, jti: 7 }, 'JWT', 'claims'],
    ['no typ check configured', base, valid, undefined, 'ok'],
    ['typ at+jwt', strict, strictClaims, 'at+jwt', 'ok'],
    ['typ application/at+jwt', strict, strictClaims, 'application/at+jwt', 'ok'],
    ['typ JWT in lower case', strict, strictClaims, 'jwt', 'ok'],
    ['typ missing', strict, strictClaims, undefined, 'type'],
    ['typ of a DPoP proof', strict, strictClaims, 'dpop+jwt', 'type'],
    ['typ of a logout token', strict, strictClaims, 'logout+jwt', 'type'],
    ['typ of an ID token', strict, strictClaims, 'id_token+jwt', 'type'],
    ['refresh token', strict, { ...strictClaims, type: 'refresh' }, 'at+jwt', 'claims'],
    ['required claim missing', strict, { ...strictClaims, type: undefined }, 'at+jwt', 'claims'],
    ['required nested claim differs', strict, { ...strictClaims, ext: { tier: 'silver' } }, 'at+jwt', 'claims'],
    ['required claim contained in an array is not exact', strict, { ...strictClaims, type: ['access'] }, 'at+jwt', 'claims'],
    ['lifetime longer than max age', strict, { ...strictClaims, iat: NOW - 10, exp: NOW - 10 + 3601 }, 'at+jwt', 'too_old'],
    ['lifetime equal to max age', strict, { ...strictClaims, iat: NOW - 10, exp: NOW - 10 + 3600 }, 'at+jwt', 'ok'],
    ['issued longer ago than max age', strict, { ...strictClaims, iat: NOW - 3600 - SKEW - 1, exp: NOW + 10 }, 'at+jwt', 'too_old'],
    ['no iat: lifetime taken as max age', strict, { ...strictClaims, iat: undefined, exp: NOW + 3600 }, 'at+jwt', 'ok'],
  ];
  it.each(cases)('%s', (_name, config, claims, typ, expected) => {
    const payload = Object.fromEntries(Object.entries(claims).filter(([, value]) => value !== undefined));
    const result = compileClaimsValidator(config)(payload, typ, NOW * 1000);
    expect(result.ok ? 'ok' : result.reason).toBe(expected);
  });

  it('a valid token is acceptable until exp plus skew, or earlier when max_token_age ends first', () => {
    const plain = compileClaimsValidator(base)(valid, undefined, NOW * 1000);
    expect(plain).toEqual({ ok: true, validUntilMs: (valid.exp + SKEW) * 1000 });
    const aged = compileClaimsValidator({ ...base, maxTokenAgeMs: 60_000 })({ ...valid, iat: NOW - 10, exp: NOW + 50 }, undefined, NOW * 1000);
    expect(aged).toEqual({ ok: true, validUntilMs: (NOW - 10 + 60 + SKEW) * 1000 });
  });
});

describe('buildIdentity', () => {
  const config: IssuerConfig = {
    ...base,
    claims: { subject: 'sub', email: 'email', roles: 'https://example.com/roles', permissions: 'realm.permissions', scopes: 'scp', clientId: 'client_id' },
  };
  it.each([
    ['roles as a string', { 'https://example.com/roles': 'admin' }, { roles: ['admin'] }],
    ['roles as an array', { 'https://example.com/roles': ['a', 'b'] }, { roles: ['a', 'b'] }],
    ['roles an object', { 'https://example.com/roles': { admin: true } }, { roles: [] }],
    ['nested permissions', { realm: { permissions: ['read'] } }, { permissions: ['read'] }],
    ['scopes space-separated', { scp: 'read  write' }, { scopes: ['read', 'write'] }],
    ['scopes as an array', { scp: ['read', 'write'] }, { scopes: ['read', 'write'] }],
    ['client_id', { client_id: 'app', azp: 'other' }, { clientId: 'app' }],
    ['client_id falls back to azp', { azp: 'spa' }, { clientId: 'spa' }],
    ['email not a string', { email: ['a@b'] }, { email: undefined }],
    ['jti and iat', { jti: 'j1', iat: 5 }, { jti: 'j1', iat: 5 }],
  ])('%s', (_name, claims, expected) => {
    const identity = buildIdentity(config, { ...valid, ...claims });
    expect(identity).toMatchObject({ issuer: config, subject: 'u', exp: valid.exp, ...expected });
  });

  it('freezes the claims it keeps, nested objects included', () => {
    const identity = buildIdentity(config, { ...valid, realm: { permissions: ['read'] } });
    expect(Object.isFrozen(identity.claims)).toBe(true);
    expect(Object.isFrozen((identity.claims.realm as { permissions: string[] }).permissions)).toBe(true);
  });
});
