import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { signInThroughGateway, startOidcProvider, type TestProvider } from '../helpers/oidc-login-provider.js';
import { freePort } from '../helpers/redis.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/**
 * The session metrics as the gateway reports them: sign-ins, refreshes and live sessions, through a real provider
 * whose access tokens are always due for refresh (they live a minute; `refresh_before` is two).
 */
const PREFIX = '/_authgate';

let provider: TestProvider;
let upstream: RecordingUpstream;
let gw: TestGateway;

beforeAll(async () => {
  const port = await freePort();
  upstream = await startRecordingUpstream();
  provider = await startOidcProvider({ redirectUri: `http://127.0.0.1:${port}${PREFIX}/callback`, accessTokenTtlS: 60 });
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:${port}, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
issuers:
  corp: { issuer: ${provider.issuer}, discovery: true, audiences: [${provider.clientId}], algorithms: [RS256] }
upstreams:
  legacy: { url: ${upstream.url}, timeout: 2s }
login:
  external_url: http://127.0.0.1:${port}
  providers:
    corp: { issuer: corp, client_id: ${provider.clientId}, client_secret: ${provider.clientSecret}, scopes: [openid, email] }
  cookie: { name: authgate }
  session: { refresh_before: 2m }
routes:
  - { name: app, match: { path: /app/** }, upstream: legacy, login: corp }
`);
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await Promise.all([upstream?.close(), provider?.close()]);
});

async function metric(name: string): Promise<string> {
  return gw.metrics.registry.getSingleMetricAsString(name);
}

describe('session metrics', () => {
  it('count sign-ins, refreshes by result, and the sessions live now', async () => {
    expect(await metric('authgate_sessions_active')).toMatch(/^authgate_sessions_active 0$/m);
    const cookie = await signInThroughGateway(gw.port, provider, 'alice');
    expect(await metric('authgate_logins_total')).toMatch(/^authgate_logins_total\{provider="corp",result="success"\} 1$/m);
    expect(await metric('authgate_sessions_active')).toMatch(/^authgate_sessions_active 1$/m);

    const refreshed = await rawRequest(gw.port, { target: '/app/page', headers: [['Cookie', cookie]] });
    expect(refreshed.status).toBe(200);
    expect(await metric('authgate_session_refresh_total')).toMatch(/^authgate_session_refresh_total\{provider="corp",result="success"\} 1$/m);

    // The provider's answer no longer verifies: the refresh fails for good and the session ends.
    provider.tamperTokenResponse((body) => ({ ...body, id_token: 'not.a.token' }));
    try {
      upstream.seen.length = 0;
      const ended = await rawRequest(gw.port, { target: '/app/page', headers: [['Cookie', cookie]] });
      expect(ended.status).toBe(401);
      expect(upstream.seen).toHaveLength(0);
    } finally {
      provider.tamperTokenResponse(undefined);
    }
    expect(await metric('authgate_session_refresh_total')).toMatch(/^authgate_session_refresh_total\{provider="corp",result="ended"\} 1$/m);
    expect(await metric('authgate_sessions_active')).toMatch(/^authgate_sessions_active 0$/m);
  });
});
