import { request as httpRequest } from 'node:http';
import { expect } from 'vitest';
import { InvalidTokenDescription } from '../../src/http/responses.js';
import { rawRequest, type RawRequest, type RawResponse, type TestGateway } from '../helpers/gateway.js';
import type { RecordingUpstream } from '../helpers/upstream.js';

/**
 * Shared by the gateway-level authentication suites (auth.test.ts, attacks.test.ts): how a refusal must look
 * from outside (SPEC §7), proof that nothing reached the upstream, and that neither the answer nor the logs
 * carry the token.
 */

const REALM = 'Bearer realm="authgate"';
const INVALID_REQUEST_DESCRIPTION = 'The request carries credentials in an invalid way';
const INSUFFICIENT_SCOPE_DESCRIPTION = 'The access token does not grant access to this resource';

export type TokenDescription = keyof typeof InvalidTokenDescription;

/** What the client must get for one refused request, and the deny reason the access log must give. */
export interface Refusal {
  readonly status: number;
  readonly error: string;
  readonly description: string;
  readonly wwwAuthenticate: string | undefined;
  readonly reason: string;
}

/** 401 without an error code: no credentials at all (RFC 6750 §3.1). */
export const noCredentials: Refusal = {
  status: 401,
  error: 'unauthorized',
  description: 'An access token is required',
  wwwAuthenticate: REALM,
  reason: 'no_token',
};

export function invalidToken(description: TokenDescription, reason: string): Refusal {
  const text = InvalidTokenDescription[description];
  return {
    status: 401,
    error: 'invalid_token',
    description: text,
    wwwAuthenticate: `${REALM}, error="invalid_token", error_description="${text}"`,
    reason,
  };
}

/** 401 for a sender-constrained token presented without the certificate or key it is bound to. */
export function unboundToken(reason: string): Refusal {
  return invalidToken('unbound', reason);
}

export function invalidRequest(reason: string): Refusal {
  return {
    status: 400,
    error: 'invalid_request',
    description: INVALID_REQUEST_DESCRIPTION,
    wwwAuthenticate: `${REALM}, error="invalid_request", error_description="${INVALID_REQUEST_DESCRIPTION}"`,
    reason,
  };
}

/** 403; `scopes` are the required scopes when a scope rule failed (they go into `scope="…"`). */
export function insufficientScope(rule: 'roles' | 'permissions' | 'scopes' | 'claims' | 'expr', scopes?: readonly string[]): Refusal {
  const scope = scopes ? `, scope="${scopes.join(' ')}"` : '';
  return {
    status: 403,
    error: 'insufficient_scope',
    description: INSUFFICIENT_SCOPE_DESCRIPTION,
    wwwAuthenticate: `${REALM}, error="insufficient_scope", error_description="${INSUFFICIENT_SCOPE_DESCRIPTION}"${scope}`,
    reason: `rule_${rule}`,
  };
}

/** No route under the reserved prefix (or anywhere): 404 without WWW-Authenticate. */
export const noRoute: Refusal = {
  status: 404,
  error: 'not_found',
  description: 'No route matches this request',
  wwwAuthenticate: undefined,
  reason: 'no_route',
};

/** A reserved endpoint asked with a method it does not take (logout: POST; verify: GET or POST). */
export const methodNotAllowed: Refusal = {
  status: 405,
  error: 'method_not_allowed',
  description: 'Method not allowed',
  wwwAuthenticate: undefined,
  reason: 'method',
};

/** RFC 6750 §2.1 `b64token`: what may follow `Bearer ` in an Authorization header. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

export function isB64token(token: string): boolean {
  return B64TOKEN.test(token);
}

export const bearer = (token: string): [string, string] => ['Authorization', `Bearer ${token}`];
export const tokenCookie = (token: string): [string, string] => ['Cookie', `access_token=${token}`];

/** The access-log line of one request, once the gateway has written it. */
export async function accessLogLine(gw: TestGateway, requestId: string): Promise<Record<string, unknown>> {
  const find = (): Record<string, unknown> | undefined =>
    gw.logs
      .filter((line) => line.includes(requestId))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line.msg === 'request' && line.requestId === requestId);
  await expect.poll(find).toBeDefined();
  return find() as Record<string, unknown>;
}

/**
 * Neither the whole token nor any substantial piece of it (a segment of 16+ characters) appears in `text`:
 * a description or log line that quoted the payload or signature would show up here.
 */
export function expectNoTokenText(text: string, token: string): void {
  expect(text).not.toContain(token);
  for (const piece of token.split(/[.\s"{}:,]+/)) {
    if (piece.length >= 16) expect(text).not.toContain(piece);
  }
}

/**
 * The SPEC §7 answer, exactly: status, JSON body of three fields, no-store/nosniff, the exact WWW-Authenticate;
 * the upstream saw nothing; the access log names the expected deny reason; no trace of `tokens` in the answer
 * or in any log line.
 */
export async function expectRefused(
  gw: TestGateway,
  upstream: RecordingUpstream,
  res: RawResponse,
  expected: Refusal,
  tokens: readonly string[] = [],
): Promise<void> {
  const requestId = res.headers['x-request-id'] ?? '';
  const observed = {
    status: res.status,
    body: res.json(),
    wwwAuthenticate: res.headers['www-authenticate'],
    contentType: res.headers['content-type'],
    cacheControl: res.headers['cache-control'],
    nosniff: res.headers['x-content-type-options'],
  };
  expect(observed).toEqual({
    status: expected.status,
    body: { error: expected.error, error_description: expected.description, request_id: requestId },
    wwwAuthenticate: expected.wwwAuthenticate,
    contentType: 'application/json',
    cacheControl: 'no-store',
    nosniff: 'nosniff',
  });
  expect(upstream.seen).toEqual([]);
  const line = await accessLogLine(gw, requestId);
  expect({ decision: line.decision, reason: line.reason }).toEqual({ decision: 'deny', reason: expected.reason });
  const answer = `${JSON.stringify(res.headers)}\n${res.body}`;
  const logs = gw.logs.join('\n');
  for (const token of tokens) {
    expectNoTokenText(answer, token);
    expectNoTokenText(logs, token);
  }
}

/** Sends `request` and checks it was refused as `expected` (see `expectRefused`). */
export async function refuses(
  gw: TestGateway,
  upstream: RecordingUpstream,
  request: RawRequest,
  expected: Refusal,
  tokens: readonly string[] = [],
): Promise<void> {
  await expectRefused(gw, upstream, await rawRequest(gw.port, request), expected, tokens);
}

export type UpgradeResult =
  | { readonly upgraded: true; readonly status: 101; readonly echo: string }
  | { readonly upgraded: false; readonly response: RawResponse };

/**
 * A WebSocket upgrade through a real HTTP client: 101 and one echoed message when the gateway lets it through,
 * otherwise the refusal as a RawResponse (so `expectRefused` applies to it).
 */
export function upgrade(port: number, target: string, headers: Record<string, string> = {}): Promise<UpgradeResult> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path: target,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version': '13',
        ...headers,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.once('data', (data: Buffer) => {
        resolve({ upgraded: true, status: res.statusCode as 101, echo: data.toString() });
        socket.destroy();
      });
      socket.write('ping-bytes');
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const flat: Record<string, string> = {};
        for (const [name, value] of Object.entries(res.headers)) {
          if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
        }
        resolve({
          upgraded: false,
          response: { status: res.statusCode ?? 0, headers: flat, body, json: <T>() => JSON.parse(body) as T },
        });
      });
    });
    req.on('error', reject);
    req.end();
  });
}
