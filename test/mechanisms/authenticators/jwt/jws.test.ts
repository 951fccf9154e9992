import { describe, expect, it } from 'vitest';
import {
  isCanonicalBase64url,
  MAX_PAYLOAD_DEPTH,
  MAX_PAYLOAD_MEMBERS,
  parseCompactJws,
  scanJsonMembers,
  type JwsFailure,
} from '../../../../src/mechanisms/authenticators/jwt/jws.js';
import { assemble, b64url } from '../../../helpers/tokens.js';

describe('isCanonicalBase64url agrees with a decode/re-encode round trip', () => {
  const roundTrips = (segment: string): boolean => Buffer.from(segment, 'base64url').toString('base64url') === segment;
  // Every last character for each length class, plus a few whole strings.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const samples = ['', 'QQ', 'QR', 'QUE', 'QUF', 'QUJD', 'QUJDRA', 'QUJDRB', 'QUJDRA_', 'Q'];
  for (const prefix of ['', 'Q', 'QU', 'QUJ']) for (const last of alphabet) samples.push(prefix + last);
  it.each(samples)('%j', (segment) => {
    expect(isCanonicalBase64url(segment)).toBe(roundTrips(segment));
  });
});

describe('scanJsonMembers', () => {
  const nested = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
  const manyMembers = (count: number): string => `{${Array.from({ length: count }, (_, i) => `"c${i}":0`).join(',')}}`;
  const cases: [name: string, json: string, expected: ReturnType<typeof scanJsonMembers>][] = [
    ['plain object', '{"sub":"a","aud":["x","y"],"n":{"a":1}}', 'ok'],
    ['same name at different levels', '{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}', 'ok'],
    ['name-like strings in values', '{"a":"\\"b\\":1,","b":["a","a"]}', 'ok'],
    ['top-level duplicate', '{"sub":"a","sub":"b"}', 'duplicate_claims'],
    ['escaped duplicate', '{"sub":"a","s\\u0075b":"b"}', 'duplicate_claims'],
    ['escaped slash duplicate', '{"a/b":1,"a\\/b":2}', 'duplicate_claims'],
    ['nested duplicate', '{"realm":{"roles":["a"],"roles":["admin"]}}', 'duplicate_claims'],
    ['duplicate inside an array of objects', '{"x":[{"k":1,"k":2}]}', 'duplicate_claims'],
    ['escaped quote in a name', '{"a\\"b":1,"a\\u0022b":2}', 'duplicate_claims'],
    ['depth at the limit', nested(MAX_PAYLOAD_DEPTH), 'ok'],
    ['depth over the limit', nested(MAX_PAYLOAD_DEPTH + 1), 'too_complex'],
    ['deep arrays', `{"a":${'['.repeat(MAX_PAYLOAD_DEPTH)}${']'.repeat(MAX_PAYLOAD_DEPTH)}}`, 'too_complex'],
    ['members at the limit', manyMembers(MAX_PAYLOAD_MEMBERS), 'ok'],
    ['members over the limit', manyMembers(MAX_PAYLOAD_MEMBERS + 1), 'too_complex'],
    ['unterminated string', '{"a', 'malformed'],
    ['unclosed object', '{"a":1', 'malformed'],
  ];
  it.each(cases)('%s', (_name, json, expected) => {
    expect(scanJsonMembers(json)).toBe(expected);
  });
});

describe('parseCompactJws', () => {
  const header = { alg: 'RS256', kid: 'k1', typ: 'JWT' };
  const payload = { iss: 'https://idp/', sub: 'u' };
  const good = assemble(header, payload, 'c2ln');
  const cases: [name: string, token: string, expected: JwsFailure | 'ok'][] = [
    ['well-formed', good, 'ok'],
    ['over 8 KiB', assemble(header, { pad: 'x'.repeat(8192) }, 'c2ln'), 'too_long'],
    ['two segments', good.split('.').slice(0, 2).join('.'), 'malformed'],
    ['four segments', `${good}.c2ln`, 'malformed'],
    ['five segments (JWE)', `${good}.c2ln.c2ln`, 'malformed'],
    ['empty signature', assemble(header, payload, ''), 'malformed'],
    ['JSON serialization', JSON.stringify({ protected: b64url(JSON.stringify(header)), payload: b64url('{}'), signature: 'c2ln' }), 'malformed'],
    ['standard base64 characters', assemble(header, payload, 'c2l+/w'), 'malformed'],
    ['padding', `${good}==`, 'malformed'],
    ['inner whitespace', good.replace('.', ' .'), 'malformed'],
    ['trailing whitespace', `${good} `, 'malformed'],
    ['spare bits in the signature', assemble(header, payload, 'c2l'), 'non_canonical'],
    ['impossible length', assemble(header, payload, 'c2lnZ'), 'non_canonical'],
    ['header not JSON', `${b64url('alg')}.${b64url('{}')}.c2ln`, 'malformed'],
    ['header an array', assemble('[]', payload, 'c2ln'), 'malformed'],
    ['header with duplicate alg', assemble('{"alg":"RS256","alg":"none"}', payload, 'c2ln'), 'malformed'],
    ['missing alg', assemble({ typ: 'JWT' }, payload, 'c2ln'), 'malformed'],
    ['non-string alg', assemble({ alg: 256 }, payload, 'c2ln'), 'malformed'],
    ['alg none', assemble({ alg: 'none' }, payload, 'c2ln'), 'alg_none'],
    ['alg NoNe', assemble({ alg: 'NoNe' }, payload, 'c2ln'), 'alg_none'],
    ['crit', assemble({ ...header, crit: ['exp'] }, payload, 'c2ln'), 'unsupported_header'],
    ['b64 false', assemble({ ...header, b64: false, crit: ['b64'] }, payload, 'c2ln'), 'unsupported_header'],
    ['b64 false without crit', assemble({ ...header, b64: false }, payload, 'c2ln'), 'unsupported_header'],
    ['JWE header in three segments', assemble({ alg: 'RSA-OAEP', enc: 'A256GCM' }, payload, 'c2ln'), 'unsupported_header'],
    ['embedded jwk', assemble({ ...header, jwk: { kty: 'oct', k: 'AA' } }, payload, 'c2ln'), 'embedded_key'],
    ['jku', assemble({ ...header, jku: 'https://attacker/jwks' }, payload, 'c2ln'), 'embedded_key'],
    ['x5u', assemble({ ...header, x5u: 'https://attacker/cert' }, payload, 'c2ln'), 'embedded_key'],
    ['x5c', assemble({ ...header, x5c: ['MIIB'] }, payload, 'c2ln'), 'embedded_key'],
    ['numeric kid', assemble({ ...header, kid: 1 }, payload, 'c2ln'), 'bad_kid'],
    ['object kid', assemble({ ...header, kid: { $ne: null } }, payload, 'c2ln'), 'bad_kid'],
    ['empty kid', assemble({ ...header, kid: '' }, payload, 'c2ln'), 'bad_kid'],
    ['very long kid', assemble({ ...header, kid: 'k'.repeat(257) }, payload, 'c2ln'), 'bad_kid'],
    ['kid with control characters', assemble({ ...header, kid: 'a\nb' }, payload, 'c2ln'), 'bad_kid'],
    ['non-string typ', assemble({ ...header, typ: 1 }, payload, 'c2ln'), 'malformed'],
    ['payload invalid UTF-8', assemble(header, Uint8Array.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), 'c2ln'), 'invalid_utf8'],
    ['payload with a byte-order mark', assemble(header, `\ufeff${JSON.stringify(payload)}`, 'c2ln'), 'malformed'],
    ['payload an array', assemble(header, '["a"]', 'c2ln'), 'malformed'],
    ['payload a string', assemble(header, '"sub"', 'c2ln'), 'malformed'],
    ['payload null', assemble(header, 'null', 'c2ln'), 'malformed'],
    ['payload duplicate claims', assemble(header, '{"sub":"a","sub":"admin"}', 'c2ln'), 'duplicate_claims'],
    ['payload deep nesting', assemble(header, `{"a":${'['.repeat(1000)}${']'.repeat(1000)}}`, 'c2ln'), 'too_complex'],
  ];
  it.each(cases)('%s', (_name, token, expected) => {
    const result = parseCompactJws(token);
    expect(result.ok ? 'ok' : result.reason).toBe(expected);
  });

  it('returns the header fields and the payload of a well-formed token', () => {
    expect(parseCompactJws(good)).toEqual({ ok: true, header: { alg: 'RS256', kid: 'k1', typ: 'JWT' }, payload });
  });
});
