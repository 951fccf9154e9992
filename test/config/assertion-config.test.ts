import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'authgate-assertion-config-'));
const files = {
  ec: join(dir, 'ec.pem'),
  p384: join(dir, 'p384.pem'),
  rsa1024: join(dir, 'rsa1024.pem'),
  text: join(dir, 'notes.pem'),
};
writeFileSync(files.ec, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
writeFileSync(files.p384, generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
writeFileSync(files.rsa1024, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
writeFileSync(files.text, 'not a key\n');

const HEAD = `version: 1
issuers:
  idp: { issuer: https://idp.example.com/, jwks_uri: https://idp.example.com/jwks.json, audiences: [api] }
upstreams:
  api: { url: http://127.0.0.1:3000 }
routes:
  - { name: all, match: { path: /** }, upstream: api }
identity:
  headers: { X-User-Id: subject }
  assertion:
`;

function problems(assertion: string): string[] {
  return parseConfig(`${HEAD}${assertion}`, join(dir, 'gw.yaml')).problems.map(formatProblem);
}

const MAKE_ONE = 'make one with `openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out assertion.pem`';

describe('identity.assertion in the config', () => {
  it('a working block reads its keys, ttl, issuer and fields', () => {
    const { config, problems: found } = parseConfig(`${HEAD}    keys: [{ file: ec.pem }]\n    ttl: 30s\n    fields: [subject, claims.tenant]\n`, join(dir, 'gw.yaml'));
    expect(found).toEqual([]);
    expect(config?.identity.assertion).toEqual({
      header: 'X-Authgate-Assertion',
      keyFiles: [files.ec],
      issuer: 'authgate',
      ttlMs: 30_000,
      fields: [{ name: 'subject', field: { kind: 'subject' } }, { name: 'claims.tenant', field: { kind: 'claim', path: 'tenant' } }],
    });
  });

  it.each([
    { case: 'no keys', yaml: '    ttl: 1m\n', expected: [expect.stringContaining(`identity.assertion.keys: a signing key is required: ${MAKE_ONE}`)] },
    { case: 'an empty key list', yaml: '    keys: []\n', expected: [expect.stringMatching(/gw\.yaml:11:11: identity\.assertion\.keys: a signing key is required: make one with `openssl genpkey/)] },
    {
      case: 'a missing key file',
      yaml: '    keys: [{ file: nowhere.pem }]\n',
      expected: [`${join(dir, 'gw.yaml')}:11:20: identity.assertion.keys[0].file: file not found: ${join(dir, 'nowhere.pem')}`, expect.stringContaining(MAKE_ONE)],
    },
    { case: 'a file that holds no key', yaml: '    keys: [{ file: notes.pem }]\n', expected: [expect.stringMatching(/:11:20: identity\.assertion\.keys\[0\]\.file: not a PEM private key/)] },
    { case: 'a P-384 key', yaml: '    keys: [{ file: p384.pem }]\n', expected: [expect.stringContaining(':11:20: identity.assertion.keys[0].file: a ec secp384r1 key; use an RSA, EC P-256 or Ed25519 private key')] },
    // jose refuses to sign RS256 with it: every request with an identity would have failed.
    { case: 'an RSA key under 2048 bits', yaml: '    keys: [{ file: rsa1024.pem }]\n', expected: [expect.stringContaining(':11:20: identity.assertion.keys[0].file: an RSA key of 1024 bits; RS256 needs at least 2048')] },
    { case: 'the header of an identity header', yaml: '    header: x-user-id\n    keys: [{ file: ec.pem }]\n', expected: [expect.stringContaining(':11:13: identity.assertion.header: "x-user-id" is already set by the gateway')] },
    { case: 'an unknown field', yaml: '    keys: [{ file: ec.pem }]\n    fields: [subjekt]\n', expected: [expect.stringContaining(':12:14: identity.assertion.fields[0]: "subjekt" is not one of')] },
    { case: 'a ttl too short to reuse', yaml: '    keys: [{ file: ec.pem }]\n    ttl: 1s\n', expected: [expect.stringContaining(':12:10: identity.assertion.ttl: must be at least 2s')] },
  ])('$case is a problem at its file:line:col', ({ yaml, expected }) => {
    expect(problems(yaml)).toEqual(expected);
  });
});
