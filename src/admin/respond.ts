import type { ServerResponse } from 'node:http';

/** A JSON answer from the admin listener, with the same cache and sniffing headers as the gateway's own. */
export function sendJson(res: ServerResponse, status: number, body: unknown, requestId?: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...(requestId !== undefined ? { 'x-request-id': requestId } : {}),
  });
  res.end(text);
}
