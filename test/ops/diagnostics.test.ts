import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIdp, type Idp } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { startAuthgate, type AuthgateProcess } from './process.js';

/**
 * What the operator reads in a real `authgate start` process: a refused token's access line names the unknown
 * `iss` and the configured issuer it nearly matches (the client's answer stays the fixed JSON), and an issuer
 * whose discovery document names another issuer is one warning with both values and no stack trace.
 */

let served: Idp;
let misnamed: Idp;
let upstream: RecordingUpstream;
let configFile: string;
let running: AuthgateProcess | undefined;

/** Started by the first test that needs it (the process helper waits with expect.poll, which needs a test). */
async function gateway(): Promise<AuthgateProcess> {
  running ??= await startAuthgate(configFile);
  return running;
}

beforeAll(async () => {
  [served, misnamed] = await Promise.all([startIdp({ keys: ['rsa'] }), startIdp({ keys: ['rsa'] })]);
  upstream = await startRecordingUpstream();
  const dir = await mkdtemp(join(tmpdir(), 'authgate-diagnostics-'));
  configFile = join(dir, 'gateway.yaml');
  await writeFile(
    configFile,
    `version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  served:
    issuer: ${served.issuer}
    jwks_uri: ${served.jwksUri}
    audiences: [${served.audience}]
  auth0:
    issuer: ${misnamed.issuer.replace(/\/$/, '')}
    discovery: true
    audiences: [${misnamed.audience}]
upstreams:
  api: { url: "${upstream.url}" }
routes:
  - name: api
    match: { path: /api/** }
    upstream: api
`,
  );
});
afterAll(async () => {
  await running?.kill();
  await upstream?.close();
  await Promise.all([served?.close(), misnamed?.close()]);
});

describe('refusal diagnostics in the logs', () => {
  it('an unknown iss: the client gets the fixed 401, the access line names the iss and the nearest issuer', async () => {
    const iss = served.issuer.replace(/\/$/, '');
    const authgate = await gateway();
    const response = await fetch(`${authgate.url}/api/things`, { headers: { authorization: `Bearer ${served.sign({ iss })}` } });
    const body = (await response.json()) as Record<string, unknown>;
    expect(response.status).toBe(401);
    expect(body).toEqual({ error: 'invalid_token', error_description: 'The access token issuer is not accepted', request_id: expect.any(String) });
    expect(response.headers.get('www-authenticate')).toBe(
      'Bearer realm="authgate", error="invalid_token", error_description="The access token issuer is not accepted"',
    );
    expect(JSON.stringify(body)).not.toContain('127.0.0.1');
    expect(upstream.seen).toHaveLength(0);
    const line = await authgate.waitForLog((l) => l.msg === 'request' && l.requestId === body.request_id);
    expect(line).toMatchObject({
      status: 401,
      decision: 'deny',
      reason: 'unknown_issuer',
      detail: `iss "${iss}" is not a configured issuer; nearest "${served.issuer}" (differs by a trailing slash)`,
    });
  });

  it('a discovery document naming another issuer: one warning with both values, no stack trace', async () => {
    const configured = misnamed.issuer.replace(/\/$/, '');
    const authgate = await gateway();
    const warning = await authgate.waitForLog((l) => l.msg === 'issuer key refresh failed' && l.issuer === 'auth0');
    expect(warning).toMatchObject({
      level: 40,
      reason: `discovery document names another issuer: expected "${configured}", got "${misnamed.issuer}"`,
    });
    expect(warning).not.toHaveProperty('err');
    expect(authgate.logs.filter((l) => JSON.stringify(l).includes('    at '))).toEqual([]);
  });

  it('a config file that disappears: one warning with the reason, no stack trace, the gateway keeps serving', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'authgate-diagnostics-gone-'));
    const file = join(dir, 'gateway.yaml');
    await copyFile(configFile, file);
    const authgate = await startAuthgate(file);
    try {
      await rm(file);
      const warning = await authgate.waitForLog((l) => l.msg === 'config file unreadable; keeping the running config');
      expect(warning).toMatchObject({ level: 40, file, reason: 'ENOENT' });
      expect(warning).not.toHaveProperty('err');
      expect((await fetch(`${authgate.url}/api/things`)).status).toBe(401);
    } finally {
      await authgate.kill();
    }
  });
});
