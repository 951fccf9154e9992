/**
 * The bench's introspection endpoint: every token is active for the bench audience for an hour, answered with one
 * canned JSON body. Shares a core with the load generator; with a warm gateway cache it is hardly ever asked.
 * Prints `{"port":N}` once listening; argv[2] is the issuer the answers name.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AUDIENCE } from '../lib/tokens.js';

const issuer = process.argv[2] ?? '';
const body = JSON.stringify({ active: true, iss: issuer, aud: AUDIENCE, sub: 'opaque-user', scope: 'read', exp: Math.floor(Date.now() / 1000) + 3600 });

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
