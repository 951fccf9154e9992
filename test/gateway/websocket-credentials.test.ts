import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml, startIdp, type Idp } from '../helpers/idp.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import {
  closeOf,
  encodeFrame,
  OPCODE,
  openWebSocket,
  startWebSocketUpstream,
  type Frame,
  type TestWebSocket,
  type WebSocketUpstream,
} from '../helpers/websocket.js';

/**
 * A proxied WebSocket lives as long as the credential it was opened with: when the token expires or is revoked
 * (here, through the admin API, a logout, or on another instance sharing Redis), the gateway sends both sides a
 * close frame with status 1008, between frames, and relays nothing further.
 */

const ADMIN_TOKEN = 'websocket-credentials-admin-token-0123';
const POLICY_VIOLATION = 1008;
/** Generous against a loaded machine; the expiry timer itself is exact to the millisecond. */
const CLOSE_DEADLINE_MS = 3_000;

let idp: Idp;
let redis: RedisServer;
let upstream: WebSocketUpstream;
const gateways: TestGateway[] = [];
const sockets: TestWebSocket[] = [];

beforeAll(async () => {
  [idp, redis, upstream] = await Promise.all([startIdp({ keys: ['rsa'] }), startRedis(), startWebSocketUpstream({ answerClose: true })]);
});
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.socket.destroy();
  await Promise.all(gateways.splice(0).map((gateway) => gateway.close()));
  upstream.connections.length = 0;
});
afterAll(async () => {
  await Promise.all([idp?.close(), redis?.stop(), upstream?.close()]);
});

async function startGateway(options: { redisPrefix?: string; wsUpstream?: WebSocketUpstream } = {}): Promise<TestGateway> {
  const store = options.redisPrefix === undefined ? '' : `store: { redis: "${redis.url}", prefix: "${options.redisPrefix}" }`;
  const gateway = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 200ms }
admin: { listen: 127.0.0.1:0, token: ${ADMIN_TOKEN} }
${store}
logging: { level: info, access_log: true }
issuers:
${issuerYaml(idp, ['clock_skew: 0s'])}
upstreams:
  chat: { url: ${(options.wsUpstream ?? upstream).url}, timeout: 2s }
routes:
  - { name: chat, match: { path: /chat }, upstream: chat }
`);
  gateways.push(gateway);
  return gateway;
}

async function open(gateway: TestGateway, token: string): Promise<TestWebSocket> {
  const ws = await openWebSocket(gateway.port, '/chat', { Authorization: `Bearer ${token}` });
  sockets.push(ws);
  expect(ws.status).toBe(101);
  return ws;
}

/** A message goes to the upstream and its echo comes back: the WebSocket is open end to end. */
async function expectEcho(ws: TestWebSocket): Promise<void> {
  const text = `hello ${randomUUID()}`;
  const before = ws.reader.frames.length;
  ws.send(text);
  await expect.poll(() => ws.reader.frames.slice(before).map((frame) => frame.payload.toString())).toEqual([text]);
}

/** Waits for the frame at `index` of what `frames` collects. */
async function frameAt(frames: readonly Frame[], index: number, timeout = CLOSE_DEADLINE_MS): Promise<Frame> {
  await expect.poll(() => frames.length, { timeout, interval: 10 }).toBeGreaterThan(index);
  return frames[index] as Frame;
}

function adminRevoke(gateway: TestGateway, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${gateway.adminUrl}/revocations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

/**
 * The credential's end, as both sides see it: the client gets a 1008 close frame as its last frame and the
 * connection closes; the upstream gets the same status in a masked close frame (as from a client) and is hung up on.
 */
async function expectClosedForPolicy(ws: TestWebSocket, framesBefore: number, reason: string): Promise<void> {
  const close = await frameAt(ws.reader.frames, framesBefore);
  expect(closeOf(close)).toEqual({ opcode: OPCODE.close, status: POLICY_VIOLATION, reason });
  const connection = upstream.connections.at(-1);
  const upstreamFrames = (): readonly Frame[] => connection?.reader.frames ?? [];
  await expect.poll(() => upstreamFrames().map((frame) => frame.opcode)).toContain(OPCODE.close);
  const upstreamClose = upstreamFrames().find((frame) => frame.opcode === OPCODE.close);
  expect({ ...closeOf(upstreamClose), masked: upstreamClose?.masked }).toEqual({ opcode: OPCODE.close, status: POLICY_VIOLATION, reason, masked: true });
  await ws.closed;
  await expect.poll(() => connection?.closed).toBe(true);
  expect(ws.reader.frames.length).toBe(framesBefore + 1);
}

describe('a proxied WebSocket whose token', () => {
  it('expires is closed with 1008 at the expiry, not before', async () => {
    const gateway = await startGateway();
    const exp = Math.floor(Date.now() / 1000) + 2;
    const ws = await open(gateway, idp.sign({ exp }));
    await expectEcho(ws);

    await frameAt(ws.reader.frames, 1, exp * 1000 - Date.now() + CLOSE_DEADLINE_MS);
    const closedAt = Date.now();
    expect(closedAt).toBeGreaterThanOrEqual(exp * 1000);
    await expectClosedForPolicy(ws, 1, 'The access token expired');
    console.log(`closed ${closedAt - exp * 1000} ms after exp`);
  });

  it('is revoked by jti through the admin API is closed with 1008; another token\'s revocation leaves it open', async () => {
    const gateway = await startGateway();
    const jti = randomUUID();
    const exp = Math.floor(Date.now() / 1000) + 300;
    const ws = await open(gateway, idp.sign({ jti, exp }));
    await expectEcho(ws);

    expect((await adminRevoke(gateway, { jti: randomUUID(), exp })).status).toBe(201);
    await expectEcho(ws);

    expect((await adminRevoke(gateway, { jti, exp })).status).toBe(201);
    await expectClosedForPolicy(ws, 2, 'The access token has been revoked');
  });

  it('is logged out (a token without jti: its subject and iat are revoked) is closed with 1008', async () => {
    const gateway = await startGateway();
    const token = idp.sign({ sub: `user-${randomUUID()}`, jti: undefined });
    const ws = await open(gateway, token);
    await expectEcho(ws);

    const logout = await fetch(`${gateway.url}/_authgate/logout`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    expect(logout.status).toBe(204);
    await expectClosedForPolicy(ws, 1, 'The access token has been revoked');
  });

  it('is revoked on another instance sharing Redis is closed with 1008 within a second', async () => {
    const prefix = `wscred-${randomUUID()}:`;
    const [a, b] = [await startGateway({ redisPrefix: prefix }), await startGateway({ redisPrefix: prefix })];
    const subject = `user-${randomUUID()}`;
    const ws = await open(b, idp.sign({ sub: subject }));
    await expectEcho(ws);

    const started = Date.now();
    expect((await adminRevoke(a, { subject, issuer: 'idp' })).status).toBe(201);
    await frameAt(ws.reader.frames, 1, 1_000);
    console.log(`revocation on A closed the WebSocket on B after ${Date.now() - started} ms`);
    await expectClosedForPolicy(ws, 1, 'The access token has been revoked');
  });
});

describe('the close frame for an ended credential', () => {
  it('waits for the frames in progress in both directions, then replaces whatever follows them', async () => {
    // This upstream sends its frames in pieces at the test's word, and keeps quiet when it gets a close.
    const manual = await startWebSocketUpstream({ answerClose: false });
    try {
      const gateway = await startGateway({ wsUpstream: manual });
      const jti = randomUUID();
      const exp = Math.floor(Date.now() / 1000) + 300;
      const ws = await open(gateway, idp.sign({ jti, exp }));
      await expect.poll(() => manual.connections.length).toBe(1);
      const connection = manual.connections[0]!;

      const toClient = encodeFrame(OPCODE.binary, Buffer.alloc(300, 0x88), false);
      const toUpstream = encodeFrame(OPCODE.binary, Buffer.alloc(300, 0x88), true);
      // Both frames half sent, and seen half-way by their receivers, when the revocation lands.
      connection.socket.write(toClient.subarray(0, 150));
      ws.socket.write(toUpstream.subarray(0, 150));
      await expect.poll(() => [ws.reader.bytes, connection.reader.bytes]).toEqual([150, 150]);
      expect((await adminRevoke(gateway, { jti, exp })).status).toBe(201);

      // The rest of each frame, each followed by one that comes too late.
      ws.socket.write(Buffer.concat([toUpstream.subarray(150), encodeFrame(OPCODE.text, 'too late', true)]));
      connection.socket.write(Buffer.concat([toClient.subarray(150), encodeFrame(OPCODE.text, 'too late', false)]));

      const reason = 'The access token has been revoked';
      const expected = [
        { opcode: OPCODE.binary, payload: Buffer.alloc(300, 0x88).toString('hex') },
        { opcode: OPCODE.close, payload: Buffer.concat([Buffer.from([0x03, 0xf0]), Buffer.from(reason)]).toString('hex') },
      ];
      const seen = (frames: readonly Frame[]): unknown => frames.map((frame) => ({ opcode: frame.opcode, payload: frame.payload.toString('hex') }));
      await expect.poll(() => seen(ws.reader.frames)).toEqual(expected);
      await expect.poll(() => seen(connection.reader.frames)).toEqual(expected);
      await ws.closed;
      expect(seen(ws.reader.frames)).toEqual(expected);
      expect(seen(connection.reader.frames)).toEqual(expected);
    } finally {
      await manual.close();
    }
  });
});
