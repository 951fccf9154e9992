import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { UpstreamConfig } from '../config/types.js';
import { Errors, type GatewayError } from '../gateway/errors.js';
import type { Metrics } from '../observability/metrics.js';

export type UpstreamFailure = 'refused' | 'timeout' | 'reset' | 'tls' | 'other';

interface UpstreamTarget {
  readonly config: UpstreamConfig;
  readonly target: { protocol: string; host: string; port: string; path: string };
  readonly agent: HttpAgent;
}

/** What the forwarder needs to know about one request; set by the pipeline, read by the proxy events. */
interface ForwardState {
  upstream: UpstreamTarget;
  timedOut: boolean;
  requestId: string;
  onError: (error: GatewayError, failure: UpstreamFailure) => void;
}
const kForward = Symbol('authgate.forward');
type ForwardedRequest = IncomingMessage & { [kForward]?: ForwardState };

/**
 * Streams requests to upstreams with http-proxy over one keep-alive agent per upstream. Request headers are
 * replaced wholesale by the pipeline's sanitized set, so nothing the client sent reaches the upstream unless
 * the hygiene stage let it through.
 */
export class Forwarder {
  private readonly upstreams = new Map<string, UpstreamTarget>();
  private readonly proxy: httpProxy;

  constructor(upstreams: ReadonlyMap<string, UpstreamConfig>, private readonly metrics: Metrics) {
    for (const [name, config] of upstreams) this.upstreams.set(name, buildTarget(config));
    this.proxy = httpProxy.createProxyServer({ xfwd: false, changeOrigin: false, ws: true });
    withoutDeleteLengthPass(this.proxy);
    this.proxy.on('proxyReq', (proxyReq, req) => {
      const state = (req as ForwardedRequest)[kForward];
      if (!state) return;
      proxyReq.setTimeout(state.upstream.config.timeoutMs, () => {
        state.timedOut = true;
        proxyReq.destroy();
      });
    });
    this.proxy.on('proxyRes', (proxyRes, req) => {
      const state = (req as ForwardedRequest)[kForward];
      if (state) proxyRes.headers['x-request-id'] = state.requestId;
      // Hop-by-hop: whether the client connection stays open is between the client and us (http-proxy then
      // derives Connection from the client's own request headers).
      delete proxyRes.headers.connection;
      delete proxyRes.headers['keep-alive'];
    });
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
    onError: (error: GatewayError, failure: UpstreamFailure) => void,
  ): void {
    const upstream = this.upstreams.get(upstreamName);
    if (!upstream) throw new Error(`unknown upstream ${upstreamName}`);
    const state: ForwardState = { upstream, timedOut: false, requestId, onError };
    (req as ForwardedRequest)[kForward] = state;
    req.url = pathAndQuery;
    // Node hands us the body de-chunked. Without an explicit framing header its client writes that body raw for
    // GET, HEAD, DELETE and OPTIONS, where the upstream would parse it as a second, unchecked request.
    if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
    this.withUpstreamHeaders(req, headers, () =>
      this.proxy.web(req, res, { target: upstream.target, agent: upstream.agent }, (err) => {
        const failure = state.timedOut ? 'timeout' : classify(err);
        this.metrics.upstreamErrors.inc({ upstream: upstreamName, kind: failure });
        state.onError(failure === 'timeout' ? Errors.gatewayTimeout : Errors.badGateway, failure);
      }),
    );
  }

  /** Forward a WebSocket upgrade that passed the pipeline. */
  ws(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    upstreamName: string,
    pathAndQuery: string,
    headers: OutgoingHttpHeaders,
    onError: (error: GatewayError, failure: UpstreamFailure) => void,
  ): void {
    const upstream = this.upstreams.get(upstreamName);
    if (!upstream) throw new Error(`unknown upstream ${upstreamName}`);
    req.url = pathAndQuery;
    this.withUpstreamHeaders(req, headers, () =>
      this.proxy.ws(req, socket, head, { target: upstream.target, agent: upstream.agent }, (err) => {
        const failure = classify(err);
        this.metrics.upstreamErrors.inc({ upstream: upstreamName, kind: failure });
        onError(Errors.badGateway, failure);
      }),
    );
  }

  /**
   * http-proxy copies `req.headers` into the upstream request synchronously inside web()/ws(), and later reads
   * the client's own headers again to answer it (Connection). So the sanitized set is swapped in for exactly
   * that call and the client's headers put back.
   */
  private withUpstreamHeaders(req: IncomingMessage, headers: OutgoingHttpHeaders, forward: () => void): void {
    const clientHeaders = req.headers;
    req.headers = headers as IncomingMessage['headers'];
    try {
      forward();
    } finally {
      req.headers = clientHeaders;
    }
  }

  close(): void {
    for (const upstream of this.upstreams.values()) upstream.agent.destroy();
    this.proxy.close();
  }
}

/**
 * http-proxy's `deleteLength` pass turns a DELETE or OPTIONS without Content-Length into `Content-Length: 0` and
 * drops Transfer-Encoding, yet still streams the body after it: request smuggling. Framing is decided in web().
 */
function withoutDeleteLengthPass(proxy: httpProxy): void {
  const passes = (proxy as unknown as { webPasses: Array<{ name: string }> }).webPasses;
  const index = passes.findIndex((pass) => pass.name === 'deleteLength');
  if (index >= 0) passes.splice(index, 1);
}

function buildTarget(config: UpstreamConfig): UpstreamTarget {
  const url = config.url;
  const https = url.protocol === 'https:';
  const agentOptions = { keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' as const };
  const agent = https
    ? new HttpsAgent({
        ...agentOptions,
        // Read once per config load; a reload re-reads the CA file.
        ca: config.tls?.caFile ? readFileSync(config.tls.caFile) : undefined,
        servername: config.tls?.serverName,
      })
    : new HttpAgent(agentOptions);
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  return {
    config,
    agent,
    target: { protocol: url.protocol, host: url.hostname, port: url.port || (https ? '443' : '80'), path },
  };
}

function classify(err: Error & { code?: string }): UpstreamFailure {
  switch (err.code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EAI_AGAIN':
      return 'refused';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return err.code?.startsWith('ERR_TLS') || err.code?.startsWith('CERT_') || err.code === 'DEPTH_ZERO_SELF_SIGNED_CERT' ? 'tls' : 'other';
  }
}
