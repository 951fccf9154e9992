import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';

/**
 * Every response authgate makes itself (SPEC §7): a small JSON body with a fixed description, never anything
 * from the request or the token, and headers that keep it out of caches and sniffers.
 */
export interface GatewayError {
  readonly status: number;
  readonly code: string;
  readonly description: string;
  /** Extra response headers: WWW-Authenticate, Retry-After, RateLimit-*. */
  readonly headers?: OutgoingHttpHeaders | undefined;
}

/**
 * Fixed list of client-facing descriptions (SPEC §7). The detailed reason goes to the log only,
 * so nothing from the token is ever echoed to a client.
 */
export const InvalidTokenDescription = {
  malformed: 'The access token is malformed',
  tooLong: 'The access token is too long',
  expired: 'The access token expired',
  notYetValid: 'The access token is not yet valid',
  signature: 'The access token signature is invalid',
  issuer: 'The access token issuer is not accepted',
  audience: 'The access token audience is not accepted',
  type: 'The access token type is not accepted',
  algorithm: 'The access token algorithm is not accepted',
  claims: 'The access token claims are not accepted',
  revoked: 'The access token has been revoked',
  /** The identity provider's introspection endpoint calls the token inactive (unknown, revoked or expired there). */
  inactive: 'The access token is not active',
  /** A sender-constrained token presented without the certificate or key it is bound to. */
  unbound: 'The access token is bound to another client',
  tooOld: 'The access token is too old',
} as const;
export type InvalidTokenDescription = (typeof InvalidTokenDescription)[keyof typeof InvalidTokenDescription];

/** The client-facing descriptions of DPoP proof refusals; which check failed goes to the log only. */
export const DpopProofDescription = {
  missing: 'A DPoP proof is required',
  invalid: 'The DPoP proof is invalid',
  nonce: 'The DPoP proof must carry the current server nonce',
  /** The DPoP scheme with a token of an issuer that does not take it. */
  notAccepted: 'The DPoP scheme is not accepted for this token',
  /** A Bearer token of an issuer whose tokens must be DPoP-bound. */
  required: 'The access token must be DPoP-bound',
  /** The replay store could not be asked whether the proof is fresh. */
  unavailable: 'DPoP proofs cannot be checked right now',
} as const;

export const Errors = {
  badTarget: { status: 400, code: 'invalid_request', description: 'The request target is invalid' },
  badUpgrade: { status: 400, code: 'invalid_request', description: 'Only WebSocket handshakes can upgrade' },
  /** Node's HTTP parser refused the request (smuggling shapes, bad syntax). */
  malformedRequest: { status: 400, code: 'invalid_request', description: 'The request is malformed' },
  /** Headers past the listener's 32 KiB limit: refused by the parser before any request is seen. */
  headersTooLarge: { status: 431, code: 'request_header_fields_too_large', description: 'The request headers are too large' },
  /** The client did not send its request headers, or paused its request body, for longer than allowed. */
  requestTimeout: { status: 408, code: 'request_timeout', description: 'The request was not received in time' },
  /** An unsafe method riding on a session cookie without the gateway's own (or a CORS) origin. */
  csrf: { status: 403, code: 'csrf', description: 'The request does not come from an allowed origin' },
  notFound: { status: 404, code: 'not_found', description: 'No route matches this request' },
  misdirected: { status: 421, code: 'misdirected_request', description: 'This host is not served here' },
  methodNotAllowed: { status: 405, code: 'method_not_allowed', description: 'Method not allowed' },
  upgradeRefused: { status: 502, code: 'bad_gateway', description: 'The upstream refused the WebSocket upgrade' },
  badGateway: { status: 502, code: 'bad_gateway', description: 'The upstream could not be reached' },
  gatewayTimeout: { status: 504, code: 'gateway_timeout', description: 'The upstream did not answer in time' },
  /** Every connection the upstream may have (max_connections) stayed busy for queue_timeout. */
  upstreamBusy: { status: 503, code: 'service_unavailable', description: 'The upstream is busy', headers: { 'retry-after': '5' } },
  unavailable: { status: 503, code: 'service_unavailable', description: 'The gateway is not ready', headers: { 'retry-after': '5' } },
  /** A revocation (logout or admin API) was kept locally but could not be written to Redis. */
  storeUnavailable: {
    status: 503,
    code: 'service_unavailable',
    description: 'The shared store is unreachable; the revocation holds on this instance and is replicated when it is back',
    headers: { 'retry-after': '5' },
  },
  /** Started while Redis was down: revocations made before are unknown, so no token can be checked yet. */
  revocationsNotLoaded: {
    status: 503,
    code: 'service_unavailable',
    description: 'The gateway has not loaded revocations yet',
    headers: { 'retry-after': '5' },
  },
  /** A list value of the identity holds `identity.list_separator`: joined, it would read as more values upstream. */
  identityNotExpressible: { status: 403, code: 'forbidden', description: 'The identity cannot be passed to the upstream' },
  crossSiteLogout: { status: 403, code: 'forbidden', description: 'A cookie logout must come from the same origin' },
  forwardAuthForbidden: { status: 403, code: 'forbidden', description: 'Forward-auth requests are accepted only from trusted proxies' },
  corsRefused: { status: 403, code: 'cors_forbidden', description: 'This cross-origin request is not allowed' },
  internalError: { status: 500, code: 'server_error', description: 'The gateway failed to handle the request' },
  adminNotFound: { status: 404, code: 'not_found', description: 'No such admin endpoint' },
  /** The cluster primary's admin listener has no worker to relay a revocation request to. */
  noWorker: { status: 503, code: 'service_unavailable', description: 'No worker is up', headers: { 'retry-after': '5' } },
  workerUnreachable: { status: 502, code: 'bad_gateway', description: 'The worker did not answer' },
} as const satisfies Record<string, GatewayError>;

/** 405 naming, in `Allow`, the methods an endpoint takes. */
export function methodNotAllowed(methods: readonly string[]): GatewayError {
  return { ...Errors.methodNotAllowed, headers: { allow: methods.join(', ') } };
}

function errorBody(error: GatewayError, requestId: string): string {
  return JSON.stringify({ error: error.code, error_description: error.description, request_id: requestId });
}

/** On every response authgate makes itself: nothing of it may be cached, sniffed, framed or run as a page. */
export const SECURITY_HEADERS: Readonly<OutgoingHttpHeaders> = Object.freeze({
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
});

function jsonHeaders(text: string, extraHeaders: OutgoingHttpHeaders | undefined): OutgoingHttpHeaders {
  return {
    ...extraHeaders,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...SECURITY_HEADERS,
  };
}

/** Every JSON answer authgate makes itself (errors, readiness, the admin API) goes out through here. */
export function writeJson(res: ServerResponse, status: number, body: unknown, extraHeaders?: OutgoingHttpHeaders): void {
  writeJsonText(res, status, JSON.stringify(body), extraHeaders);
}

function writeJsonText(res: ServerResponse, status: number, text: string, extraHeaders: OutgoingHttpHeaders | undefined): void {
  res.writeHead(status, jsonHeaders(text, extraHeaders));
  res.end(text);
}

function errorHeaders(error: GatewayError, requestId: string): OutgoingHttpHeaders {
  return { ...error.headers, 'x-request-id': requestId };
}

export function sendError(res: ServerResponse, error: GatewayError, requestId: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  writeJsonText(res, error.status, errorBody(error, requestId), errorHeaders(error, requestId));
}

/** The same response written on a raw socket, for refused WebSocket upgrades (no `ServerResponse` there). */
export function sendErrorOnSocket(socket: Duplex, error: GatewayError, requestId: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = errorBody(error, requestId);
  const headers = jsonHeaders(body, errorHeaders(error, requestId));
  let head = `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ''}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    // Several challenges (Bearer and DPoP) go out as one line each, as writeHead sends them.
    for (const line of Array.isArray(value) ? value : [value]) if (line !== undefined) head += `${name}: ${String(line)}\r\n`;
  }
  socket.end(`${head}connection: close\r\n\r\n${body}`);
  lingerThenDestroy(socket);
}

/**
 * How long a socket answered with an error and half-closed may wait for the client's end. The HTTP server allows
 * half-open sockets and no longer times out one it handed over (an upgrade, a client error), so without this a
 * client that never closes would hold the socket, and a file descriptor, for good.
 */
const LINGER_MS = 2_000;

/** Reads and drops what the client still sends (so it sees the answer, not a reset), then closes for good. */
export function lingerThenDestroy(socket: Duplex): void {
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.resume();
}
