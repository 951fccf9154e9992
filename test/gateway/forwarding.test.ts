import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';
import { rawRequest, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { makeCertificate } from '../ops/certs.js';

/**
 * The undici forwarding path end to end: streaming both ways, response header hygiene, client aborts, upstream
 * TLS, and connection pools across config reloads.
 */

interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The upstream's own request stream closed before its response finished (the gateway gave up on it). */
  abandoned: boolean;
}

/** A node:http upstream whose test decides, per request, when and how to answer. */
interface ScriptedUpstream {
  readonly url: string;
  readonly exchanges: Exchange[];
  /** Remote ports of the gateway connections, per request: equal ports = a reused keep-alive connection. */
  readonly ports: number[];
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function scripted(server: Server, scheme: 'http' | 'https', address: string, answer: (exchange: Exchange) => void): ScriptedUpstream {
  const exchanges: Exchange[] = [];
  const ports: number[] = [];
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const exchange: Exchange = { req, res, abandoned: false };
    res.once('close', () => (exchange.abandoned = !res.writableFinished));
    exchanges.push(exchange);
    ports.push(req.socket.remotePort ?? 0);
    answer(exchange);
  });
  const upstream: ScriptedUpstream = {
    url: `${scheme}://${address}`,
    exchanges,
    ports,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  cleanups.push(() => upstream.close());
  return upstream;
}

async function startUpstream(answer: (exchange: Exchange) => void): Promise<ScriptedUpstream> {
  const server = createServer();
  return scripted(server, 'http', await listen(server), answer);
}

/** Answers 200 with the request body echoed, after reading all of it. */
function echo({ req, res }: Exchange): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(Buffer.concat(chunks)));
}

function yaml(upstreamUrl: string, options: { timeout?: string; tls?: string; accessLog?: boolean } = {}): string {
  return `
version: 1
server:
  listen: 127.0.0.1:0
  shutdown_grace: 1s
admin:
  listen: 127.0.0.1:0
logging: { level: info, access_log: ${options.accessLog ?? false} }
upstreams:
  api: { url: ${upstreamUrl}, timeout: ${options.timeout ?? '10s'}${options.tls ? `, tls: ${options.tls}` : ''} }
routes:
  - name: public
    match: { path: /** }
    upstream: api
    auth: none
`;
}

async function gateway(config: string): Promise<TestGateway> {
  const gw = await startTestGateway(config);
  cleanups.push(() => gw.close());
  return gw;
}

async function reload(gw: TestGateway, config: string): Promise<void> {
  await writeFile(gw.file, config);
  const loaded = await loadConfig(gw.file, {});
  await gw.gateway.reload(loaded.config as GatewayConfig);
}

/** A request through node:http whose response is handed over as soon as its head arrives. */
function openRequest(port: number, path: string, method = 'GET'): { request: ReturnType<typeof httpRequest>; response: Promise<IncomingMessage> } {
  const request = httpRequest({ host: '127.0.0.1', port, path, method, agent: false });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    request.on('response', resolve);
    request.on('error', reject);
  });
  return { request, response };
}

async function nextChunk(stream: IncomingMessage): Promise<string> {
  const [chunk] = (await once(stream, 'data')) as [Buffer];
  return chunk.toString('utf8');
}

async function readRest(stream: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += (chunk as Buffer).toString('utf8');
  return text;
}

describe('streaming', () => {
  it('relays the first part of a response before the upstream has written the rest', async () => {
    let finish: () => void = () => undefined;
    const upstream = await startUpstream(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part;');
      finish = () => res.end('second part');
    });
    const gw = await gateway(yaml(upstream.url));
    const { request, response } = openRequest(gw.port, '/download');
    request.end();
    const res = await response;
    // Had the gateway buffered the response, this chunk would only come after finish(), which waits for it.
    expect(await nextChunk(res)).toBe('first part;');
    finish();
    expect(await readRest(res)).toBe('second part');
  });

  it('relays the first part of a chunked request body before the client has sent the rest', async () => {
    let received = '';
    const upstream = await startUpstream((exchange) => {
      exchange.req.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
      exchange.req.on('end', () => exchange.res.writeHead(200).end(received));
    });
    const gw = await gateway(yaml(upstream.url));
    const { request, response } = openRequest(gw.port, '/upload', 'POST');
    request.write('first part;');
    // Had the gateway buffered the body, the upstream would see nothing before end(), which waits for this.
    await expect.poll(() => received).toBe('first part;');
    request.end('second part');
    const res = await response;
    expect(res.statusCode).toBe(200);
    expect(await readRest(res)).toBe('first part;second part');
  });
});

describe('response headers', () => {
  it('drops the upstream connection’s hop-by-hop headers, keeps the message’s, and sets the gateway’s request id', async () => {
    const upstream = await startUpstream(({ res }) => {
      res.writeHead(201, 'Made', [
        ['Connection', 'keep-alive, X-Hop'],
        ['Keep-Alive', 'timeout=5'],
        ['Proxy-Connection', 'keep-alive'],
        ['X-Hop', 'for the gateway only'],
        ['X-Request-Id', 'upstream-chosen-id'],
        ['Set-Cookie', 'a=1'],
        ['Set-Cookie', 'b=2'],
        ['X-Kept', 'yes'],
        ['Content-Length', '4'],
      ].flat());
      res.end('done');
    });
    const gw = await gateway(yaml(upstream.url));
    const res = await rawRequest(gw.port, { target: '/headers' });
    expect(res.status).toBe(201);
    expect(res.body).toBe('done');
    expect(res.headers['x-kept']).toBe('yes');
    expect(res.headers['set-cookie']).toBe('a=1, b=2');
    expect(res.headers['content-length']).toBe('4');
    expect(res.headers['keep-alive']).toBeUndefined();
    expect(res.headers['proxy-connection']).toBeUndefined();
    expect(res.headers['x-hop']).toBeUndefined();
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    // The client asked to close (rawRequest sends Connection: close); that is between it and the gateway.
    expect(res.headers.connection).toBe('close');
  });
});

describe('access log', () => {
  it('writes one JSON line per forwarded request in pino’s format, with the request’s fields', async () => {
    const upstream = await startUpstream(echo);
    const gw = await gateway(yaml(upstream.url, { accessLog: true }));
    const res = await rawRequest(gw.port, { target: '/a/./b//c?q="quoted"' });
    expect(res.status).toBe(200);
    await expect.poll(() => gw.logs.filter((line) => line.includes('"msg":"request"'))).toHaveLength(1);
    const line = JSON.parse(gw.logs.find((l) => l.includes('"msg":"request"')) as string) as Record<string, unknown>;
    expect(line).toEqual({
      level: 30,
      time: expect.any(Number),
      service: 'authgate',
      pid: process.pid,
      requestId: res.headers['x-request-id'],
      route: 'public',
      method: 'GET',
      path: '/a/b/c',
      status: 200,
      decision: 'allow',
      upstream: 'api',
      ms: expect.any(Number),
      msg: 'request',
    });
  });
});

describe('client aborts', () => {
  it('aborts the upstream request when the client goes away, and a late upstream answer harms nothing', async () => {
    const upstream = await startUpstream((exchange) => {
      // The second request (after the abort) is answered at once; the first one only once it was abandoned.
      if (exchange.req.url === '/after') echo(exchange);
    });
    const gw = await gateway(yaml(upstream.url));
    const request = httpRequest({ host: '127.0.0.1', port: gw.port, path: '/slow', agent: false });
    request.on('error', () => undefined); // the test itself destroys it
    request.end();
    await expect.poll(() => upstream.exchanges.length).toBe(1);
    request.destroy();
    const first = upstream.exchanges[0] as Exchange;
    await expect.poll(() => first.abandoned).toBe(true);
    first.res.writeHead(200).end('too late');

    const after = await rawRequest(gw.port, { target: '/after' });
    expect(after.status).toBe(200);
    expect(gw.logs.filter((line) => (JSON.parse(line) as { level: number }).level >= 50)).toEqual([]);
  });
});

describe('upstream TLS', () => {
  it.each([
    { caFile: true, status: 200 },
    { caFile: false, status: 502 },
  ])('with ca_file $caFile and server_name localhost, an IP upstream URL answers $status', async ({ caFile, status }) => {
    const certificate = await makeCertificate('localhost');
    const servernames: string[] = [];
    const server = createHttpsServer({
      cert: certificate.certPem,
      key: await readFile(certificate.keyFile),
      // Sees the client hello's SNI even when the gateway then refuses the certificate.
      SNICallback: (servername, done) => {
        servernames.push(servername);
        done(null, undefined);
      },
    });
    const upstream = scripted(server, 'https', await listen(server), echo);
    const tls = caFile ? `{ ca_file: ${certificate.certFile}, server_name: localhost }` : '{ server_name: localhost }';
    const gw = await gateway(yaml(upstream.url, { tls }));

    const res = await rawRequest(gw.port, { target: '/secure?x=1', headers: [['Host', 'client.example']] });
    expect(res.status).toBe(status);
    // SNI is the configured server name, never the client's Host (which the upstream still gets as Host).
    expect(servernames[0]).toBe('localhost');
    if (status === 200) {
      expect(upstream.exchanges[0]?.req.headers.host).toBe('client.example');
      expect(upstream.exchanges[0]?.req.url).toBe('/secure?x=1');
    } else {
      expect(upstream.exchanges).toHaveLength(0);
      const metrics = await gw.metrics.registry.getSingleMetricAsString('authgate_upstream_errors_total');
      expect(metrics).toContain('upstream="api",kind="tls"');
    }
  });
});

describe('config reload', () => {
  it.each([
    { change: 'unchanged upstream settings', timeout: '10s' },
    { change: 'a changed upstream timeout', timeout: '20s' },
  ])('a slow response spanning a reload with $change completes with 200 after the old config is retired', async ({ timeout }) => {
    const upstream = await startUpstream(({ res }) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('before the reload;');
    });
    const gw = await gateway(yaml(upstream.url));
    const { request, response } = openRequest(gw.port, '/download');
    request.end();
    const res = await response;
    expect(await nextChunk(res)).toBe('before the reload;');

    await reload(gw, yaml(upstream.url, { timeout }));
    // The old config's pools are closed once shutdown_grace (1 s) has passed; before this change they were
    // destroyed with the response still streaming.
    await expect.poll(() => gw.logs.some((line) => line.includes('previous configuration retired')), { timeout: 5_000 }).toBe(true);
    (upstream.exchanges[0] as Exchange).res.end('after the old config was retired');
    expect(await readRest(res)).toBe('after the old config was retired');
    expect(res.complete).toBe(true);
  });

  it.each([
    { change: 'unchanged upstream settings', timeout: '10s', sameConnection: true },
    { change: 'a changed upstream timeout', timeout: '20s', sameConnection: false },
  ])('after a reload with $change, the keep-alive connection is reused: $sameConnection', async ({ timeout, sameConnection }) => {
    const upstream = await startUpstream(echo);
    const gw = await gateway(yaml(upstream.url));
    expect((await rawRequest(gw.port, { target: '/before' })).status).toBe(200);
    await reload(gw, yaml(upstream.url, { timeout }));
    expect((await rawRequest(gw.port, { target: '/after' })).status).toBe(200);
    expect(upstream.ports).toHaveLength(2);
    expect(upstream.ports[1] === upstream.ports[0]).toBe(sameConnection);
  });
});
