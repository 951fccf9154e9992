/**
 * The demo's upstream: answers every request with JSON naming the method, the path and the headers it got,
 * so you can see exactly what authgate forwarded (identity headers in, client-sent ones gone).
 * A WebSocket upgrade is accepted and the same JSON is sent as one text message; a close frame is answered.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { closeServer } from '../lib/listen.js';
import { websocketAccept } from '../proxy/websocket.js';
import { boundUrl, demoAddress, listenForDemo } from './listen.js';

export interface EchoUpstream {
  readonly url: string;
  close(): Promise<void>;
}

export const ECHO_UPSTREAM_ENV = 'AUTHGATE_DEMO_UPSTREAM';

const OPCODE_CLOSE = 0x8;

function describe(req: IncomingMessage): string {
  return `${JSON.stringify({ method: req.method, path: req.url, headers: req.headers }, null, 2)}\n`;
}

/** One unmasked, final text frame (RFC 6455 §5.2); payloads here stay far below 2^63. */
function textFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const header =
    payload.length < 126
      ? Buffer.from([0x81, payload.length])
      : payload.length < 0x10000
        ? Buffer.from([0x81, 126, payload.length >> 8, payload.length & 0xff])
        : Buffer.concat([Buffer.from([0x81, 127]), bigEndian64(payload.length)]);
  return Buffer.concat([header, payload]);
}

function bigEndian64(n: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(n));
  return out;
}

function acceptUpgrade(req: IncomingMessage, socket: Duplex, open: Set<Duplex>): void {
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  open.add(socket);
  socket.on('close', () => open.delete(socket));
  socket.on('error', () => socket.destroy());
  // Upgraded HTTP sockets allow half-open; without this the connection would outlive a peer that left.
  socket.on('end', () => socket.end());
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${websocketAccept(key)}\r\n\r\n`);
  socket.write(textFrame(describe(req)));
  // The demo only greets; it reads just enough of the client's frames to answer a close.
  socket.on('data', (chunk: Buffer) => {
    if (((chunk[0] ?? 0) & 0x0f) === OPCODE_CLOSE) socket.end(Buffer.from([0x80 | OPCODE_CLOSE, 0]));
  });
}

export async function startEchoUpstream(requestedUrl: string): Promise<EchoUpstream> {
  const address = demoAddress(requestedUrl, ECHO_UPSTREAM_ENV);
  const upgraded = new Set<Duplex>();
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(describe(req));
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => acceptUpgrade(req, socket, upgraded));
  const port = await listenForDemo(server, address, 'echo upstream', ECHO_UPSTREAM_ENV);
  return {
    url: boundUrl(requestedUrl, address, port),
    close: async () => {
      for (const socket of upgraded) socket.destroy();
      await closeServer(server);
    },
  };
}
