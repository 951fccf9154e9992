import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';
import { startIdp, type Idp } from '../helpers/idp.js';
import { runCli } from './run-cli.js';

/** `authgate explain --dpop` in a real process: each proof check that held, and the one that failed. */

let idp: Idp;
let client: DpopClient;
let file: string;

beforeAll(async () => {
  [idp, client] = await Promise.all([startIdp({ keys: ['rsa'] }), dpopClient()]);
  const dir = await mkdtemp(join(tmpdir(), 'authgate-explain-dpop-'));
  file = join(dir, 'gateway.yaml');
  await writeFile(
    file,
    `
version: 1
issuers:
  bank:
    issuer: ${idp.issuer}
    jwks_uri: ${idp.jwksUri}
    audiences: [${idp.audience}]
    dpop: { algorithms: [ES256] }
upstreams:
  api: { url: "http://127.0.0.1:3000" }
routes:
  - { name: api, match: { path: /api/** }, upstream: api }
`,
  );
});
afterAll(async () => {
  await idp?.close();
});

const explain = (...args: string[]) => runCli(['explain', '-c', file, ...args]);
const URL = 'https://api.example.com/api/accounts/7';

describe('authgate explain --dpop', () => {
  it('lists the proof checks of a proof that holds (exit 0)', async () => {
    const token = idp.sign({ sub: 'alice', cnf: { jkt: client.jkt } });
    const run = await explain('--json', '--token', token, '--dpop', await client.proof({ htm: 'GET', htu: URL, token }), 'GET', URL);
    expect(run.code).toBe(0);
    const steps = (JSON.parse(run.stdout) as { steps: { stage: string; ok: boolean; detail: string }[] }).steps;
    const held = steps.find((step) => step.detail.startsWith('DPoP proof holds'));
    // The process takes a moment to start: the proof's age is whatever it is by then.
    expect({ ...held, detail: held?.detail.replace(/iat \d+ s ago/, 'iat N s ago') }).toEqual({
      stage: 'authenticate',
      ok: true,
      detail: `DPoP proof holds: header: typ dpop+jwt, alg ES256, public jwk (thumbprint ${client.jkt}); signature holds; the proof key is the token's cnf.jkt; `
        + `htm GET, htu ${URL}; iat N s ago, within max_age 60 s; ath is the hash of the access token; jti not seen before`,
    });
  });

  it('names the check that failed after those that held (exit 3)', async () => {
    const token = idp.sign({ sub: 'alice', cnf: { jkt: client.jkt } });
    const run = await explain('--token', token, '--dpop', await client.proof({ htm: 'POST', htu: URL, token }), 'GET', URL);
    expect(run.code).toBe(3);
    expect(run.stdout).toContain(`FAIL  authenticate dpop_proof_htm: header: typ dpop+jwt, alg ES256, public jwk (thumbprint ${client.jkt}); signature holds; `
      + `the proof key is the token's cnf.jkt; then htm "POST" is not the request method GET`);
    expect(run.stdout).toContain('result: 401 invalid_dpop_proof (dpop_proof_htm)');
  });

  it('is a usage error without --token (exit 2)', async () => {
    const run = await explain('--claims', '{"sub":"alice"}', '--dpop', 'a.b.c', 'GET', URL);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--dpop needs --token');
  });
});
