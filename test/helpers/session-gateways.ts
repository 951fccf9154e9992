import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { rawRequest, startTestGateway, type RawResponse, type TestGateway } from './gateway.js';
import { signInThroughGateway, startOidcProvider, type TestProvider } from './oidc-login-provider.js';
import { freePort } from './redis.js';
import type { RecordingUpstream, SeenRequest } from './upstream.js';

/**
 * Two gateway instances that sign people in with a real OpenID provider and share their sessions through one store,
 * and the requests the shared-session tests make of them. Every session request carries a unique `X-Probe`
 * header, so "the upstream never saw it" holds for each refused request on its own.
 */

export const RESERVED = '/_authgate';
/** A sign-out or a back-channel logout through one instance holds on every other within this. */
export const SIGN_OUT_DEADLINE_MS = 1000;
const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

export interface SessionGateways {
  /** Signs people in: the provider's redirect URI is its callback. */
  readonly a: TestGateway;
  /** Receives the provider's back-channel logouts. */
  readonly b: TestGateway;
  readonly provider: TestProvider;
  /** Signs `user` in through A; the session cookie as `name=value`. */
  signIn(user: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * `redisYaml` is the value of `store.redis`, indented four spaces. The upstream receives the subject as
 * `X-User-Id`, the provider's session ID (`sid`) as `X-Idp-Sid`, and the session's access token.
 */
export async function startSessionGateways(redisYaml: string, prefix: string, upstream: RecordingUpstream): Promise<SessionGateways> {
  const [portA, portB] = [await freePort(), await freePort()];
  const provider = await startOidcProvider({
    redirectUri: `http://127.0.0.1:${portA}${RESERVED}/callback`, backchannelLogoutUri: `http://127.0.0.1:${portB}${RESERVED}/backchannel_logout`,
  });
  const started: TestGateway[] = [];
  try {
    for (const port of [portA, portB]) started.push(await startTestGateway(sessionGatewayYaml(port, redisYaml, prefix, provider, upstream)));
  } catch (error) {
    await Promise.all([...started.map((gateway) => gateway.close()), provider.close()]);
    throw error;
  }
  const [a, b] = started as [TestGateway, TestGateway];
  return {
    a, b, provider,
    signIn: (user) => signInThroughGateway(a.port, provider, user),
    close: async () => {
      await Promise.all([a.close(), b.close()]);
      await provider.close();
    },
  };
}

function sessionGatewayYaml(port: number, redisYaml: string, prefix: string, provider: TestProvider, upstream: RecordingUpstream): string {
  return `
version: 1
server: { listen: 127.0.0.1:${port}, shutdown_grace: 200ms }
admin: { listen: 127.0.0.1:0 }
store:
  redis:
${redisYaml}
  prefix: "${prefix}"
identity: { forward_token: true, headers: { X-User-Id: subject, X-Idp-Sid: claims.sid } }
issuers:
  corp: { issuer: ${provider.issuer}, discovery: true, audiences: [${provider.clientId}], algorithms: [RS256] }
upstreams:
  legacy: { url: ${upstream.url}, timeout: 2s }
login:
  external_url: http://127.0.0.1:${port}
  providers:
    corp: { issuer: corp, client_id: ${provider.clientId}, client_secret: ${provider.clientSecret}, scopes: [openid, email] }
  cookie: { name: authgate }
  keys: ['a-session-key-of-at-least-32-bytes!!']
routes:
  - { name: app, match: { path: /app/** }, upstream: legacy, login: corp }
`;
}

export interface SessionSent {
  readonly res: RawResponse;
  /** What the upstream received of this very request; undefined when it never got it. */
  readonly seen: SeenRequest | undefined;
}

/** A script's request (no navigation) on a login route, carrying the session cookie among others. */
export async function sessionRequest(upstream: RecordingUpstream, gateway: TestGateway, cookie: string): Promise<SessionSent> {
  const probe = randomUUID();
  const res = await rawRequest(gateway.port, { target: '/app/page', headers: [['Cookie', `${cookie}; theme=dark`], ['X-Probe', probe]] });
  // The upstream records a request before it answers, so by now it has it if it ever got it.
  return { res, seen: upstream.seen.find((seen) => seen.headers['x-probe'] === probe) };
}

export function expectSessionForwarded(sent: SessionSent, user: string): void {
  expect(sent.res.status).toBe(200);
  expect(sent.seen?.headers['x-user-id']).toBe(user);
  // The session's access token goes upstream; the session cookie never does.
  expect(sent.seen?.headers.authorization).toMatch(/^Bearer [\w.~+/-]+=*$/);
  expect(sent.seen?.headers.cookie).toBe('theme=dark');
}

export function expectSessionRefused(sent: SessionSent): void {
  expect(sent.res.status).toBe(401);
  expect(sent.seen).toBeUndefined();
}

/** Polls until `gateway` refuses the cookie; resolves with how long that took and the refused request, or fails past the deadline. */
export async function refusedWithin(
  upstream: RecordingUpstream, gateway: TestGateway, cookie: string, deadlineMs = SIGN_OUT_DEADLINE_MS,
): Promise<{ elapsedMs: number; refused: SessionSent }> {
  const started = performance.now();
  while (performance.now() - started < deadlineMs) {
    const sent = await sessionRequest(upstream, gateway, cookie);
    if (sent.res.status === 401) return { elapsedMs: performance.now() - started, refused: sent };
  }
  throw new Error(`the session still opened ${gateway.url} after ${deadlineMs} ms`);
}

export async function signOut(gateway: TestGateway, cookie: string): Promise<void> {
  const answer = await rawRequest(gateway.port, { target: `${RESERVED}/sign_out`, headers: [['Cookie', cookie]] });
  expect(answer.status).toBe(302);
}

/** Posts a logout token of the provider naming `sid` and/or `sub` to `gateway`'s back-channel endpoint; its status. */
export async function backchannelLogout(gateway: TestGateway, provider: TestProvider, names: { sid?: string; sub?: string }): Promise<number> {
  const token = provider.sign(
    { iss: provider.issuer, aud: provider.clientId, iat: Math.floor(Date.now() / 1000), jti: randomUUID(), events: { [BACKCHANNEL_LOGOUT_EVENT]: {} }, ...names },
    { typ: 'logout+jwt' },
  );
  const answer = await rawRequest(gateway.port, {
    method: 'POST', target: `${RESERVED}/backchannel_logout`, headers: [['Content-Type', 'application/x-www-form-urlencoded']], body: `logout_token=${token}`,
  });
  return answer.status;
}

/** `authgate_sessions_active` as the instance's admin listener reports it (undefined when /metrics is not 200). */
export async function sessionsActive(gateway: TestGateway): Promise<number | undefined> {
  const response = await fetch(`${gateway.adminUrl}/metrics`);
  if (response.status !== 200) return undefined;
  const line = (await response.text()).split('\n').find((entry) => entry.startsWith('authgate_sessions_active '));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}
