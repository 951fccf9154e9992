import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startIdp, type Idp, type IdpKeyType, type JwksBehaviour } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { bearer, expectRefused, type Refusal } from './auth-fixture.js';

/**
 * ATTACKS.md "Key selection": a JWKS endpoint answering 500, a redirect, HTML, an oversized document, an RSA key
 * under 2048 bits, or hanging. The gateway never gets usable keys for that issuer, so its tokens — validly signed
 * by the IdP — get 503 with Retry-After (SPEC §4), never 401 and never the upstream. One healthy issuer beside
 * them shows the gateway itself is fine.
 */

const BROKEN: ReadonlyArray<[name: string, behaviour: JwksBehaviour, keys: IdpKeyType[]]> = [
  ['error-500', 'error-500', ['rsa']],
  ['redirect', 'redirect', ['rsa']],
  ['html', 'html', ['rsa']],
  ['oversized', 'oversized', ['rsa']],
  ['rsa-1024', 'ok', ['rsa-1024']],
  ['hang', 'hang', ['rsa']],
];

const keysUnavailable: Refusal = {
  status: 503,
  error: 'service_unavailable',
  description: 'The token issuer keys are unavailable',
  wwwAuthenticate: undefined,
  reason: 'keys_unavailable',
};

let healthy: Idp;
const broken = new Map<string, Idp>();
let upstream: RecordingUpstream;
let gw: TestGateway;

function issuerYaml(name: string, idp: Idp): string {
  return `
  ${name}:
    issuer: ${idp.issuer}
    jwks_uri: ${idp.jwksUri}
    audiences: [${idp.audience}]`;
}

beforeAll(async () => {
  healthy = await startIdp({ keys: ['rsa'] });
  for (const [name, behaviour, keys] of BROKEN) {
    const idp = await startIdp({ keys });
    idp.setJwksBehaviour(behaviour);
    broken.set(name, idp);
  }
  upstream = await startRecordingUpstream();
  // Start-up waits for every issuer's first fetch; the hanging one takes the fetch timeout (5 s).
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
issuers:${issuerYaml('healthy', healthy)}${[...broken].map(([name, idp]) => issuerYaml(name, idp)).join('')}
upstreams:
  api: { url: ${upstream.url}, timeout: 2s }
routes:
  - name: api
    match: { path: /** }
    upstream: api
`);
}, 20_000);

afterAll(async () => {
  await gw?.close();
  await Promise.all([upstream?.close(), healthy?.close(), ...[...broken.values()].map((idp) => idp.close())]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

describe('an issuer whose JWKS endpoint misbehaves', () => {
  it('does not stop a healthy issuer beside it', async () => {
    expect((await rawRequest(gw.port, { target: '/x', headers: [bearer(healthy.sign())] })).status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
  });

  it.each(BROKEN.map(([name]) => name))('%s: its validly signed tokens get 503 with Retry-After, and nothing is forwarded', async (name) => {
    const token = (broken.get(name) as Idp).sign();
    const res = await rawRequest(gw.port, { target: '/x', headers: [bearer(token)] });
    expect(res.headers['retry-after']).toBe('5');
    await expectRefused(gw, upstream, res, keysUnavailable, [token]);
  });

  it('readiness names every issuer without usable keys', async () => {
    const res = await fetch(`${gw.adminUrl}/readyz`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { checks: { issuers: Record<string, { state: string }> } };
    const states = Object.fromEntries(Object.entries(body.checks.issuers).map(([name, status]) => [name, status.state]));
    expect(states).toEqual({ healthy: 'ok', ...Object.fromEntries(BROKEN.map(([name]) => [name, 'unavailable'])) });
  });
});
