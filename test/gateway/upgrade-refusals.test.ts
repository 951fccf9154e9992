import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseRawResponse, rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml, startIdp, type Idp } from '../helpers/idp.js';
import { createLatch, startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { bearer, expectRefused, insufficientScope, upgrade, type Refusal } from './auth-fixture.js';

/**
 * WebSocket handshakes refused after the token was accepted, or while the gateway drains: these answers are
 * written on the raw socket (no ServerResponse once Node hands over an upgrade), so their status line, SPEC §7
 * body and extra headers (WWW-Authenticate, RateLimit-*, Retry-After) are checked here as a client reads them.
 */

const PER_USER_LIMIT = 2;

let idp: Idp;
/** Where the WebSocket routes go: it must never see a refused handshake. */
let upstream: RecordingUpstream;
/** Where /held goes: its answers wait for `heldAnswers`, keeping a request in flight as long as a test needs. */
let holding: RecordingUpstream;
let heldAnswers = createLatch();
let gw: TestGateway;

/**
 * `shutdownGrace`: 1s where a proxied WebSocket the test upstream keeps half-open would hold close() for the
 * grace; longer than the test where draining must end only when the held request does.
 */
function gatewayYaml(shutdownGrace: string): string {
  return `
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: ${shutdownGrace} }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: true }
issuers:
${issuerYaml(idp)}
upstreams:
  api: { url: ${upstream.url}, timeout: 2s }
  holding: { url: ${holding.url}, timeout: 30s }
rate_limits:
  per-user: { key: subject, limit: ${PER_USER_LIMIT}, window: 1m }
routes:
  - { name: ws-admin, match: { path: /ws/admin }, upstream: api, require: { roles: [admin] } }
  - { name: ws-limited, match: { path: /ws/limited }, upstream: api, rate_limit: [per-user] }
  - { name: ws-public, match: { path: /ws/public }, upstream: api, auth: none }
  - { name: held, match: { path: /held }, upstream: holding, auth: none }
`;
}

beforeAll(async () => {
  [idp, upstream, holding] = await Promise.all([
    startIdp({ keys: ['rsa'] }),
    startRecordingUpstream(),
    // Read per request, so a test can hold its requests with a latch of its own.
    startRecordingUpstream(() => ({ holdUntil: heldAnswers })),
  ]);
  gw = await startTestGateway(gatewayYaml('1s'));
});
afterAll(async () => {
  heldAnswers.release();
  await gw?.close();
  await Promise.all([upstream?.close(), holding?.close(), idp?.close()]);
});
beforeEach(() => {
  upstream.seen.length = 0;
  holding.seen.length = 0;
  heldAnswers.release();
  heldAnswers = createLatch();
});

const authorization = (token: string): Record<string, string> => ({ Authorization: bearer(token)[1] });

describe('a WebSocket handshake with a valid token', () => {
  it('lacking the role a route requires gets 403 insufficient_scope with WWW-Authenticate, and no upgrade', async () => {
    const token = idp.sign({ roles: ['user'] });
    const result = await upgrade(gw.port, '/ws/admin', authorization(token));
    expect(result.upgraded).toBe(false);
    if (!result.upgraded) await expectRefused(gw, upstream, result.response, insufficientScope('roles'), [token]);
    // The same handshake with the role goes through, so the refusal is the rule's doing.
    expect(await upgrade(gw.port, '/ws/admin', authorization(idp.sign({ roles: ['admin'] })))).toMatchObject({ upgraded: true });
  });

  it('past its per-user limit gets 429 with Retry-After and the RateLimit headers, and no upgrade', async () => {
    const token = idp.sign({ sub: 'chatty' });
    for (let i = 0; i < PER_USER_LIMIT; i++) {
      expect(await upgrade(gw.port, '/ws/limited', authorization(token))).toEqual({ upgraded: true, status: 101, echo: 'ping-bytes' });
    }
    expect(upstream.seen.map((seen) => seen.upgrade)).toEqual([true, true]);
    upstream.seen.length = 0;

    const result = await upgrade(gw.port, '/ws/limited', authorization(token));
    expect(result.upgraded).toBe(false);
    if (result.upgraded) return;
    const limited: Refusal = {
      status: 429,
      error: 'rate_limited',
      description: 'Too many requests',
      wwwAuthenticate: undefined,
      reason: 'rate_limit_per-user',
    };
    await expectRefused(gw, upstream, result.response, limited, [token]);
    const { headers } = result.response;
    expect({ limit: headers['ratelimit-limit'], remaining: headers['ratelimit-remaining'] }).toEqual({ limit: String(PER_USER_LIMIT), remaining: '0' });
    expect(Number(headers['ratelimit-reset'])).toBeGreaterThanOrEqual(1);
    expect(Number(headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });
});

/** Every byte the peer sends until it closes. */
async function bytesUntilClose(socket: Socket): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'close');
  return Buffer.concat(chunks).toString('utf8');
}

const HANDSHAKE_HEADERS = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';

function write(socket: Socket, text: string): Promise<void> {
  return new Promise((resolve, reject) => socket.write(text, (err) => (err ? reject(err) : resolve())));
}

describe('a WebSocket handshake while the gateway drains', () => {
  it('gets 503 with Retry-After and never reaches the upstream; the request in flight still completes', async () => {
    const draining = await startTestGateway(gatewayYaml('30s'));
    // The handshake is under way before shutdown begins (its first bytes are in), so the connection is not idle
    // and close() leaves it open; the rest of the handshake arrives while the gateway drains.
    const handshake = connect(draining.port, '127.0.0.1');
    await once(handshake, 'connect');
    const answer = bytesUntilClose(handshake).then(parseRawResponse);
    await write(handshake, `GET /ws/public HTTP/1.1\r\nHost: 127.0.0.1:${draining.port}\r\n`);
    // Sent after those first bytes, and seen by the upstream: the gateway has read both connections by now.
    const held = rawRequest(draining.port, { target: '/held' });
    await expect.poll(() => holding.seen.map((seen) => seen.url)).toEqual(['/held']);

    const closed = draining.close();
    await write(handshake, `${HANDSHAKE_HEADERS}\r\n`);
    const unavailable: Refusal = {
      status: 503,
      error: 'service_unavailable',
      description: 'The gateway is not ready',
      wwwAuthenticate: undefined,
      reason: 'draining',
    };
    const res = await answer;
    await expectRefused(draining, upstream, res, unavailable);
    expect(res.headers['retry-after']).toBe('5');

    heldAnswers.release();
    expect((await held).status).toBe(200);
    await closed;
  });
});

describe('a WebSocket handshake pipelined behind a request still in flight', () => {
  it.each([
    ['one that would be refused', '/ws/admin'],
    ['one that would pass', '/ws/public'],
  ])('(%s) is never answered ahead of that request: its response comes alone, then the connection closes', async (_name, path) => {
    const socket = connect(gw.port, '127.0.0.1');
    await once(socket, 'connect');
    const received = bytesUntilClose(socket);
    await write(socket, `GET /held HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\n\r\n`);
    await expect.poll(() => holding.seen.map((seen) => seen.url)).toEqual(['/held']);

    const linesBefore = gw.logs.length;
    await write(socket, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\n${HANDSHAKE_HEADERS}\r\n`);
    // The gateway has taken the handshake once it logged it; only then may the earlier response go out.
    const handshakeLine = (): Record<string, unknown> | undefined =>
      gw.logs
        .slice(linesBefore)
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => line.msg === 'request');
    await expect.poll(handshakeLine).toBeDefined();
    expect(handshakeLine()).toMatchObject({ decision: 'deny', reason: 'pipelined_upgrade' });
    heldAnswers.release();

    const text = await received;
    expect(text.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200']);
    expect(parseRawResponse(text).json()).toMatchObject({ url: '/held' });
    expect(upstream.seen).toEqual([]);
  });
});

describe('a client that never closes its side after an error answer', () => {
  /** Sends `bytes` on a socket that stays half-open after the gateway's FIN; resolves with what came and when it closed. */
  async function neverClosing(bytes: string): Promise<{ text: string; closedAfterEndMs: number }> {
    const socket: Socket = connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.write(bytes);
    socket.on('error', () => undefined);
    await once(socket, 'end');
    const ended = performance.now();
    // This side never closes. Once the gateway has closed the connection for good, a byte sent meets a reset;
    // while it holds the socket half-open, the byte is read and nothing happens.
    const probe = setInterval(() => socket.write('x'), 100);
    // Not events.once: the reset comes as an 'error' first, which would reject it.
    await new Promise((resolve) => socket.once('close', resolve));
    clearInterval(probe);
    return { text: Buffer.concat(chunks).toString('utf8'), closedAfterEndMs: performance.now() - ended };
  }

  it.each([
    ['a refused WebSocket handshake', 'GET /ws/admin HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', 401],
    ['a malformed request', 'GET /ws/public HTTP/1.1\r\nHost: gw\r\nBad Header: x\r\n\r\n', 400],
  ])('%s: the socket is closed by the gateway, not held until the client closes', async (_case, bytes, status) => {
    const { text, closedAfterEndMs } = await neverClosing(bytes);
    expect(parseRawResponse(text).status).toBe(status);
    expect(closedAfterEndMs).toBeLessThan(5_000);
    expect(upstream.seen).toEqual([]);
  }, 10_000);
});
