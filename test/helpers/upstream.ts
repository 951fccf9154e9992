import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** Name/value pairs exactly as received (duplicates and case kept). */
  readonly rawHeaders: readonly string[];
  readonly body: string;
  readonly upgrade: boolean;
}

export interface RecordingUpstream {
  readonly url: string;
  readonly port: number;
  readonly seen: SeenRequest[];
  close(): Promise<void>;
}

/** Holds responses back until the test calls `release()`: requests stay in flight exactly as long as a test needs. */
export interface Latch {
  readonly released: Promise<void>;
  release(): void;
}

export function createLatch(): Latch {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { released, release };
}

export interface UpstreamAnswer {
  readonly status?: number;
  readonly body?: string;
  /** Response headers besides Content-Type. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Answer only once this latch is released (the request is recorded at once). */
  readonly holdUntil?: Latch;
}

/**
 * A real upstream on loopback that records every request it receives and echoes it back as JSON.
 * WebSocket upgrades are accepted with a proper handshake and then echo raw bytes.
 */
export async function startRecordingUpstream(handler?: (req: SeenRequest) => UpstreamAnswer | undefined): Promise<RecordingUpstream> {
  const seen: SeenRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const record: SeenRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString('utf8'),
        upgrade: false,
      };
      seen.push(record);
      const custom = handler?.(record);
      const respond = (): void => {
        res.writeHead(custom?.status ?? 200, { 'content-type': 'application/json', ...custom?.headers });
        res.end(custom?.body ?? JSON.stringify({ method: record.method, url: record.url, headers: record.headers }));
      };
      if (custom?.holdUntil) void custom.holdUntil.released.then(respond);
      else respond();
    });
  });
  // Upgraded sockets leave the HTTP server's bookkeeping, so closeAllConnections() would not end them.
  const upgraded = new Set<import('node:stream').Duplex>();
  server.on('upgrade', (req, socket) => {
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: '',
      upgrade: true,
    });
    const key = String(req.headers['sec-websocket-key'] ?? '');
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    socket.on('data', (d: Buffer) => socket.write(d));
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        for (const socket of upgraded) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
