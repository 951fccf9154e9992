import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRawResponse, rawRequest, startTestGateway, type RawResponse, type TestGateway } from '../helpers/gateway.js';

/**
 * Clients that stall (a body that stops coming, a response never read, headers never finished) and clients the
 * gateway answers while their body is still coming: none may hold an upstream connection or a gateway connection
 * beyond its timeout. The upstream is a real server whose connections the tests count; the clients are raw sockets.
 */

const SECRET = 'slow-clients-test-secret-long-enough-0123456789';
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The gateway dropped this request's connection before the response was complete. */
  abandoned: boolean;
}

interface CountingUpstream {
  readonly url: string;
  readonly exchanges: Exchange[];
  /** Connections open to the upstream right now. */
  open(): number;
}

/** A node:http upstream that refuses connections past `maxConnections`, counts them, and lets each test answer. */
async function startUpstream(answer: (exchange: Exchange) => void, maxConnections?: number): Promise<CountingUpstream> {
  const exchanges: Exchange[] = [];
  const server = createServer((req, res) => {
    const exchange: Exchange = { req, res, abandoned: false };
    res.once('close', () => (exchange.abandoned = !res.writableFinished));
    exchanges.push(exchange);
    answer(exchange);
  });
  if (maxConnections !== undefined) server.maxConnections = maxConnections;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  let open = 0;
  server.on('connection', (socket: Socket) => {
    open += 1;
    socket.once('close', () => (open -= 1));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, exchanges, open: () => open };
}

/** Reads the whole request body, then answers 200 with the path. */
function readThenAnswer({ req, res }: Exchange): void {
  req.resume();
  req.once('end', () => res.end(`ok ${req.url}`));
}

async function gateway(upstreamUrl: string, upstreamSettings: string, serverSettings = ''): Promise<TestGateway> {
  const gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 2s${serverSettings} }
admin: { listen: 127.0.0.1:0 }
issuers:
  idp: { issuer: https://idp.test, secret: ${SECRET}, algorithms: [HS256], audiences: [api] }
upstreams:
  api: { url: "${upstreamUrl}", ${upstreamSettings} }
routes:
  - { name: private, match: { path: /private/** }, upstream: api }
  - { name: public, match: { path: /** }, upstream: api, auth: none }
`);
  cleanups.push(() => gw.close());
  return gw;
}

interface RawClient {
  readonly socket: Socket;
  /** Every byte the gateway sent so far. */
  received(): Buffer;
  /** Settles when the connection is closed (by either side, reset included). */
  readonly closed: Promise<void>;
}

/** A raw TCP client that writes `bytes` and then neither writes nor ends: the stalled client the gateway must drop. */
function openRaw(port: number, bytes: string, options: { read: boolean } = { read: true }): RawClient {
  const socket = connect(port, '127.0.0.1');
  if (!options.read) socket.pause();
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined); // a reset after the answer is one way for the gateway to close
  const closed = once(socket, 'close').then(() => undefined);
  socket.write(bytes);
  cleanups.push(async () => {
    socket.destroy();
  });
  return { socket, received: () => Buffer.concat(chunks), closed };
}

/** Fails the test when `promise` has not settled within `ms`: the bound on "promptly". */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function accessLines(gw: TestGateway): Array<Record<string, unknown>> {
  return gw.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === 'request');
}

function expectGatewayError(res: RawResponse, status: number, code: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toBe('application/json');
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.json()).toEqual({ error: code, error_description: expect.any(String), request_id: res.headers['x-request-id'] });
}

const postHead = (path: string, length: number): string =>
  `POST ${path} HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`;

describe('a client whose request body stalls', () => {
  it('ten stalled uploads pin no upstream connection past client_body_timeout: each gets 408, everyone else 200', async () => {
    const upstream = await startUpstream(readThenAnswer, 10);
    const gw = await gateway(upstream.url, 'max_connections: 10, client_body_timeout: 300ms');
    const stalled = Array.from({ length: 10 }, () => openRaw(gw.port, `${postHead('/upload', 1024 * 1024)}7 bytes`));
    // All ten reached the upstream and hold every connection it accepts.
    await expect.poll(() => upstream.exchanges.length).toBe(10);
    expect(upstream.open()).toBe(10);

    // While the ten are stalled, other clients wait for a connection and get their answers.
    const others = await Promise.all(Array.from({ length: 5 }, (_, i) => rawRequest(gw.port, { target: `/other/${i}` })));
    expect(others.map((res) => [res.status, res.body])).toEqual(Array.from({ length: 5 }, (_, i) => [200, `ok /other/${i}`]));

    for (const client of stalled) {
      await within(client.closed, 5_000, 'stalled upload closed');
      const res = parseRawResponse(client.received().toString('latin1'));
      expectGatewayError(res, 408, 'request_timeout');
      expect(res.headers.connection).toBe('close');
    }
    // Their upstream requests were aborted and their connections closed.
    const stalledExchanges = upstream.exchanges.slice(0, 10);
    expect(stalledExchanges.every((exchange) => exchange.abandoned && exchange.req.socket.destroyed)).toBe(true);
    const lines = accessLines(gw).filter((line) => line.path === '/upload');
    expect(lines.map((line) => [line.status, line.decision, line.reason])).toEqual(Array(10).fill([408, 'error', 'client_body_timeout']));
  });

  it('after the response head has gone out, a stalled body cuts the connection and the upstream request', async () => {
    const upstream = await startUpstream(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('early answer;');
    });
    const gw = await gateway(upstream.url, 'client_body_timeout: 300ms');
    const client = openRaw(gw.port, `${postHead('/stream', 1000)}first part`);
    await within(client.closed, 5_000, 'connection cut');
    const text = client.received().toString('latin1');
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text).toContain('early answer;');
    // The chunked body never got its last chunk: a truncated response cannot pass for a complete one.
    expect(text.endsWith('0\r\n\r\n')).toBe(false);
    await expect.poll(() => upstream.exchanges[0]?.abandoned).toBe(true);
    await expect.poll(() => accessLines(gw).map((line) => [line.status, line.decision, line.reason])).toEqual([[200, 'error', 'client_body_timeout']]);
  });
});

describe('a client that trickles its request body, never pausing long', () => {
  /** Sends `bytesPerTick` every 100 ms on `client`, `total` bytes in all, or until it closes. */
  function trickle(client: RawClient, bytesPerTick: number, total: number): void {
    let sent = 0;
    const ticker = setInterval(() => {
      client.socket.write('x'.repeat(bytesPerTick));
      sent += bytesPerTick;
      if (sent >= total) clearInterval(ticker);
    }, 100);
    void client.closed.then(() => clearInterval(ticker));
    cleanups.push(async () => clearInterval(ticker));
  }

  it('below 240 bytes a second over a client_body_timeout window: 408, and its upstream connection is freed', async () => {
    const upstream = await startUpstream(readThenAnswer);
    const gw = await gateway(upstream.url, 'client_body_timeout: 500ms');
    const client = openRaw(gw.port, postHead('/upload', 1024 * 1024));
    trickle(client, 1, 1024 * 1024);
    await within(client.closed, 5_000, 'trickled upload closed');
    expectGatewayError(parseRawResponse(client.received().toString('latin1')), 408, 'request_timeout');
    await expect.poll(() => upstream.exchanges[0]?.abandoned).toBe(true);
    expect(accessLines(gw).map((line) => [line.status, line.reason])).toEqual([[408, 'client_body_timeout']]);
  });

  it('a slow body above that floor streams to the end and is answered', async () => {
    const upstream = await startUpstream(readThenAnswer);
    const gw = await gateway(upstream.url, 'client_body_timeout: 500ms');
    const client = openRaw(gw.port, postHead('/upload', 2000));
    trickle(client, 100, 2000);
    await expect.poll(() => client.received().toString('latin1'), { timeout: 10_000 }).toContain('ok /upload');
    const res = parseRawResponse(client.received().toString('latin1'));
    expect([res.status, res.body]).toEqual([200, 'ok /upload']);
  });
});

describe('a client that does not read its response', () => {
  it('after client_read_timeout the upstream request is aborted and the client cut; others get 200 meanwhile', async () => {
    const size = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const upstream = await startUpstream(({ req, res }) => {
      if (req.url !== '/big') {
        res.end('small');
        return;
      }
      res.writeHead(200, { 'content-length': String(size) });
      let sent = 0;
      const pump = (): void => {
        while (sent < size && !res.destroyed) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const gw = await gateway(upstream.url, 'client_read_timeout: 300ms');
    const reader = openRaw(gw.port, 'GET /big HTTP/1.1\r\nHost: gw.test\r\n\r\n', { read: false });
    await expect.poll(() => upstream.exchanges.length).toBe(1);

    const other = await rawRequest(gw.port, { target: '/small' });
    expect([other.status, other.body]).toEqual([200, 'small']);

    await expect.poll(() => upstream.exchanges[0]?.abandoned, { timeout: 5_000 }).toBe(true);
    await expect.poll(() => accessLines(gw).find((line) => line.path === '/big')?.reason).toBe('client_read_timeout');
    reader.socket.resume();
    await within(reader.closed, 5_000, 'non-reader cut');
    expect(reader.received().length).toBeLessThan(size);
  });
});

describe('max_connections', () => {
  it('a request that finds no free connection within queue_timeout gets 503 and never reaches the upstream', async () => {
    let releaseFirst: () => void = () => undefined;
    const upstream = await startUpstream(({ req, res }) => {
      if (req.url === '/first') releaseFirst = () => res.end('first');
      else res.end(`ok ${req.url}`);
    });
    const gw = await gateway(upstream.url, 'max_connections: 1, queue_timeout: 300ms');
    const first = rawRequest(gw.port, { target: '/first' });
    await expect.poll(() => upstream.exchanges.length).toBe(1);

    const queued = await rawRequest(gw.port, { target: '/queued' });
    expectGatewayError(queued, 503, 'service_unavailable');
    expect(queued.headers['retry-after']).toBe('5');

    releaseFirst();
    expect((await first).status).toBe(200);
    expect((await rawRequest(gw.port, { target: '/third' })).status).toBe(200);
    expect(upstream.exchanges.map((exchange) => exchange.req.url)).toEqual(['/first', '/third']);
    const queuedLine = accessLines(gw).find((line) => line.path === '/queued');
    expect([queuedLine?.status, queuedLine?.decision, queuedLine?.reason]).toEqual([503, 'error', 'queue_timeout']);
    expect(await gw.metrics.registry.getSingleMetricAsString('authgate_upstream_errors_total')).toContain('upstream="api",kind="queue_timeout"} 1');
  });
});

describe('a refused request with a body still coming', () => {
  it('gets its 401 with Connection: close and the connection closes, though the client keeps the body open', async () => {
    const upstream = await startUpstream(readThenAnswer);
    const gw = await gateway(upstream.url, 'client_body_timeout: 30s');
    const client = openRaw(gw.port, `${postHead('/private/data', 100_000)}the first bytes of a long body`);
    await within(client.closed, 3_000, 'refused connection closed');
    const res = parseRawResponse(client.received().toString('latin1'));
    expectGatewayError(res, 401, 'unauthorized');
    expect(res.headers.connection).toBe('close');
    expect(upstream.exchanges).toEqual([]);
    expect(accessLines(gw).map((line) => [line.status, line.decision, line.reason])).toEqual([[401, 'deny', 'no_token']]);
  });

  it('a refused request without a body keeps its connection for the next request', async () => {
    const upstream = await startUpstream(readThenAnswer);
    const gw = await gateway(upstream.url, 'timeout: 5s');
    const client = openRaw(gw.port, 'GET /private/a HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    await expect.poll(() => client.received().toString('latin1')).toContain('"request_id"');
    expect(parseRawResponse(client.received().toString('latin1')).headers.connection).toBe('keep-alive');
    client.socket.write('GET /public HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
    await within(client.closed, 3_000, 'second request answered');
    expect(client.received().toString('latin1')).toContain('ok /public');
  });
});

describe('shutdown', () => {
  it('responses in flight when draining starts say Connection: close, proxied ones and the gateway’s own', async () => {
    let release: () => void = () => undefined;
    const upstream = await startUpstream(({ req, res }) => {
      // /hold is answered when the test says; /never not at all (the gateway answers 504 after its timeout).
      if (req.url === '/hold') release = () => res.end('held');
    });
    const gw = await startTestGateway(`
version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 5s }
admin: { listen: 127.0.0.1:0 }
upstreams:
  api: { url: "${upstream.url}" }
  slow: { url: "${upstream.url}", timeout: 1s }
routes:
  - { name: never, match: { path: /never }, upstream: slow, auth: none }
  - { name: hold, match: { path: /hold }, upstream: api, auth: none }
`);
    cleanups.push(() => gw.close());
    // Keep-alive requests (no Connection: close from the client).
    const proxied = openRaw(gw.port, 'GET /hold HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    const refused = openRaw(gw.port, 'GET /never HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    await expect.poll(() => upstream.exchanges.length).toBe(2);
    const closing = gw.gateway.close();
    release();
    await within(Promise.all([proxied.closed, refused.closed]), 4_000, 'responses in flight and their connections');
    const answers = [proxied, refused].map((client) => parseRawResponse(client.received().toString('latin1')));
    expect(answers.map((res) => [res.status, res.headers.connection])).toEqual([
      [200, 'close'],
      [504, 'close'],
    ]);
    await closing;
  });
});

describe('request headers that never finish', () => {
  it('get 408 after server.header_timeout, logged with the peer and without any header', async () => {
    const upstream = await startUpstream(readThenAnswer);
    const gw = await gateway(upstream.url, 'timeout: 5s', ', header_timeout: 300ms');
    const client = openRaw(gw.port, 'GET /public HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer half-sent-secret');
    await within(client.closed, 3_000, 'half-sent headers answered');
    const res = parseRawResponse(client.received().toString('latin1'));
    expectGatewayError(res, 408, 'request_timeout');
    expect(upstream.exchanges).toEqual([]);
    const warn = gw.logs.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === 'request headers not received in time');
    expect(warn).toMatchObject({ level: 40, peer: '127.0.0.1', requestId: res.headers['x-request-id'], status: 408 });
    expect(gw.logs.join('\n')).not.toContain('half-sent-secret');
  });

  it('a connection that sends nothing is closed after header_timeout without an answer', async () => {
    const upstream = await startUpstream(readThenAnswer);
    const gw = await gateway(upstream.url, 'timeout: 5s', ', header_timeout: 300ms');
    const client = openRaw(gw.port, '');
    await within(client.closed, 3_000, 'idle connection closed');
    expect(client.received().length).toBe(0);
  });
});

describe('access log', () => {
  it('a request whose chunked body the parser refused midway is logged as a 400 error, not a 200 allow', async () => {
    const upstream = await startUpstream(readThenAnswer);
    const gw = await gateway(upstream.url, 'timeout: 5s');
    const client = openRaw(gw.port, 'POST /chunks HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    await expect.poll(() => upstream.exchanges.length).toBe(1);
    client.socket.write('zz\r\n');
    await within(client.closed, 3_000, 'connection of the malformed body closed');
    await expect.poll(() => accessLines(gw).map((line) => [line.path, line.status, line.decision, line.reason])).toEqual([
      ['/chunks', 400, 'error', 'malformed_body'],
    ]);
    expect(await gw.metrics.registry.getSingleMetricAsString('authgate_requests_total')).toContain('route="public",method="POST",status="400"} 1');
    await expect.poll(() => upstream.exchanges[0]?.abandoned).toBe(true);
  });

  it('a client that leaves before any answer is logged as 499, not the 200 no one sent', async () => {
    const upstream = await startUpstream(() => undefined); // never answers
    const gw = await gateway(upstream.url, 'timeout: 5s');
    const client = openRaw(gw.port, 'GET /gone HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    await expect.poll(() => upstream.exchanges.length).toBe(1);
    client.socket.destroy();
    await expect.poll(() => accessLines(gw).map((line) => [line.path, line.status, line.decision])).toEqual([['/gone', 499, 'allow']]);
    await expect.poll(() => upstream.exchanges[0]?.abandoned).toBe(true);
  });
});
