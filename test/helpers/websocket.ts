import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * WebSocket peers for tests, written on raw sockets (Node 20 has no stable WebSocket client): a client that
 * sends masked frames and reads what comes back frame by frame, and an upstream that completes handshakes,
 * echoes text messages and records every frame it receives. Nothing here comes from the code under test.
 */

export const OPCODE = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8 } as const;

export interface Frame {
  readonly fin: boolean;
  readonly opcode: number;
  readonly masked: boolean;
  /** Unmasked. */
  readonly payload: Buffer;
}

/** RFC 6455 §5.2 frames out of a byte stream that may split them anywhere. */
export class FrameReader {
  readonly frames: Frame[] = [];
  /** Every byte pushed so far. */
  bytes = 0;
  private pending = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.pending = Buffer.concat([this.pending, chunk]);
    for (let frame = this.take(); frame; frame = this.take()) this.frames.push(frame);
  }

  private take(): Frame | undefined {
    const data = this.pending;
    if (data.length < 2) return undefined;
    const length7 = (data[1] as number) & 0x7f;
    const masked = ((data[1] as number) & 0x80) !== 0;
    let offset = 2;
    let length = length7;
    if (length7 === 126) {
      if (data.length < 4) return undefined;
      length = data.readUInt16BE(2);
      offset = 4;
    } else if (length7 === 127) {
      if (data.length < 10) return undefined;
      length = Number(data.readBigUInt64BE(2));
      offset = 10;
    }
    const mask = masked ? data.subarray(offset, offset + 4) : undefined;
    if (masked) offset += 4;
    if (data.length < offset + length) return undefined;
    const payload = Buffer.from(data.subarray(offset, offset + length));
    if (mask) for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (mask[i % 4] as number);
    this.pending = data.subarray(offset + length);
    return { fin: ((data[0] as number) & 0x80) !== 0, opcode: (data[0] as number) & 0x0f, masked, payload };
  }
}

/** One frame; `masked` as a client sends them. */
export function encodeFrame(opcode: number, payload: Buffer | string, masked: boolean): Buffer {
  const data = Buffer.from(payload);
  const length =
    data.length < 126
      ? Buffer.from([data.length])
      : data.length < 0x10000
        ? Buffer.from([126, data.length >> 8, data.length & 0xff])
        : Buffer.concat([Buffer.from([127]), bigEndian64(data.length)]);
  length[0] = (length[0] as number) | (masked ? 0x80 : 0);
  const head = Buffer.concat([Buffer.from([0x80 | opcode]), length]);
  if (!masked) return Buffer.concat([head, data]);
  const mask = randomBytes(4);
  const body = Buffer.from(data);
  for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (mask[i % 4] as number);
  return Buffer.concat([head, mask, body]);
}

function bigEndian64(n: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(n));
  return out;
}

/** The status code and reason of a close frame. */
export function closeOf(frame: Frame | undefined): { opcode: number | undefined; status: number | undefined; reason: string } {
  return {
    opcode: frame?.opcode,
    status: frame && frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : undefined,
    reason: frame ? frame.payload.subarray(2).toString('utf8') : '',
  };
}

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

export interface TestWebSocket {
  readonly socket: Socket;
  /** The status of the handshake's answer. */
  readonly status: number;
  /** Frames received after the handshake. */
  readonly reader: FrameReader;
  /** Resolves when the connection has closed. */
  readonly closed: Promise<void>;
  send(text: string): void;
}

/** A WebSocket handshake on a fresh connection; resolves once the answer's head is in, whatever its status. */
export function openWebSocket(port: number, target: string, headers: Record<string, string> = {}): Promise<TestWebSocket> {
  const socket = connect(port, '127.0.0.1');
  const closed = once(socket, 'close').then(() => undefined);
  socket.on('error', () => socket.destroy());
  let head = '';
  socket.write(
    `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n` +
      Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('') +
      '\r\n',
  );
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.on('data', (more: Buffer) => reader.push(more));
      const rest = Buffer.from(head.slice(end + 4), 'latin1');
      if (rest.length > 0) reader.push(rest);
      const status = Number(head.split(' ')[1]);
      resolve({ socket, status, reader, closed, send: (text) => socket.write(encodeFrame(OPCODE.text, text, true)) });
    };
    socket.on('data', onData);
    void closed.then(() => reject(new Error(`connection closed during the handshake: ${JSON.stringify(head)}`)));
  });
}

export interface UpstreamWebSocket {
  readonly headers: IncomingHttpHeaders;
  readonly socket: Duplex;
  /** Frames the upstream received from the gateway. */
  readonly reader: FrameReader;
  closed: boolean;
}

export interface WebSocketUpstream {
  readonly url: string;
  /** Every WebSocket the upstream accepted, in order. */
  readonly connections: UpstreamWebSocket[];
  close(): Promise<void>;
}

/**
 * A WebSocket server on loopback: completes the handshake (RFC 6455 §4.2.2), answers each text frame with the
 * same text, and with `answerClose` answers a close frame as a server should (a close frame, then hang up).
 */
export async function startWebSocketUpstream(options: { answerClose: boolean }): Promise<WebSocketUpstream> {
  const connections: UpstreamWebSocket[] = [];
  const server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket: Duplex) => {
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    const connection: UpstreamWebSocket = { headers: req.headers, socket, reader: new FrameReader(), closed: false };
    connections.push(connection);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => (connection.closed = true));
    socket.on('data', (chunk: Buffer) => {
      const seen = connection.reader.frames.length;
      connection.reader.push(chunk);
      for (const frame of connection.reader.frames.slice(seen)) {
        if (frame.opcode === OPCODE.text) socket.write(encodeFrame(OPCODE.text, frame.payload, false));
        if (frame.opcode === OPCODE.close && options.answerClose) socket.end(encodeFrame(OPCODE.close, frame.payload, false));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const connection of connections) connection.socket.destroy();
        server.close(() => resolve());
      }),
  };
}
