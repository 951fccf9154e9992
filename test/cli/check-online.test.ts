import { createServer } from 'node:net';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIdp, type Idp } from '../helpers/idp.js';
import { runCli } from './run-cli.js';

/** `authgate check --online` in a real process against real loopback IdPs. */

let good: Idp;
let ecOnly: Idp;
let weakRsa: Idp;
let dir: string;

beforeAll(async () => {
  [good, ecOnly, weakRsa] = await Promise.all([
    startIdp({ keys: ['rsa', 'ec'] }),
    startIdp({ keys: ['ec'] }),
    startIdp({ keys: ['rsa-1024'] }),
  ]);
  dir = await mkdtemp(join(tmpdir(), 'authgate-check-online-'));
});
afterAll(async () => {
  await Promise.all([good?.close(), ecOnly?.close(), weakRsa?.close()]);
});

/** A port nothing listens on: bound, noted, released. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

let files = 0;
async function configWith(issuerLines: string): Promise<string> {
  const file = join(dir, `gateway-${++files}.yaml`);
  await writeFile(
    file,
    `version: 1
issuers:
${issuerLines}
upstreams:
  api: { url: "http://127.0.0.1:3000" }
routes:
  - name: api
    match: { path: /api/** }
    upstream: api
`,
  );
  return file;
}

function issuer(name: string, lines: Record<string, string>): string {
  return [`  ${name}:`, ...Object.entries(lines).map(([key, value]) => `    ${key}: ${value}`)].join('\n');
}

describe('authgate check --online', () => {
  it('loads every issuer through discovery and JWKS and passes when all is well', async () => {
    const file = await configWith(
      [
        issuer('disco', { issuer: good.issuer, discovery: 'true', audiences: '[api]', algorithms: '[RS256, ES256]' }),
        issuer('direct', { issuer: ecOnly.issuer, jwks_uri: ecOnly.jwksUri, audiences: '[api]', algorithms: '[ES256]' }),
      ].join('\n'),
    );
    const run = await runCli(['check', '--online', '-c', file]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`${file}: ok`);
    expect(run.stdout).toContain('online: keys loaded for disco, direct');
    expect(good.discoveryFetches).toBeGreaterThanOrEqual(1);
  });

  it('reports a discovery document naming another issuer, with both values (offline check passes)', async () => {
    const configured = good.issuer.replace(/\/$/, '');
    const file = await configWith(issuer('auth0', { issuer: configured, discovery: 'true', audiences: '[api]' }));
    expect((await runCli(['check', '-c', file])).code).toBe(0);
    const run = await runCli(['check', '--online', '-c', file]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `${file}:3:3: issuers.auth0: discovery document names another issuer: expected "${configured}", got "${good.issuer}"\n`,
    );
    expect(run.stdout).not.toContain(': ok');
  });

  it('reports a JWKS with no key for the configured algorithm: RS256 configured, only EC keys published', async () => {
    const file = await configWith(issuer('ec', { issuer: ecOnly.issuer, jwks_uri: ecOnly.jwksUri, audiences: '[api]', algorithms: '[RS256]' }));
    const run = await runCli(['check', '--online', '-c', file]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^.*:3:3: issuers\.ec: no key in the JWK Set is usable for \[RS256\] \(kid ec-[0-9a-f]{8}: no allowed algorithm for kty "EC"\)\n$/);
  });

  it('reports an RSA key under 2048 bits', async () => {
    const file = await configWith(issuer('weak', { issuer: weakRsa.issuer, jwks_uri: weakRsa.jwksUri, audiences: '[api]' }));
    const run = await runCli(['check', '--online', '-c', file]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/issuers\.weak: no key in the JWK Set is usable for \[RS256\] \(kid rsa-1024-[0-9a-f]{8}: RSA key of 1024 bits\)/);
  });

  it('reports unreachable discovery and JWKS endpoints, naming the URL', async () => {
    const port = await closedPort();
    const file = await configWith(
      [
        issuer('gone', { issuer: `http://127.0.0.1:${port}/`, discovery: 'true', audiences: '[api]' }),
        issuer('moved', { issuer: 'http://127.0.0.1/moved', jwks_uri: `http://127.0.0.1:${port}/jwks.json`, audiences: '[api]' }),
      ].join('\n'),
    );
    const run = await runCli(['check', '--online', '-c', file]);
    expect(run.code).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines).toContainEqual(
      expect.stringMatching(new RegExp(`issuers\\.gone: discovery http://127\\.0\\.0\\.1:${port}/\\.well-known/openid-configuration: request failed: .*ECONNREFUSED`)),
    );
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`issuers\\.moved: JWKS http://127\\.0\\.0\\.1:${port}/jwks\\.json: request failed: .*ECONNREFUSED`)));
  });

  it('warns (exit 0) about an allowed algorithm no published key can verify', async () => {
    const file = await configWith(issuer('mixed', { issuer: ecOnly.issuer, jwks_uri: ecOnly.jwksUri, audiences: '[api]', algorithms: '[RS256, ES256]' }));
    const run = await runCli(['check', '--online', '-c', file]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('issuers.mixed: warning: no published key can verify RS256');
  });
});

describe('authgate check (offline) with a jwks_file', () => {
  it.each([
    ['a PEM public key instead of a JWK Set', '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n', /issuers\.local: jwks_file .*: not valid JSON\n$/],
    ['JSON that is no JWK Set', '{"kty":"RSA"}', /issuers\.local: not a JWK Set \(no "keys" array\)\n$/],
  ])('reads the file as the gateway would and refuses %s, without --online', async (_case, content, message) => {
    const jwks = join(dir, `jwks-${++files}.json`);
    await writeFile(jwks, content);
    const file = await configWith(issuer('local', { issuer: 'https://local.example.com/', jwks_file: jwks, audiences: '[api]' }));
    const run = await runCli(['check', '-c', file]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(message);
  });

  it('passes with a usable JWK Set', async () => {
    const jwks = join(dir, `jwks-${++files}.json`);
    await writeFile(jwks, JSON.stringify(await (await fetch(good.jwksUri)).json()));
    const file = await configWith(issuer('local', { issuer: 'https://local.example.com/', jwks_file: jwks, audiences: '[api]' }));
    const run = await runCli(['check', '-c', file]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
  });
});
