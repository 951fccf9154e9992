import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * A raw TCP upstream whose answer each test scripts byte for byte: the misbehaviour a real HTTP library would
 * refuse to produce (bad reason phrases, a refused upgrade carrying a smuggled response, a reset after 101).
 */
type Script = (socket: Socket, request: string) => void;
let script: Script = () => undefined;
const upstreamSockets = new Set<Socket>();
let upstream: Server;
let gw: TestGateway;

beforeAll(async () => {
  upstream = createServer((socket) => {
    upstreamSockets.add(socket);
    socket.on('close', () => upstreamSockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let seen = '';
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      if (seen.includes('\r\n\r\n')) script(socket, seen);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const { port } = upstream.address() as AddressInfo;
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
upstreams: { raw: { url: "http://127.0.0.1:${port}", timeout: 300ms } }
routes:
  - { name: raw, match: { path: /** }, upstream: raw, auth: none }
`);
});
afterAll(async () => {
  await gw?.close();
  for (const socket of upstreamSockets) socket.destroy();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
});
beforeEach(() => {
  script = () => undefined;
});

/** RFC 6455 §1.3's own example: the accept that answers the key every handshake here sends. */
const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
const SWITCHING = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n';

const HANDSHAKE = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

/** Writes `text` on a fresh connection and resolves with every byte the gateway sent until it closed. */
function exchange(text: string, afterHead?: (socket: Socket) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(gw.port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      if (afterHead && received.includes('\r\n\r\n')) {
        afterHead(socket);
        afterHead = undefined;
      }
    });
    socket.on('close', () => resolve(received));
    socket.on('error', reject);
    socket.write(text);
  });
}

describe('an upstream that misbehaves', () => {
  it('refusing a WebSocket upgrade with a body that holds a second response: the client gets one 502, nothing of it', async () => {
    const smuggled = '0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Injected: yes\r\n\r\nPWND';
    script = (socket) => {
      socket.end(
        'HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\nX-Internal: secret\r\n\r\n' +
          `${Buffer.byteLength(smuggled).toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`,
      );
    };
    const received = await exchange(HANDSHAKE('/ws'));
    expect(received.startsWith('HTTP/1.1 502 Bad Gateway\r\n')).toBe(true);
    expect(received.match(/HTTP\/1\.1/g)).toHaveLength(1);
    expect(received).not.toContain('X-Injected');
    expect(received).not.toContain('secret');
    expect(JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'bad_gateway' });
  });

  it('never answering a WebSocket handshake: 504 after the upstream timeout, and the upstream socket is closed', async () => {
    script = () => undefined;
    const received = await exchange(HANDSHAKE('/ws'));
    expect(received.startsWith('HTTP/1.1 504 Gateway Timeout\r\n')).toBe(true);
    await expect.poll(() => upstreamSockets.size).toBe(0);
  });

  it('resetting after the 101: the client connection ends, with no HTTP error written into the WebSocket stream', async () => {
    script = (socket) => {
      socket.write(`${SWITCHING}Sec-WebSocket-Accept: ${ACCEPT}\r\nKeep-Alive: timeout=5\r\n\r\n`);
      setImmediate(() => socket.destroy());
    };
    const received = await exchange(HANDSHAKE('/ws'));
    expect(received.startsWith('HTTP/1.1 101 Switching Protocols\r\n')).toBe(true);
    expect(received.match(/HTTP\/1\.1/g)).toHaveLength(1);
    expect(received.toLowerCase()).not.toContain('keep-alive');
  });

  it('gets the WebSocket path exactly as the policy checked it', async () => {
    let requestLine = '';
    script = (socket, request) => {
      requestLine = request.slice(0, request.indexOf('\r\n'));
      socket.end(`${SWITCHING}Sec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`);
    };
    await exchange(HANDSHAKE('/ws/http:/x/y?q=1'));
    expect(requestLine).toBe('GET /ws/http:/x/y?q=1 HTTP/1.1');
  });

  /** An HTTP request pipelined behind the handshake: through a tunnel it would reach the upstream as is, spoof and all. */
  const SMUGGLED = 'GET /admin HTTP/1.1\r\nHost: gw.test\r\nX-User-Id: admin\r\nContent-Length: 0\r\n\r\n';

  it.each([
    ['a wrong Sec-WebSocket-Accept', `${SWITCHING}Sec-WebSocket-Accept: ${ACCEPT.replace('s3p', 'x3p')}\r\n\r\n`],
    ['no Sec-WebSocket-Accept', `${SWITCHING}\r\n`],
    ['the right accept for another protocol', `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nSec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`],
  ])('answering 101 with %s: the client gets a 502, both sides close, and nothing the client sent after the handshake reaches the upstream', async (_, answer) => {
    let upstreamGot = '';
    script = (socket, request) => {
      // Something that is no WebSocket server: it says 101, then reads what follows as more HTTP.
      if (upstreamGot === '') socket.write(answer);
      else socket.end('HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nadmin ok');
      upstreamGot = request;
    };
    const received = await exchange(HANDSHAKE('/ws') + SMUGGLED);
    expect(received.startsWith('HTTP/1.1 502 Bad Gateway\r\n')).toBe(true);
    expect(received.match(/HTTP\/1\.1/g)).toHaveLength(1);
    expect(JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4))).toMatchObject({
      error: 'bad_gateway',
      error_description: 'The upstream refused the WebSocket upgrade',
    });
    await expect.poll(() => upstreamSockets.size).toBe(0);
    expect(upstreamGot.startsWith('GET /ws HTTP/1.1\r\n')).toBe(true);
    expect(upstreamGot).not.toContain('/admin');
  });

  it('answering 101 with the accept of the client\'s key: the client gets that 101, and the tunnel carries its bytes', async () => {
    let upstreamGot = '';
    script = (socket, request) => {
      if (upstreamGot === '') socket.write(`${SWITCHING}Sec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`);
      upstreamGot = request;
      if (request.endsWith('tunnelled')) socket.end('answered');
    };
    const received = await exchange(`${HANDSHAKE('/ws')}tunnelled`);
    expect(received.startsWith('HTTP/1.1 101 Switching Protocols\r\n')).toBe(true);
    expect(received).toContain(`Sec-WebSocket-Accept: ${ACCEPT}\r\n`);
    expect(received.endsWith('\r\n\r\nanswered')).toBe(true);
  });

  it('sending a reason phrase Node would not write: the response is relayed with Node’s own phrase', async () => {
    script = (socket) => socket.end('HTTP/1.1 200 O\x7fK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    const res = await rawRequest(gw.port, { target: '/plain' });
    expect(res.status).toBe(200);
    expect(res.body).toBe('ok');
  });
});
