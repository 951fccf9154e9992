/**
 * The DPoP walk-through of docs/issuers-and-policy.md works as written: its script makes the key and the proofs,
 * and its curl commands, run by bash against a real gateway, get through (with and without nonces).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startIdp, type Idp } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const DOC_URL = 'https://api.bank.example.com';

let dir: string;
let idp: Idp;
let upstream: RecordingUpstream;
let plain: TestGateway;
let nonced: TestGateway;
let shellBlocks: string[];

function gatewayYaml(dpop: string): string {
  return `
version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
issuers:
  bank: { issuer: ${idp.issuer}, jwks_uri: ${idp.jwksUri}, audiences: [${idp.audience}], dpop: ${dpop} }
upstreams:
  api: { url: ${upstream.url} }
routes:
  - { name: api, match: { path: /** }, upstream: api }
`;
}

beforeAll(async () => {
  const doc = await readFile(join(ROOT, 'docs/issuers-and-policy.md'), 'utf8');
  const script = [...doc.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((match) => match[1] ?? '').find((block) => block.includes('dpop-proof.mjs'));
  shellBlocks = [...doc.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((match) => match[1] ?? '').filter((block) => block.includes('dpop-proof.mjs'));
  if (script === undefined || shellBlocks.length !== 2) throw new Error('the DPoP walk-through is not in docs/issuers-and-policy.md');
  // The script imports jose as a user's project would: from a node_modules beside it.
  dir = await mkdtemp(join(tmpdir(), 'authgate-dpop-doc-'));
  await Promise.all([writeFile(join(dir, 'dpop-proof.mjs'), script), symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'))]);
  [idp, upstream] = await Promise.all([startIdp({ keys: ['rsa'] }), startRecordingUpstream()]);
  plain = await startTestGateway(gatewayYaml('{ algorithms: [ES256] }'));
  nonced = await startTestGateway(gatewayYaml('{ algorithms: [ES256], nonce: true, nonce_secret: ${DPOP_NONCE_SECRET} }'), { DPOP_NONCE_SECRET: 'the-walk-through-nonce-secret-0123456789' });
});

afterAll(async () => {
  await Promise.all([plain?.close(), nonced?.close()]);
  await Promise.all([upstream?.close(), idp?.close()]);
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** The token the walk-through mints with `authgate token`: bound to the script's key. */
async function boundToken(): Promise<string> {
  const { stdout } = await run(process.execPath, ['dpop-proof.mjs', 'jkt'], { cwd: dir });
  return idp.sign({ sub: 'alice', cnf: { jkt: stdout.trim() } });
}

/** A shell block of the walk-through, run by bash against `gw`, with TOKEN (and URL) already set. */
async function runShell(block: string, gw: TestGateway, token: string): Promise<string> {
  const commands = block.replace(/^TOKEN=[\s\S]*?\)\n/, '').replaceAll(DOC_URL, gw.url);
  const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', commands], { cwd: dir, env: { ...process.env, TOKEN: token, URL: `${gw.url}/accounts/7` } });
  return stdout;
}

describe('the DPoP walk-through', () => {
  it('gets a request with a proof through', async () => {
    const out = await runShell(shellBlocks[0] as string, plain, await boundToken());
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(upstream.seen.at(-1)?.url).toBe('/accounts/7');
  });

  it('learns the nonce from the first answer and gets through with it', async () => {
    const out = await runShell(shellBlocks[1] as string, nonced, await boundToken());
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
  });
});
