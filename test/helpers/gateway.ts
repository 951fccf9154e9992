import { mkdtemp, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig, formatProblem } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';
import { startGateway, type RunningGateway } from '../../src/server/listener.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';

export interface TestGateway {
  readonly gateway: RunningGateway;
  readonly config: GatewayConfig;
  readonly url: string;
  readonly port: number;
  readonly adminUrl: string;
  readonly metrics: Metrics;
  /** Every log line the gateway wrote, as raw JSON text. */
  readonly logs: string[];
  readonly file: string;
  close(): Promise<void>;
}

/** Write `yaml` to a temp file, load it as `authgate start` would, and start a gateway on loopback. */
export async function startTestGateway(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<TestGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-test-'));
  const file = join(dir, 'gateway.yaml');
  await writeFile(file, yaml);
  const loaded = await loadConfig(file, { ...env });
  if (!loaded.config) throw new Error(`test config invalid:\n${loaded.problems.map(formatProblem).join('\n')}`);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(line);
      done();
    },
  });
  const metrics = new Metrics();
  const logger = createLogger('info', sink);
  const gateway = await startGateway(loaded.config, { logger, metrics });
  return {
    gateway,
    config: loaded.config,
    url: gateway.url,
    port: Number(new URL(gateway.url).port),
    adminUrl: gateway.adminUrl,
    metrics,
    logs,
    file,
    close: () => gateway.close(),
  };
}

export interface RawResponse {
  readonly status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: Record<string, string>;
  readonly body: string;
  json<T = Record<string, unknown>>(): T;
}

export interface RawRequest {
  readonly method?: string;
  /** Sent verbatim as the request target. */
  readonly target: string;
  /** Name/value pairs, sent verbatim and in order (duplicates allowed). Host defaults to the gateway's. */
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  readonly body?: string;
  /** Sent after the head exactly as given, with no Content-Length added (for chunked bodies). */
  readonly rawBody?: string;
}

/**
 * One HTTP/1.1 request over a fresh TCP connection, written byte for byte: no client library normalizes the
 * target or merges headers, so path tricks and duplicate headers reach the gateway exactly as an attacker sends them.
 */
export function rawRequest(port: number, request: RawRequest): Promise<RawResponse> {
  const headers = request.headers ?? [];
  let head = `${request.method ?? 'GET'} ${request.target} HTTP/1.1\r\n`;
  if (!headers.some(([name]) => name.toLowerCase() === 'host')) head += `Host: 127.0.0.1:${port}\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  if (request.body !== undefined) head += `Content-Length: ${Buffer.byteLength(request.body)}\r\n`;
  head += 'Connection: close\r\n\r\n';
  return rawExchange(port, head + (request.body ?? request.rawBody ?? ''));
}

/** `bytes` written as they are on a fresh connection (an HTTP/1.0 request, say); the response read to its close. */
export function rawExchange(port: number, bytes: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.write(bytes);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('end', () => resolve(parseRawResponse(Buffer.concat(chunks).toString('utf8'))));
  });
}

/** One HTTP/1.1 response exactly as it came off the wire (head, then a plain or chunked body). */
export function parseRawResponse(text: string): RawResponse {
  const split = text.indexOf('\r\n\r\n');
  const [statusLine = '', ...lines] = text.slice(0, split).split('\r\n');
  const parsed: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    parsed[name] = parsed[name] === undefined ? value : `${parsed[name]}, ${value}`;
  }
  let body = text.slice(split + 4);
  if (parsed['transfer-encoding'] === 'chunked') body = dechunk(body);
  return {
    status: Number(statusLine.split(' ')[1]),
    headers: parsed,
    body,
    json: <T>() => JSON.parse(body) as T,
  };
}

function dechunk(body: string): string {
  let out = '';
  let rest = body;
  for (;;) {
    const lineEnd = rest.indexOf('\r\n');
    const size = Number.parseInt(rest.slice(0, lineEnd), 16);
    if (!size) return out;
    out += rest.slice(lineEnd + 2, lineEnd + 2 + size);
    rest = rest.slice(lineEnd + 2 + size + 2);
  }
}
