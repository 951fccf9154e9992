/**
 * The Node limit: a bare `http-proxy` forwarder with a keep-alive agent and no auth at all. Anything authgate does
 * per request is on top of this. Usage: bare-proxy.ts UPSTREAM_URL; prints `{"port":N}` once listening.
 */
import { Agent, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import httpProxy from 'http-proxy';

const upstream = process.argv[2];
if (!upstream) throw new Error('usage: bare-proxy.ts UPSTREAM_URL');

// Same agent sizing as authgate's forwarder, so the comparison is between the work per request and not pools.
const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });
const proxy = httpProxy.createProxyServer({ target: upstream, agent, xfwd: false });
proxy.on('error', (_error, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});

const server = createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
