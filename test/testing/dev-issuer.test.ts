import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { startDevIssuer, type DevAlgorithm, type DevIssuer } from '../../src/testing/dev-issuer.js';

const started: DevIssuer[] = [];
afterAll(async () => {
  await Promise.all(started.map((issuer) => issuer.close()));
});

async function start(algorithm?: DevAlgorithm, audience?: string): Promise<DevIssuer> {
  const issuer = await startDevIssuer({ ...(algorithm ? { algorithm } : {}), ...(audience ? { audience } : {}) });
  started.push(issuer);
  return issuer;
}

describe('startDevIssuer', () => {
  it.each(['ES256', 'RS256', 'EdDSA'] as const)('%s: discovery names the JWKS, whose key verifies minted tokens', async (algorithm) => {
    const issuer = await start(algorithm);
    expect(issuer.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const discovery = (await (await fetch(issuer.discoveryUri)).json()) as { issuer: string; jwks_uri: string };
    expect(discovery).toMatchObject({ issuer: issuer.issuer, jwks_uri: issuer.jwksUri });
    const token = await issuer.mint({ sub: 'alice' }, { audience: 'api' });
    const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(new URL(discovery.jwks_uri)), {
      issuer: issuer.issuer,
      audience: 'api',
      algorithms: [algorithm],
      typ: 'at+jwt',
    });
    expect(payload.exp! - payload.iat!).toBe(3600);
    expect(payload).toMatchObject({ sub: 'alice', iss: issuer.issuer, aud: 'api' });
    expect(typeof payload.jti).toBe('string');
    expect(protectedHeader.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('defaults to ES256 and applies the issuer-wide audience', async () => {
    const issuer = await start(undefined, 'svc');
    const token = await issuer.mint({ sub: 'a' });
    expect(decodeProtectedHeader(token).alg).toBe('ES256');
    const jwks = (await (await fetch(issuer.jwksUri)).json()) as Parameters<typeof createLocalJWKSet>[0];
    await expect(jwtVerify(token, createLocalJWKSet(jwks), { audience: 'svc' })).resolves.toBeTruthy();
  });

  it('HS256: a secret to configure, no key published', async () => {
    const issuer = await start('HS256');
    expect(Buffer.byteLength(issuer.secret ?? '')).toBeGreaterThanOrEqual(32);
    expect(await (await fetch(issuer.jwksUri)).json()).toEqual({ keys: [] });
    const token = await issuer.mint({ sub: 'a' }, { audience: 'x' });
    await expect(jwtVerify(token, new TextEncoder().encode(issuer.secret), { algorithms: ['HS256'] })).resolves.toBeTruthy();
  });

  it('mints expired tokens, other kids and header overrides on request', async () => {
    const issuer = await start();
    const jwks = createRemoteJWKSet(new URL(issuer.jwksUri));
    for (const ttl of [-60, '-1h']) {
      await expect(jwtVerify(await issuer.mint({ sub: 'a' }, { ttl }), jwks)).rejects.toMatchObject({ code: 'ERR_JWT_EXPIRED' });
    }
    const short = await issuer.mint({}, { ttl: '5m', kid: 'other', header: { typ: 'JWT' } });
    expect(decodeProtectedHeader(short)).toMatchObject({ kid: 'other', typ: 'JWT' });
    await expect(jwtVerify(short, jwks)).rejects.toMatchObject({ code: 'ERR_JWKS_NO_MATCHING_KEY' });
    await expect(issuer.mint({}, { ttl: 'forever' })).rejects.toThrow('ttl "forever" is not a duration');
  });

  it('close() stops answering', async () => {
    const issuer = await startDevIssuer();
    await issuer.close();
    await expect(fetch(issuer.jwksUri)).rejects.toThrow();
  });
});
