import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readIntrospection } from '../../src/config/introspection.js';
import { readSnippet } from '../helpers/config-snippet.js';

const dir = mkdtempSync(join(tmpdir(), 'authgate-introspection-config-'));
/** Keys as openssl writes them: PKCS#8 for Ed25519 and RSA, SEC 1 (`EC PRIVATE KEY`) for P-256. */
execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', join(dir, 'ed25519.key')]);
execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, 'p256.key')]);
writeFileSync(join(dir, 'not-a-key.pem'), 'hello\n');
execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024', '-out', join(dir, 'rsa1024.key')]);

function read(body: string, options: { discovery?: boolean; env?: NodeJS.ProcessEnv } = {}) {
  return readSnippet(`introspection:\n${body}`, (r, root) =>
    readIntrospection(r, r.section(root, ['introspection']).slot('introspection'), { baseDir: dir, discovery: options.discovery ?? false }), options.env);
}

describe('issuers.<name>.introspection', () => {
  it('reads a full entry, the secret from the environment and kept out of any printout', () => {
    const { value, problems } = read([
      '  endpoint: https://auth.example.com/oauth2/introspect',
      '  client_id: authgate',
      '  client_secret: ${INTROSPECTION_SECRET}',
      '  cache: { max_ttl: 2m, negative_ttl: 5s, max_entries: 500 }',
      '  jwt: true',
      '  max_concurrent: 8',
    ].join('\n'), { env: { INTROSPECTION_SECRET: 's3cret-value' } });
    expect(problems).toEqual([]);
    expect(value).toMatchObject({
      endpoint: 'https://auth.example.com/oauth2/introspect',
      clientId: 'authgate',
      auth: { method: 'client_secret_basic' },
      cache: { maxTtlMs: 120_000, negativeTtlMs: 5000, maxEntries: 500 },
      jwt: true,
      maxConcurrent: 8,
    });
    expect(value?.auth.method === 'client_secret_basic' && value.auth.secret.reveal()).toBe('s3cret-value');
    expect(JSON.stringify(value)).not.toContain('s3cret-value');
    expect(String(value?.auth && 'secret' in value.auth ? value.auth.secret : '')).toBe('[redacted]');
  });

  it('defaults: client_secret_basic, 5m / 10s / 100000 cache, jwt false, 64 at once', () => {
    const { value, problems } = read('  endpoint: http://127.0.0.1:4444/introspect\n  client_id: gw\n  client_secret: x');
    expect(problems).toEqual([]);
    expect(value).toMatchObject({
      auth: { method: 'client_secret_basic' },
      cache: { maxTtlMs: 300_000, negativeTtlMs: 10_000, maxEntries: 100_000 },
      jwt: false,
      maxConcurrent: 64,
    });
  });

  it('takes the endpoint from discovery when the issuer has discovery: true', () => {
    const { value, problems } = read('  client_id: gw\n  client_secret: x', { discovery: true });
    expect(problems).toEqual([]);
    expect(value?.endpoint).toBeUndefined();
  });

  it.each([
    ['no endpoint and no discovery', '  client_id: gw\n  client_secret: x',
      'gateway.yaml:1:1: introspection: needs an endpoint (or discovery: true on the issuer, to take it from the discovery document)'],
    ['a plain-http endpoint off loopback', '  endpoint: http://auth.example.com/introspect\n  client_id: gw\n  client_secret: x',
      'gateway.yaml:2:13: introspection.endpoint: must be an https URL (plain http only to 127.0.0.1, [::1] or localhost)'],
    ['no client_id', '  endpoint: https://a.example/i\n  client_secret: x', 'gateway.yaml:2:3: introspection.client_id: required'],
    ['an unknown auth method', '  endpoint: https://a.example/i\n  client_id: gw\n  auth: client_secret_jwt',
      'gateway.yaml:4:9: introspection.auth: "client_secret_jwt" is not one of "client_secret_basic", "client_secret_post", "private_key_jwt", did you mean "client_secret_post"?'],
    ['a secret method without the secret', '  endpoint: https://a.example/i\n  client_id: gw\n  auth: client_secret_post',
      'gateway.yaml:2:3: introspection.client_secret: required'],
    ['private_key_jwt with a secret', '  endpoint: https://a.example/i\n  client_id: gw\n  auth: private_key_jwt\n  client_secret: x\n  private_key_file: p256.key',
      'gateway.yaml:5:3: introspection.client_secret: is not used with auth: private_key_jwt'],
    ['a secret method with an algorithm', '  endpoint: https://a.example/i\n  client_id: gw\n  client_secret: x\n  algorithm: ES256',
      'gateway.yaml:5:3: introspection.algorithm: is not used with auth: client_secret_basic'],
    ['a key file that does not exist', '  endpoint: https://a.example/i\n  client_id: gw\n  auth: private_key_jwt\n  private_key_file: missing.key',
      `gateway.yaml:5:21: introspection.private_key_file: file not found: ${join(dir, 'missing.key')}`],
    ['a key file that holds no key', '  endpoint: https://a.example/i\n  client_id: gw\n  auth: private_key_jwt\n  private_key_file: not-a-key.pem',
      'gateway.yaml:5:21: introspection.private_key_file: is not a PEM private key'],
    ['an RSA key too short to sign with', '  endpoint: https://a.example/i\n  client_id: gw\n  auth: private_key_jwt\n  private_key_file: rsa1024.key',
      'gateway.yaml:5:21: introspection.private_key_file: is an RSA key of 1024 bits; use one of at least 2048'],
    ['an algorithm the key cannot make', '  endpoint: https://a.example/i\n  client_id: gw\n  auth: private_key_jwt\n  private_key_file: p256.key\n  algorithm: PS256',
      'gateway.yaml:6:14: introspection.algorithm: "PS256" is not one of "ES256", did you mean "ES256"?'],
    ['an unknown cache key', '  endpoint: https://a.example/i\n  client_id: gw\n  client_secret: x\n  cache: { max_ttl: 1m, max_entry: 5 }',
      'gateway.yaml:5:25: introspection.cache.max_entry: unknown key "max_entry", did you mean "max_entries"?'],
    ['a negative max_entries', '  endpoint: https://a.example/i\n  client_id: gw\n  client_secret: x\n  cache: { max_entries: -1 }',
      'gateway.yaml:5:25: introspection.cache.max_entries: must be at least 0'],
    ['max_concurrent 0', '  endpoint: https://a.example/i\n  client_id: gw\n  client_secret: x\n  max_concurrent: 0',
      'gateway.yaml:5:19: introspection.max_concurrent: must be at least 1'],
  ])('names file:line:col and the key for %s', (_name, body, problem) => {
    const { value, problems } = read(body);
    expect(problems).toEqual([problem]);
    if (!problem.includes('cache') && !problem.includes('max_concurrent')) expect(value).toBeUndefined();
  });

  it.each([
    ['p256.key', 'ES256'],
    ['ed25519.key', 'EdDSA'],
  ])('private_key_jwt signs with the algorithm its key implies (%s → %s)', (file, algorithm) => {
    const { value, problems } = read(`  endpoint: https://a.example/i\n  client_id: gw\n  auth: private_key_jwt\n  private_key_file: ${file}`);
    expect(problems).toEqual([]);
    expect(value?.auth).toEqual({ method: 'private_key_jwt', keyFile: join(dir, file), algorithm });
  });
});
