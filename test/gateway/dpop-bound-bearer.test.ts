import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startIdp, type Idp } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { bearer, refuses, unboundToken } from './auth-fixture.js';

/** A token bound to a DPoP key (`cnf.jkt`) presented as a plain Bearer token: a stolen token used without its key. */

const boundAsBearer = unboundToken('dpop_bound_token_as_bearer');

let idp: Idp;
let upstream: RecordingUpstream;
let gw: TestGateway;

beforeAll(async () => {
  [idp, upstream] = await Promise.all([startIdp({ keys: ['rsa'] }), startRecordingUpstream()]);
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0 }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
  main: { issuer: ${idp.issuer}, jwks_uri: ${idp.jwksUri}, audiences: [${idp.audience}] }
upstreams:
  api: { url: ${upstream.url} }
routes:
  - { name: api, match: { path: /** }, upstream: api }
`);
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([upstream?.close(), idp?.close()]);
});

beforeEach(() => {
  upstream.seen.length = 0;
});

describe('a DPoP-bound token sent as Bearer', () => {
  it('is refused, and the upstream sees nothing', async () => {
    const token = idp.sign({ cnf: { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' } });
    await refuses(gw, upstream, { target: '/accounts', headers: [bearer(token)] }, boundAsBearer, [token]);
  });

  it('is refused from the cache too: the second time it is presented', async () => {
    const token = idp.sign({ cnf: { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' } });
    await refuses(gw, upstream, { target: '/accounts', headers: [bearer(token)] }, boundAsBearer, [token]);
    await refuses(gw, upstream, { target: '/accounts', headers: [bearer(token)] }, boundAsBearer, [token]);
  });

  it('refuses a token whose cnf is not a JSON object: its binding cannot be read, so it is not taken as unbound', async () => {
    for (const cnf of [[{ jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' }], 'jkt', null]) {
      const token = idp.sign({ cnf });
      await refuses(gw, upstream, { target: '/accounts', headers: [bearer(token)] }, boundAsBearer, [token]);
    }
  });

  it('leaves unbound tokens and certificate-bound ones alone', async () => {
    for (const claims of [{}, { cnf: { 'x5t#S256': 'bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2' } }]) {
      expect((await rawRequest(gw.port, { target: '/accounts', headers: [bearer(idp.sign(claims))] })).status).toBe(200);
    }
    expect(upstream.seen).toHaveLength(2);
  });
});
