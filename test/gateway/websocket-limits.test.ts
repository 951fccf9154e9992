import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { closeOf, encodeFrame, OPCODE, openWebSocket, startWebSocketUpstream, type TestWebSocket, type WebSocketUpstream } from '../helpers/websocket.js';

/**
 * What bounds a proxied WebSocket on a public route, where no credential ends it: the upstream's max_connections
 * counts tunnels too, and a tunnel that carries nothing for websocket_idle_timeout is closed on both sides.
 */
let upstream: WebSocketUpstream;
let gw: TestGateway;
const sockets: TestWebSocket[] = [];

beforeAll(async () => {
  upstream = await startWebSocketUpstream({ answerClose: true });
  gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
upstreams:
  capped: { url: ${upstream.url}, max_connections: 2 }
  idle: { url: ${upstream.url}, websocket_idle_timeout: 500ms }
routes:
  - { name: capped, match: { path: /capped/** }, upstream: capped, auth: none }
  - { name: idle, match: { path: /idle/** }, upstream: idle, auth: none }
`);
});

afterAll(async () => {
  for (const ws of sockets) ws.socket.destroy();
  await gw?.close();
  await upstream?.close();
});

async function open(target: string): Promise<TestWebSocket> {
  const ws = await openWebSocket(gw.port, target);
  sockets.push(ws);
  return ws;
}

describe('proxied WebSockets', () => {
  it('count against max_connections: past it a handshake gets 503 and never reaches the upstream; a closed one frees a place', async () => {
    const before = upstream.connections.length;
    const [first, second] = [await open('/capped/a'), await open('/capped/b')];
    expect([first.status, second.status]).toEqual([101, 101]);
    const third = await open('/capped/c');
    expect(third.status).toBe(503);
    await third.closed;
    expect(upstream.connections.length - before).toBe(2);
    // Closed as a client closes a WebSocket: a close frame, which the upstream answers before hanging up.
    first.socket.write(encodeFrame(OPCODE.close, Buffer.from([0x03, 0xe8]), true));
    await first.closed;
    await expect.poll(async () => {
      const again = await open('/capped/d');
      again.socket.destroy();
      return again.status;
    }).toBe(101);
  });

  it('idle past websocket_idle_timeout are closed with 1001 on both sides', async () => {
    const ws = await open('/idle/chat');
    expect(ws.status).toBe(101);
    const connection = upstream.connections.at(-1);
    await ws.closed;
    expect(ws.reader.frames.map((frame) => closeOf(frame))).toEqual([{ opcode: OPCODE.close, status: 1001, reason: 'idle' }]);
    await expect.poll(() => connection?.reader.frames.map((frame) => closeOf(frame).status)).toEqual([1001]);
  });
});
