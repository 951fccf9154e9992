import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Duplex } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import type { Metrics } from '../observability/metrics.js';
import { classifyUpstreamError, type UpstreamFailure } from './failures.js';
import { forwardUpgrade, type UpgradeCallbacks, type UpgradeTarget } from './websocket.js';

export type { UpstreamFailure };
/** The upstream failed before the response head: the caller answers the client (502, or 504 on `timeout`). */
export type OnUpstreamError = (failure: UpstreamFailure) => void;

/**
 * The connections of one upstream: an undici pool for HTTP requests and a node:http agent for WebSocket
 * handshakes. Shared by every Forwarder built from configs in which the upstream's settings are the
 * same, so a reload neither drops warm keep-alive connections nor cuts requests in flight on them.
 */
class UpstreamConnections {
  /** Forwarders still using these connections; the last one to close them closes the pool. */
  private users = 1;
  readonly pool: Pool;
  readonly origin: string;
  /** The URL's path prefix without a trailing slash ('' for none), put before every forwarded path. */
  readonly basePath: string;
  readonly upgradeTarget: UpgradeTarget;
  /**
   * TLS server name for the pool's connections. Set explicitly because undici would otherwise take it from the
   * request's Host header, which is the client's (it is forwarded unchanged) and not the upstream's name.
   */
  readonly servername: string | undefined;

  constructor(
    readonly name: string,
    readonly config: UpstreamConfig,
    readonly settings: string,
    ca: Buffer | undefined,
  ) {
    const url = config.url;
    const https = url.protocol === 'https:';
    this.origin = url.origin;
    this.basePath = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
    this.servername = https ? (config.tls?.serverName ?? url.hostname) : undefined;
    this.pool = new Pool(url.origin, {
      // Unbounded like the node:http agent it replaces: one connection per concurrent request, kept alive.
      connections: null,
      // One request at a time per connection: pipelining would let a slow or failed request hold up (or, for
      // non-idempotent ones, make ambiguous) the requests queued behind it.
      pipelining: 1,
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.timeoutMs,
      keepAliveTimeout: 30_000,
      connect: { timeout: config.timeoutMs, ca, servername: this.servername },
    });
    this.upgradeTarget = {
      https,
      hostname: url.hostname,
      port: Number(url.port || (https ? 443 : 80)),
      basePath: this.basePath,
      // Upgraded sockets leave the agent and are never reused, so there is nothing to keep alive.
      agent: https ? new HttpsAgent({ keepAlive: false }) : new HttpAgent({ keepAlive: false }),
      ca,
      servername: this.servername,
      timeoutMs: config.timeoutMs,
    };
  }

  adopt(): this {
    this.users += 1;
    return this;
  }

  /** Graceful: requests already dispatched finish (undici's close() waits for them); no new ones are accepted. */
  release(): void {
    this.users -= 1;
    if (this.users === 0) void this.pool.close();
  }

  /** Process shutdown: everything goes, in flight or not. */
  destroy(): void {
    void this.pool.destroy();
    this.upgradeTarget.agent.destroy();
  }
}

/**
 * Streams requests to upstreams: plain HTTP through undici's dispatcher API (the lowest-overhead one: no
 * intermediate streams, the response is written straight to the ServerResponse), WebSocket handshakes through
 * node:http (proxy/websocket.ts). Request headers are replaced wholesale by the pipeline's sanitized set, so nothing the client sent
 * reaches the upstream unless the hygiene stage let it through.
 */
export class Forwarder {
  private readonly upstreams = new Map<string, UpstreamConnections>();

  /** `previous`: the forwarder of the config being replaced; upstreams with unchanged settings keep its pools. */
  constructor(upstreams: ReadonlyMap<string, UpstreamConfig>, private readonly metrics: Metrics, previous?: Forwarder) {
    // Every CA file is read before any pool is adopted, so an unreadable one leaves no pool counted twice.
    // Read once per config load: a reload re-reads the CA file, and a changed CA means a new pool.
    const cas = new Map([...upstreams].map(([name, config]) => [name, config.tls?.caFile ? readFileSync(config.tls.caFile) : undefined]));
    for (const [name, config] of upstreams) {
      const ca = cas.get(name);
      const settings = JSON.stringify([config.url.href, config.timeoutMs, config.tls?.serverName, ca?.toString('base64')]);
      const kept = previous?.upstreams.get(name);
      this.upstreams.set(name, kept?.settings === settings ? kept.adopt() : new UpstreamConnections(name, config, settings, ca));
    }
  }

  /**
   * Forward an HTTP request. `pathAndQuery` is the normalized target the policy checked; `headers` the complete
   * header set for the upstream. `onError` answers the client when the upstream fails before responding.
   */
  web(
    req: IncomingMessage,
    res: ServerResponse,
    upstreamName: string,
    pathAndQuery: string,
    headers: OutgoingHttpHeaders,
    requestId: string,
    onError: OnUpstreamError,
  ): void {
    const upstream = this.upstreams.get(upstreamName);
    if (!upstream) throw new Error(`unknown upstream ${upstreamName}`);
    // Node's server has already answered `Expect: 100-continue` to the client, and undici refuses the header.
    if (headers.expect !== undefined) delete headers.expect;
    // Node hands us the body de-chunked; undici frames a stream of unknown length as chunked for every method,
    // so a chunked GET/HEAD/DELETE/OPTIONS body reaches the upstream as that request's body and never as a
    // second request. A request without framing headers has no body at all.
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    const relay = new ResponseRelay(res, requestId, upstream.name, this.metrics, onError);
    const options: DispatchOptionsWithServerName = {
      origin: upstream.origin,
      path: upstream.basePath + pathAndQuery,
      method: req.method as Dispatcher.HttpMethod,
      headers: headers as Record<string, string | string[]>,
      body: hasBody ? req : null,
      servername: upstream.servername,
    };
    upstream.pool.dispatch(options, relay);
  }

  /** Forward a WebSocket handshake that passed the pipeline; `callbacks` learn whether it upgraded. */
  ws(socket: Duplex, head: Buffer, upstreamName: string, pathAndQuery: string, headers: OutgoingHttpHeaders, requestId: string, callbacks: UpgradeCallbacks): void {
    const upstream = this.upstreams.get(upstreamName);
    if (!upstream) throw new Error(`unknown upstream ${upstreamName}`);
    forwardUpgrade(socket, head, upstream.upgradeTarget, pathAndQuery, headers, requestId, {
      upgraded: callbacks.upgraded,
      failed: (failure) => {
        if (failure !== 'client_closed') this.metrics.upstreamErrors.inc({ upstream: upstreamName, kind: failure });
        callbacks.failed(failure);
      },
    });
  }

  /** After a reload: pools no newer forwarder adopted close once their requests in flight have finished. */
  close(): void {
    for (const upstream of this.upstreams.values()) upstream.release();
  }

  /** At shutdown: every connection goes now. */
  destroy(): void {
    for (const upstream of this.upstreams.values()) upstream.destroy();
  }
}

/** undici's Request reads `servername` from the dispatch options; its type declarations omit it. */
type DispatchOptionsWithServerName = Dispatcher.DispatchOptions & { servername: string | undefined };

/** Response headers that describe the upstream connection, not the message (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

/**
 * undici's handler for one request (its dispatcher-native callback interface, so no adapter object is made per
 * request): writes the upstream's status and headers to the client's response and streams the body with
 * backpressure, aborts the upstream request when the client goes away, and maps failures to SPEC §7 answers.
 */
class ResponseRelay implements Dispatcher.DispatchHandler {
  private abort: ((err?: Error) => void) | undefined;
  private resume: (() => void) | undefined;
  /** The client connection closed before the response was complete. */
  private clientGone = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly requestId: string,
    private readonly upstream: string,
    private readonly metrics: Metrics,
    private readonly onUpstreamError: OnUpstreamError,
  ) {
    // The client may have left while the pipeline was deciding: then there is nothing to forward for.
    this.clientGone = res.destroyed;
    res.once('close', () => {
      if (res.writableFinished) return;
      this.clientGone = true;
      this.abort?.();
    });
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    if (this.clientGone) abort();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // 1xx: Node's server sends its own 100 Continue; other interim responses are not relayed.
    if (statusCode < 200) return true;
    const headers: string[] = [];
    const connectionListed = connectionOptions(rawHeaders);
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = (rawHeaders[i] as Buffer).toString('latin1');
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) || connectionListed?.has(lower) || lower === 'x-request-id') continue;
      headers.push(name, (rawHeaders[i + 1] as Buffer).toString('latin1'));
    }
    headers.push('x-request-id', this.requestId);
    try {
      // The upstream's reason phrase is not relayed: Node's own is always a valid one.
      this.res.writeHead(statusCode, headers);
    } catch {
      // A header value Node will not write (an invalid character): the response cannot be relayed as is.
      this.abort?.();
      this.res.destroy();
      return false;
    }
    this.resume = resume;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.res.write(chunk)) return true;
    // undici stops reading the upstream socket until resume(): the body never piles up in memory.
    this.res.once('drain', this.resume as () => void);
    return false;
  }

  onComplete(): void {
    this.res.end();
  }

  onError(err: Error & { code?: string }): void {
    // The client went away and we aborted: nobody is left to answer, and it is no upstream failure.
    if (this.clientGone) return;
    const failure = classifyUpstreamError(err);
    this.metrics.upstreamErrors.inc({ upstream: this.upstream, kind: failure });
    // Before the response head the client gets a 502/504 it can read; after it, the connection is cut so a
    // truncated body cannot pass for a complete one.
    this.onUpstreamError(failure);
  }
}

/** Lower-case names a response's Connection header lists as hop-by-hop; undefined when it lists none. */
function connectionOptions(rawHeaders: Buffer[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as Buffer;
    if (name.length !== 10 || name.toString('latin1').toLowerCase() !== 'connection') continue;
    for (const option of (rawHeaders[i + 1] as Buffer).toString('latin1').split(',')) {
      const trimmed = option.trim().toLowerCase();
      if (trimmed !== '' && trimmed !== 'keep-alive' && trimmed !== 'close') (listed ??= new Set()).add(trimmed);
    }
  }
  return listed;
}
