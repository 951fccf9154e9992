import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { connectionListed, HOP_BY_HOP } from '../http/hop-by-hop.js';
import type { Metrics } from '../observability/metrics.js';
import { watchBodyRate } from './body-rate.js';
import { classifyUpstreamError, type Abandoned, type ForwardFailure, type UpstreamFailure } from './failures.js';
import { forwardUpgrade, type UpgradeCallbacks, type UpgradeTarget } from './websocket.js';

/** The path an upstream URL puts before every forwarded path: `http://app/base/` forwards `/x` to `/base/x`. */
export function upstreamBasePath(url: URL): string {
  return url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
}

export type { Abandoned, ForwardFailure, UpstreamFailure };
/**
 * The request failed or was given up: the caller answers the client (502, 504, 503 for `queue_timeout`, 408 for a
 * stalled body) if the response head has not gone out yet, else cuts the connection.
 */
export type OnForwardFailure = (failure: ForwardFailure) => void;

/**
 * A request body is still arriving from the client: it was announced (Content-Length above 0, or chunked) and
 * its end has not been read yet.
 */
export function bodyPending(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * The connections of one upstream: an undici pool for HTTP requests and a node:http agent for WebSocket
 * handshakes. Shared by every Forwarder built from configs in which the upstream's settings are the
 * same, so a reload neither drops warm keep-alive connections nor cuts requests in flight on them.
 */
class UpstreamConnections {
  /** Forwarders still using these connections; the last one to close them closes the pool. */
  private users = 1;
  /** WebSocket handshakes and tunnels open to this upstream (the pool does not see them). */
  private tunnels = 0;
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
    this.basePath = upstreamBasePath(url);
    this.servername = https ? (config.tls?.serverName ?? url.hostname) : undefined;
    this.pool = new Pool(url.origin, {
      // Without max_connections unbounded: one connection per concurrent request, kept alive. With it, requests
      // beyond the limit wait in the pool's queue for a connection to come free.
      connections: config.maxConnections ?? null,
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
      idleTimeoutMs: config.websocketIdleTimeoutMs,
    };
  }

  adopt(): this {
    this.users += 1;
    return this;
  }

  /**
   * Counts a WebSocket handshake (and the tunnel it may become) against max_connections until `client` closes;
   * false when the upstream already has that many connections busy, with requests or as tunnels. Tunnels never
   * wait: a handshake has no body to queue, and its client can retry. (The pool, which cannot see tunnels, may still
   * open up to max_connections for requests beside them.)
   */
  takeTunnel(client: Duplex): boolean {
    // A client already gone never closes again: counted now, it would never be let go.
    if (client.destroyed) return true;
    const max = this.config.maxConnections;
    // Idle keep-alive connections do not count: the pool closes them after a while, and would reuse one anyway.
    const busy = this.pool.stats.connected - this.pool.stats.free;
    if (max !== undefined && this.tunnels + busy >= max) return false;
    this.tunnels += 1;
    client.once('close', () => (this.tunnels -= 1));
    return true;
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
 * node:http (proxy/websocket.ts). Request headers are replaced wholesale by the chain's sanitized set, so nothing the client sent
 * reaches the upstream unless the hygiene stage let it through.
 */
export class Forwarder {
  private readonly upstreams = new Map<string, Upstream>();

  /** `previous`: the forwarder of the config being replaced; upstreams with unchanged settings keep its pools. */
  constructor(upstreams: ReadonlyMap<string, UpstreamConfig>, private readonly metrics: Metrics, previous?: Forwarder) {
    // Every CA file is read before any pool is adopted, so an unreadable one leaves no pool counted twice.
    // Read once per config load: a reload re-reads the CA file, and a changed CA means a new pool.
    const cas = new Map([...upstreams].map(([name, config]) => [name, config.tls?.caFile ? readFileSync(config.tls.caFile) : undefined]));
    for (const [name, config] of upstreams) {
      const ca = cas.get(name);
      const settings = JSON.stringify([config.url.href, config.timeoutMs, config.maxConnections, config.websocketIdleTimeoutMs, config.tls?.serverName, ca?.toString('base64')]);
      const kept = previous?.upstreams.get(name)?.connections;
      const connections = kept?.settings === settings ? kept.adopt() : new UpstreamConnections(name, config, settings, ca);
      // The client timeouts and queue_timeout are read per request from this config, so they follow a reload
      // even where the pool is kept.
      this.upstreams.set(name, { connections, config });
    }
  }

  /**
   * Forward an HTTP request. `pathAndQuery` is the normalized target the policy checked; `headers` the complete
   * header set for the upstream. `onFailure` answers the client, or cuts the connection once the head is out.
   * `answerHeaders`: the gateway's own headers for the response (RateLimit-*), as lowercase name/value pairs; a
   * header of that name from the upstream takes precedence. Passing them here rather than with `res.setHeader`
   * keeps Node writing the relayed head straight from one array.
   */
  web(
    req: IncomingMessage,
    res: ServerResponse,
    upstreamName: string,
    pathAndQuery: string,
    headers: OutgoingHttpHeaders,
    requestId: string,
    onFailure: OnForwardFailure,
    answerHeaders?: readonly string[],
  ): void {
    const { connections: upstream, config } = this.upstream(upstreamName);
    // Node's server has already answered `Expect: 100-continue` to the client, and undici refuses the header.
    if (headers.expect !== undefined) delete headers.expect;
    // Node hands us the body de-chunked; undici frames a stream of unknown length as chunked for every method,
    // so a chunked GET/HEAD/DELETE/OPTIONS body reaches the upstream as that request's body and never as a
    // second request. A request without framing headers has no body at all.
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    const relay = new ResponseRelay(req, res, requestId, answerHeaders, config, this.metrics, onFailure);
    const options: DispatchOptionsWithServerName = {
      origin: upstream.origin,
      path: upstream.basePath + pathAndQuery,
      method: req.method as Dispatcher.HttpMethod,
      headers: headers as Record<string, string | string[]>,
      body: hasBody ? req : null,
      servername: upstream.servername,
    };
    // false: no connection is free (under max_connections the request waits in the pool's queue).
    const free = upstream.pool.dispatch(options, relay);
    if (!free && config.maxConnections !== undefined) relay.awaitConnection(config.queueTimeoutMs);
  }

  private upstream(name: string): Upstream {
    const upstream = this.upstreams.get(name);
    if (!upstream) throw new Error(`unknown upstream ${name}`);
    return upstream;
  }

  /** Forward a WebSocket handshake that passed the chain; `callbacks` learn whether it upgraded. */
  ws(socket: Duplex, head: Buffer, upstreamName: string, pathAndQuery: string, headers: OutgoingHttpHeaders, requestId: string, callbacks: UpgradeCallbacks): void {
    const upstream = this.upstream(upstreamName).connections;
    if (!upstream.takeTunnel(socket)) {
      this.metrics.upstreamErrors.inc({ upstream: upstreamName, kind: 'queue_timeout' });
      callbacks.failed('queue_timeout');
      return;
    }
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
    for (const upstream of this.upstreams.values()) upstream.connections.release();
  }

  /** At shutdown: every connection goes now. */
  destroy(): void {
    for (const upstream of this.upstreams.values()) upstream.connections.destroy();
  }
}

/** One upstream as this config has it: connections (possibly shared with other configs) and its own settings. */
interface Upstream {
  readonly connections: UpstreamConnections;
  readonly config: UpstreamConfig;
}

/** undici's Request reads `servername` from the dispatch options; its type declarations omit it. */
type DispatchOptionsWithServerName = Dispatcher.DispatchOptions & { servername: string | undefined };

/** Response headers that describe the upstream connection, not the message (RFC 9110 §7.6.1). */
/**
 * undici's handler for one request (its dispatcher-native callback interface, so no adapter object is made per
 * request): writes the upstream's status and headers to the client's response and streams the body with
 * backpressure, aborts the upstream request when the client goes away or stalls, and maps failures to SPEC §7
 * answers.
 *
 * A stalled client is found with the client socket's own idle timer (refreshed by Node on every read and write, so
 * it costs nothing per chunk): while the request body streams it runs for client_body_timeout, then for
 * client_read_timeout. When it fires, the relay looks at what it is waiting for: a body the upstream is
 * ready to take, or a write the client does not drain. Anything else (the upstream thinking, or taking the body
 * slowly) is the upstream's to time out, and the timer starts again.
 */
class ResponseRelay implements Dispatcher.DispatchHandler {
  private abort: ((err?: Error) => void) | undefined;
  private resume: (() => void) | undefined;
  /** The client connection closed, or the gateway answered or cut it: nothing more is relayed. */
  private done = false;
  /** Runs while the request waits in the pool's queue for a free connection. */
  private queueTimer: NodeJS.Timeout | undefined;
  /** Kept here: undici destroys the request stream once it has sent the body, and that unsets `req.socket`. */
  private readonly socket: Socket;
  private readonly stopBodyWatch: (() => void) | undefined;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly requestId: string,
    private readonly answerHeaders: readonly string[] | undefined,
    private readonly upstream: UpstreamConfig,
    private readonly metrics: Metrics,
    private readonly onFailure: OnForwardFailure,
  ) {
    // The client may have left while the chain was deciding: then there is nothing to forward for.
    this.done = res.destroyed;
    // A response closes once: `on` spares the wrapper `once` makes.
    res.on('close', () => {
      clearTimeout(this.queueTimer);
      this.stopBodyWatch?.();
      if (res.writableFinished) return;
      this.done = true;
      this.abort?.();
    });
    this.socket = req.socket;
    this.socket.setTimeout(this.clientTimeout());
    // Node emits the socket's timeout on the response it is writing; a listener keeps Node from destroying it.
    res.on('timeout', () => this.clientIdle());
    this.stopBodyWatch = bodyPending(req)
      ? watchBodyRate(req, this.socket, upstream.clientBodyTimeoutMs, () => this.giveUp('client_body_timeout'))
      : undefined;
  }

  /** No connection was free at dispatch: give up with a 503 unless one comes free within `ms`. */
  awaitConnection(ms: number): void {
    if (this.abort === undefined && !this.done) this.queueTimer = setTimeout(() => this.giveUp('queue_timeout'), ms);
  }

  onConnect(abort: (err?: Error) => void): void {
    clearTimeout(this.queueTimer);
    this.abort = abort;
    // Given up while queued: the request must not reach the upstream.
    if (this.done) abort();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // 1xx: Node's server sends its own 100 Continue; other interim responses are not relayed.
    if (statusCode < 200) return true;
    const headers: string[] = [];
    const connectionListed = connectionOptions(rawHeaders);
    const own = this.answerHeaders;
    let overridden: string[] | undefined;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = (rawHeaders[i] as Buffer).toString('latin1');
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) || connectionListed?.has(lower) || lower === 'x-request-id') continue;
      if (own !== undefined && hasName(own, lower)) (overridden ??= []).push(lower);
      headers.push(name, (rawHeaders[i + 1] as Buffer).toString('latin1'));
    }
    headers.push('x-request-id', this.requestId);
    for (let i = 0; own !== undefined && i < own.length; i += 2) {
      const name = own[i] as string;
      if (overridden === undefined || !overridden.includes(name)) headers.push(name, own[i + 1] as string);
    }
    try {
      // The upstream's reason phrase is not relayed: Node's own is always a valid one.
      this.res.writeHead(statusCode, headers);
    } catch {
      // A header value Node will not write (an invalid character): the response cannot be relayed as is.
      this.abort?.();
      this.res.destroy();
      return false;
    }
    const timeout = this.clientTimeout();
    if (this.socket.timeout !== timeout) this.socket.setTimeout(timeout);
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
    // The client went away or was given up on, and we aborted: nobody is left to answer, and it is no upstream
    // failure.
    if (this.done) return;
    this.done = true;
    const failure = classifyUpstreamError(err);
    this.metrics.upstreamErrors.inc({ upstream: this.upstream.name, kind: failure });
    // Before the response head the client gets a 502/504 it can read; after it, the connection is cut so a
    // truncated body cannot pass for a complete one.
    this.onFailure(failure);
  }

  /** The client socket saw no traffic for its timeout: give up if the client is the one holding things up. */
  private clientIdle(): void {
    const socket = this.socket;
    // Bytes still queued for the client after a whole timeout (Node's timer spares a write that is progressing).
    if (socket.writableLength > 0) this.giveUp('client_read_timeout');
    else if (this.req.readableFlowing === true && !this.req.complete) this.giveUp('client_body_timeout');
    else socket.setTimeout(this.clientTimeout());
  }

  /** While the body is still coming its timeout applies (to a response the client leaves unread meanwhile too). */
  private clientTimeout(): number {
    return bodyPending(this.req) ? this.upstream.clientBodyTimeoutMs : this.upstream.clientReadTimeoutMs;
  }

  /** The client is answered (or cut) first, then the upstream request aborted: its connection is freed at once. */
  private giveUp(reason: Abandoned): void {
    if (this.done) return;
    this.done = true;
    if (reason === 'queue_timeout') this.metrics.upstreamErrors.inc({ upstream: this.upstream.name, kind: reason });
    this.onFailure(reason);
    this.abort?.();
  }
}

/** Lower-case names a response's Connection header lists as hop-by-hop; undefined when it lists none. */
function connectionOptions(rawHeaders: Buffer[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as Buffer;
    if (name.length !== 10 || name.toString('latin1').toLowerCase() !== 'connection') continue;
    listed = connectionListed((rawHeaders[i + 1] as Buffer).toString('latin1'), lowerCase, listed);
  }
  return listed;
}

function lowerCase(name: string): string {
  return name.toLowerCase();
}

/** Whether the name/value `pairs` hold a header called `lower`. */
function hasName(pairs: readonly string[], lower: string): boolean {
  for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === lower) return true;
  return false;
}
