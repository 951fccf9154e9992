import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIdp, type Idp } from '../helpers/idp.js';
import { runCli } from './run-cli.js';

/**
 * `authgate explain` in a real process against real loopback IdPs: every refused check names the values it
 * compared, `--json` gives the same as one object, and the exit code says forwarded (0) or refused (3).
 */

let plain: Idp;
let strict: Idp;
let file: string;

beforeAll(async () => {
  [plain, strict] = await Promise.all([startIdp({ keys: ['rsa', 'ec'] }), startIdp({ keys: ['rsa'], audience: 'orders' })]);
  const dir = await mkdtemp(join(tmpdir(), 'authgate-explain-diag-'));
  file = join(dir, 'gateway.yaml');
  await writeFile(
    file,
    `
version: 1
issuers:
  plain:
    issuer: ${plain.issuer}
    jwks_uri: ${plain.jwksUri}
    audiences: [${plain.audience}, other-api]
    algorithms: [RS256]
  strict:
    issuer: ${strict.issuer}
    jwks_uri: ${strict.jwksUri}
    audiences: [orders]
    token_types: [at+jwt]
    require_claims: { email_verified: true }
upstreams:
  api: { url: "http://127.0.0.1:3000" }
routes:
  - name: api
    match: { path: /api/** }
    upstream: api
    require: { roles: [reader] }
`,
  );
});
afterAll(async () => {
  await plain?.close();
  await strict?.close();
});

const explain = (...args: string[]) => runCli(['explain', '-c', file, ...args]);
const now = (): number => Math.floor(Date.now() / 1000);

describe('authgate explain names what a refused token was compared with', () => {
  it.each<[string, () => string, RegExp]>([
    [
      'an iss missing the trailing slash, with the nearest configured issuer',
      () => plain.sign({ iss: plain.issuer.replace(/\/$/, ''), roles: ['reader'] }),
      /FAIL {2}authenticate unknown_issuer \(header Authorization\): iss "http:\/\/127\.0\.0\.1:\d+" is not a configured issuer; nearest "http:\/\/127\.0\.0\.1:\d+\/" \(differs by a trailing slash\)/,
    ],
    [
      'an https iss for an http issuer',
      () => plain.sign({ iss: plain.issuer.replace('http:', 'https:') }),
      /unknown_issuer .*nearest "http:\/\/127\.0\.0\.1:\d+\/" \(differs by the scheme \(https vs http\)\)/,
    ],
    [
      'exp, now and by how much',
      () => plain.sign({ iat: now() - 7200, exp: now() - 3600 }),
      /FAIL {2}authenticate expired \(header Authorization\): exp \d+ \(\d{4}-\d\d-\d\dT[\d:.]+Z\) is 36\d\d s in the past of now \d+ \(clock_skew 30 s\)/,
    ],
    [
      'nbf in the future',
      () => plain.sign({ nbf: now() + 600 }),
      /not_yet_valid .*: nbf \d+ .* is (59\d|600) s in the future of now/,
    ],
    ['aud against the audiences', () => plain.sign({ aud: 'billing' }), /audience .*: aud "billing" matches none of audiences \[https:\/\/api\.test, other-api\]/],
    ['alg against the allow-list', () => plain.sign({}, { key: 'ec' }), /alg_not_allowed .*: alg "ES256" is not in algorithms \[RS256\]/],
    [
      'a kid the key set does not have, with the kids it has',
      () => plain.sign({}, { kid: 'retired-2023' }),
      /unknown_kid .*: kid "retired-2023" is not in the key set: issuer plain has RS256 keys with kids \[rsa-[0-9a-f]{8}\]/,
    ],
    [
      'typ against token_types',
      () => strict.sign({ email_verified: true }),
      /FAIL {2}authenticate type .*: typ "JWT" is not in token_types \[at\+jwt\]/,
    ],
    [
      'require_claims',
      () => strict.sign({ email_verified: false }, { header: { typ: 'at+jwt' } }),
      /FAIL {2}authenticate claims .*: require_claims: email_verified is false, required true/,
    ],
  ])('%s', async (_case, token, expected) => {
    const jwt = token();
    const run = await explain('--token', jwt, 'GET', '/api/things');
    expect(run.code).toBe(3);
    expect(run.stdout).toMatch(expected);
    expect(run.stdout).toMatch(/result: 401 invalid_token/);
    expect(run.stdout).not.toContain(jwt);
  });
});

describe('authgate explain --json', () => {
  it('prints the route, each step, the verdict and the upstream headers of a forwarded request (exit 0)', async () => {
    const run = await explain('--json', '--token', plain.sign({ sub: 'alice', roles: ['reader'] }), 'GET', 'http://api.local/api/things?x=1');
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      route: 'api',
      verdict: 'allow',
      status: null,
      upstream: { name: 'api', path: '/api/things?x=1' },
      upstreamHeaders: { 'x-user-id': 'alice', 'x-user-roles': 'reader' },
    });
    expect(report.steps).toContainEqual({ stage: 'authenticate', ok: true, detail: 'issuer plain, subject alice' });
    expect(report.rules).toContainEqual(expect.objectContaining({ rule: 'roles', ok: true }));
  });

  it('gives the failed step with its detail, the status and the reason of a refused one (exit 3)', async () => {
    const run = await explain('--json', '--token', plain.sign({ aud: 'billing' }), 'GET', '/api/things');
    expect(run.code).toBe(3);
    const report = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({ route: 'api', verdict: 'deny', status: 401, error: 'invalid_token', reason: 'audience', upstream: null, upstreamHeaders: {} });
    expect(report.steps).toContainEqual({
      stage: 'authenticate',
      ok: false,
      detail: 'audience (header Authorization): aud "billing" matches none of audiences [https://api.test, other-api]',
    });
  });
});

describe('authgate explain --claims', () => {
  it('with several issuers and no "iss" is a usage error naming them (exit 2)', async () => {
    const run = await explain('--claims', '{"sub":"bob","roles":["reader"]}', 'GET', '/api/things');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`add "iss" to --claims naming one of "${plain.issuer}", "${strict.issuer}"`);
    expect(run.stdout).toBe('');
  });

  it('without "exp" builds an identity valid for an hour and says so', async () => {
    const claims = JSON.stringify({ iss: strict.issuer, sub: 'bob', roles: ['reader'] });
    const run = await explain('--json', '--claims', claims, 'GET', '/api/things');
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout) as { steps: { stage: string; detail: string }[]; dryRun: boolean };
    expect(report.dryRun).toBe(true);
    const step = report.steps.find((s) => s.stage === 'claims');
    const exp = Date.parse(/\(([^)]+)\)/.exec(step?.detail ?? '')?.[1] ?? '');
    expect(step?.detail).toMatch(/^no exp in --claims: using now \+ 1h/);
    expect(Math.abs(exp - (Date.now() + 3600_000))).toBeLessThan(60_000);
  });

  it('with an iss no issuer has, refuses it and names the nearest', async () => {
    const claims = JSON.stringify({ iss: strict.issuer.toUpperCase(), sub: 'bob' });
    const run = await explain('--claims', claims, 'GET', '/api/things');
    expect(run.code).toBe(3);
    expect(run.stdout).toMatch(/FAIL {2}authenticate unknown_issuer .*nearest "http:\/\/127\.0\.0\.1:\d+\/" \(differs by letter case\)/);
  });
});
