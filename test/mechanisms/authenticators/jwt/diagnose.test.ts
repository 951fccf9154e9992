import { afterEach, describe, expect, it } from 'vitest';
import { JwtAuthenticator as Authenticator } from '../../../../src/mechanisms/authenticators/jwt/authenticator.js';
import { nearestIssuer, quote, unknownIssuerDetail } from '../../../../src/mechanisms/authenticators/jwt/diagnose.js';
import { createLogger } from '../../../../src/observability/log.js';
import { Metrics } from '../../../../src/observability/metrics.js';
import { issuerConfigFor, startIdp } from '../../../helpers/idp.js';

/** Refusal details for operators: the nearest configured issuer, and what the gateway and explain attach. */

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('nearestIssuer', () => {
  const configured = ['https://example.auth0.com/', 'https://sso.example.com/realms/shop', 'urn:legacy'];

  it.each([
    ['https://example.auth0.com', 'https://example.auth0.com/', 'a trailing slash'],
    ['https://EXAMPLE.auth0.com/', 'https://example.auth0.com/', 'letter case'],
    ['http://example.auth0.com/', 'https://example.auth0.com/', 'the scheme (http vs https)'],
    ['https://sso.example.com/realms/Shop', 'https://sso.example.com/realms/shop', 'letter case in the path'],
    ['https://sso.example.com', 'https://sso.example.com/realms/shop', 'the path'],
    ['http://sso.example.com/realms/shop/', 'https://sso.example.com/realms/shop', 'the scheme (http vs https) and a trailing slash'],
  ])('%s is nearest to %s (differs by %s)', (iss, issuer, difference) => {
    expect(nearestIssuer(iss, configured)).toEqual({ issuer, difference });
  });

  it('names nothing for another host or a non-URL iss', () => {
    expect(nearestIssuer('https://evil.example.net/', configured)).toBeUndefined();
    expect(nearestIssuer('urn:legacy2', configured)).toBeUndefined();
  });

  it('compares an issuer that is not a URL as text', () => {
    expect(nearestIssuer('URN:Legacy', configured)).toEqual({ issuer: 'urn:legacy', difference: 'letter case' });
  });

  it('bounds what it quotes from the token', () => {
    const detail = unknownIssuerDetail(`https://x.example/${'a'.repeat(5000)}`, configured);
    expect(detail.length).toBeLessThan(200);
    expect(quote('a'.repeat(500))).toHaveLength(121);
    expect(unknownIssuerDetail(42, configured)).toBe('iss 42 is not a string');
    expect(unknownIssuerDetail(undefined, configured)).toBe('the token has no iss claim');
  });
});

describe('refusal details from the Authenticator', () => {
  async function authenticator(explain: boolean) {
    const idp = await startIdp({ keys: ['rsa'] });
    cleanups.push(() => idp.close());
    const auth = new Authenticator(new Map([['idp', issuerConfigFor(idp)]]), { logger: createLogger('silent'), metrics: new Metrics(), explain });
    cleanups.push(() => auth.close());
    await auth.start();
    return { idp, auth };
  }

  it('in the gateway, only an unknown issuer carries a detail; other refusals are the shared frozen results', async () => {
    const { idp, auth } = await authenticator(false);
    const expired = await auth.verify(idp.sign({ exp: Math.floor(Date.now() / 1000) - 600 }), undefined);
    expect(expired).toEqual({ ok: false, status: 401, description: 'The access token expired', reason: 'expired' });
    expect(Object.isFrozen(expired)).toBe(true);
    const unknown = await auth.verify(idp.sign({ iss: idp.issuer.slice(0, -1) }), undefined);
    expect(unknown).toMatchObject({ reason: 'unknown_issuer', detail: `iss "${idp.issuer.slice(0, -1)}" is not a configured issuer; nearest "${idp.issuer}" (differs by a trailing slash)` });
  });

  it('when explaining, a refusal carries the values compared', async () => {
    const { idp, auth } = await authenticator(true);
    const result = await auth.verify(idp.sign({ aud: ['a', 'b'] }), undefined);
    expect(result).toMatchObject({ reason: 'audience', detail: `aud ["a","b"] matches none of audiences [${idp.audience}]` });
    const notAllowed = await auth.verify(idp.sign(), ['other']);
    expect(notAllowed).toMatchObject({ reason: 'issuer_not_allowed', detail: expect.stringContaining('route issuers [other]') });
  });
});
