/**
 * A browser session for the `session` scenario, made the way a browser makes one: the gateway's redirect of a
 * navigation, the dev issuer's sign-in, the gateway's own callback (code exchange, ID token check, a session in its
 * store). Nothing is planted: the load then goes through the gateway's ordinary session lookup.
 */
import { request, type IncomingHttpHeaders } from 'node:http';
import type { DevIssuer } from '../../src/testing/dev-issuer.js';
import { SESSION_COOKIE, SIGN_IN_CLIENT } from './servers.js';

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
}

/** node:http rather than fetch: fetch sends `Sec-Fetch-Mode: cors`, and only a navigation is sent to sign in. */
function get(url: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    }).on('error', reject).end();
  });
}

/** `name=value` of the Set-Cookie whose name is `name` (or starts with it, for a flow cookie). */
function cookie(answer: Answer, name: (cookieName: string) => boolean): string {
  const found = (answer.headers['set-cookie'] ?? []).map((line) => line.split(';')[0] ?? '').find((pair) => name(pair.split('=')[0] ?? ''));
  if (found === undefined) throw new Error(`no such cookie in the answer (${answer.status})`);
  return found;
}

/** Signs `user` in at `gatewayUrl` (a login route at `path`) and resolves with the session's `Cookie` header. */
export async function signedInCookie(gatewayUrl: string, issuer: DevIssuer, user: string, path: string): Promise<string> {
  issuer.registerClient({ clientId: SIGN_IN_CLIENT, redirectUris: [`${gatewayUrl}/_authgate/callback`] });
  const start = await get(`${gatewayUrl}${path}`, { accept: 'text/html', 'sec-fetch-mode': 'navigate' });
  if (start.status !== 302 || start.headers.location === undefined) throw new Error(`no redirect to sign in (${start.status})`);
  const flow = cookie(start, (name) => name.startsWith(`${SESSION_COOKIE}-login-`));
  const callback = await issuer.signInAs(start.headers.location, user);
  const done = await get(`${gatewayUrl}${callback.pathname}${callback.search}`, { cookie: flow });
  const session = cookie(done, (name) => name === SESSION_COOKIE);
  const check = await get(`${gatewayUrl}${path}`, { cookie: session });
  if (check.status !== 200) throw new Error(`the session does not open ${path} (${check.status})`);
  return session;
}
