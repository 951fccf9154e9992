/**
 * The bench upstream: answers every request with a small fixed body, as cheaply as Node can, so the numbers measure
 * the proxy in front of it. Prints `{"port":N}` once listening.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const BODY = Buffer.from('{"ok":true}\n');

const server = createServer((req, res) => {
  // Drain the (empty) request body so the connection can be reused.
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length });
  res.end(BODY);
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
