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

const REALM = 'Bearer realm="authgate"';

export const Errors = {
  badTarget: { status: 400, code: 'invalid_request', description: 'The request target is invalid' },
  badUpgrade: { status: 400, code: 'invalid_request', description: 'Only WebSocket handshakes can upgrade' },
  /** Node's HTTP parser refused the request (smuggling shapes, bad syntax). */
  malformedRequest: { status: 400, code: 'invalid_request', description: 'The request is malformed' },
  /** Headers past the listener's 32 KiB limit: refused by the parser before any request is seen. */
  headersTooLarge: { status: 431, code: 'request_header_fields_too_large', description: 'The request headers are too large' },
  notFound: { status: 404, code: 'not_found', description: 'No route matches this request' },
  misdirected: { status: 421, code: 'misdirected_request', description: 'This host is not served here' },
  methodNotAllowed: { status: 405, code: 'method_not_allowed', description: 'Method not allowed' },
  badGateway: { status: 502, code: 'bad_gateway', description: 'The upstream could not be reached' },
  gatewayTimeout: { status: 504, code: 'gateway_timeout', description: 'The upstream did not answer in time' },
  unavailable: { status: 503, code: 'service_unavailable', description: 'The gateway is not ready', headers: { 'retry-after': '5' } },
} as const satisfies Record<string, GatewayError>;

/** 401 without an error code: the client sent no credentials (RFC 6750 §3.1). */
export const missingToken: GatewayError = {
  status: 401,
  code: 'unauthorized',
  description: 'An access token is required',
  headers: { 'www-authenticate': REALM },
};

export function invalidToken(description: string): GatewayError {
  return {
    status: 401,
    code: 'invalid_token',
    description,
    headers: { 'www-authenticate': `${REALM}, error="invalid_token", error_description="${description}"` },
  };
}

export function invalidRequest(description: string): GatewayError {
  return {
    status: 400,
    code: 'invalid_request',
    description,
    headers: { 'www-authenticate': `${REALM}, error="invalid_request", error_description="${description}"` },
  };
}

export function insufficientScope(requiredScopes: readonly string[] | undefined): GatewayError {
  const description = 'The access token does not grant access to this resource';
  const scope = requiredScopes && requiredScopes.length > 0 ? `, scope="${requiredScopes.join(' ')}"` : '';
  return {
    status: 403,
    code: 'insufficient_scope',
    description,
    headers: { 'www-authenticate': `${REALM}, error="insufficient_scope", error_description="${description}"${scope}` },
  };
}

export function keysUnavailable(description: string): GatewayError {
  return { status: 503, code: 'service_unavailable', description, headers: { 'retry-after': '5' } };
}

export function errorBody(error: GatewayError, requestId: string): string {
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

function errorHeaders(error: GatewayError, body: string, requestId: string): OutgoingHttpHeaders {
  return {
    ...error.headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...SECURITY_HEADERS,
    'x-request-id': requestId,
  };
}

export function sendError(res: ServerResponse, error: GatewayError, requestId: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(error, requestId);
  res.writeHead(error.status, errorHeaders(error, body, requestId));
  res.end(body);
}

/** The same response written on a raw socket, for refused WebSocket upgrades (no `ServerResponse` there). */
export function sendErrorOnSocket(socket: Duplex, error: GatewayError, requestId: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = errorBody(error, requestId);
  const headers = errorHeaders(error, body, requestId);
  let head = `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ''}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) head += `${name}: ${String(value)}\r\n`;
  }
  socket.end(`${head}connection: close\r\n\r\n${body}`);
}
