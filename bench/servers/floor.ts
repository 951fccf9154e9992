/**
 * The Node floor: node:http in front, an undici Pool behind, no auth, no logging, no header work beyond dropping
 * hop-by-hop names. What any Node gateway costs before it does anything of its own; authgate's extra work per
 * request is measured against it. Usage: floor.ts UPSTREAM_URL [PORT]; prints `{"port":N}` once listening.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool, type Dispatcher } from 'undici';

const upstream = process.argv[2];
if (!upstream) throw new Error('usage: floor.ts UPSTREAM_URL');
const pool = new Pool(upstream, { connections: null, pipelining: 1, keepAliveTimeout: 30_000 });

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection']);

class Relay implements Dispatcher.DispatchHandler {
  private resume: (() => void) | undefined;
  constructor(private readonly res: ServerResponse) {}
  onConnect(): void {}
  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    const headers: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as Buffer).toString('latin1');
      if (!HOP_BY_HOP.has(name.toLowerCase())) headers.push(name, (raw[i + 1] as Buffer).toString('latin1'));
    }
    this.res.writeHead(status, headers);
    this.resume = resume;
    return true;
  }
  onData(chunk: Buffer): boolean {
    if (this.res.write(chunk)) return true;
    this.res.once('drain', this.resume as () => void);
    return false;
  }
  onComplete(): void {
    this.res.end();
  }
  onError(): void {
    if (!this.res.headersSent) this.res.writeHead(502);
    this.res.end();
  }
}

function forward(req: IncomingMessage, res: ServerResponse): void {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  const headers: Record<string, string | string[]> = {};
  for (const name in req.headers) if (!HOP_BY_HOP.has(name)) headers[name] = req.headers[name] as string | string[];
  pool.dispatch({ path: req.url ?? '/', method: req.method as Dispatcher.HttpMethod, headers, body: hasBody ? req : null }, new Relay(res));
}

const server = createServer(forward);
server.keepAliveTimeout = 65_000;
server.listen(Number(process.argv[3] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
