import { randomUUID } from 'node:crypto';
import {
  createServer as createHttpServer,
  ServerResponse,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerOptions,
} from 'node:http';
import { createServer as createHttpsServer, Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { GatewayConfig, ListenAddress } from '../config/types.js';
import { loggerFor, type Logger } from '../observability/log.js';
import { AccessRecorder } from './access.js';
import { clientCertificateOptions, listenerChanges, readTlsContext } from './reload.js';
import { canonicalIp, type TrustedProxies } from '../http/client-ip.js';
import { Metrics } from '../observability/metrics.js';
import { createStore } from '../store/index.js';
import type { Store } from '../store/types.js';
import { POLICY_VIOLATION, type UpgradeFailure, type WebSocketTunnel } from '../proxy/websocket.js';
import type { Identity } from '../identity/identity.js';
import { CredentialWatch, type CredentialEnd } from './credential-watch.js';
import { listen } from '../lib/listen.js';
import { startAdminServer, type AdminServer, type ReadinessSource } from '../admin/server.js';
import { lingerThenDestroy, sendError, sendErrorOnSocket, Errors, InvalidTokenDescription, type GatewayError } from '../http/responses.js';
import { Context } from '../chain/context.js';
import type { Transport } from '../chain/kinds.js';
import { decide } from '../chain/run.js';
import { isThenable, refusal, type Refusal, type Verdict } from '../chain/verdict.js';
import { rateLimitHeaderPairs } from '../mechanisms/limiters/rate-limit.js';
import { publishedKeys } from '../plan/internal-routes.js';
import { buildRuntime, closeRuntime, runtimeStatus, startRuntime, type Runtime } from './runtime.js';
import { bodyPending, type ForwardFailure } from '../proxy/forwarder.js';
import { isAbandoned } from '../proxy/failures.js';

export interface RunningGateway {
  readonly url: string;
  readonly adminUrl: string;
  reload(config: GatewayConfig): Promise<void>;
  /** Stop accepting, let in-flight requests finish within `shutdown_grace`, then close everything. */
  close(): Promise<void>;
}

export interface GatewayOptions {
  readonly logger?: Logger;
  readonly metrics?: Metrics;
  /** Replaces `admin.listen`: a cluster worker serves its admin endpoints privately, the primary publicly. */
  readonly adminListen?: ListenAddress;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Start the gateway listener and the admin listener for one config. */
export async function startGateway(config: GatewayConfig, options: GatewayOptions = {}): Promise<RunningGateway> {
  const logger = options.logger ?? loggerFor(config.logging);
  const metrics = options.metrics ?? new Metrics({ defaultMetrics: true });
  const gateway = new Gateway(config, logger, metrics, options.adminListen);
  try {
    await gateway.start();
  } catch (err) {
    // A port in use or an unreadable certificate: release what did start (admin listener, store, key refresh).
    await gateway.close();
    throw err;
  }
  return gateway;
}

class Gateway implements RunningGateway {
  private runtime: Runtime;
  private store: Store;
  private server: Server | undefined;
  private admin: AdminServer | undefined;
  private draining = false;
  /** Proxied WebSockets: they leave the HTTP server's bookkeeping once upgraded, so shutdown ends them itself. */
  private readonly upgraded = new Set<Duplex>();
  /** Ends proxied WebSockets whose token expires or is revoked. */
  private readonly credentials: CredentialWatch;
  private readonly access: AccessRecorder;
  /** Runtimes replaced by a reload whose grace period has not yet run out. */
  private readonly retiring = new Set<Runtime>();
  /** Responses the gateway ended other than as written (given up on, or their request refused mid-body). */
  private readonly interrupted = new WeakMap<ServerResponse, Interruption>();
  url = '';
  adminUrl = '';

  constructor(
    config: GatewayConfig,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly adminListen: ListenAddress | undefined,
  ) {
    this.access = new AccessRecorder(logger, metrics, () => this.runtime.config.logging.accessLog);
    this.store = createStore(config.store, config.rateLimits, { logger, metrics });
    this.runtime = buildRuntime(config, { logger, metrics, store: this.store });
    this.credentials = new CredentialWatch(this.store.revocations);
  }

  async start(): Promise<void> {
    const config = this.runtime.config;
    const adminConfig = this.adminListen ? { ...config.admin, listen: this.adminListen } : config.admin;
    this.admin = await startAdminServer(adminConfig, {
      logger: this.logger,
      metrics: this.metrics,
      store: this.store,
      readiness: () => ({ listener: this.listenerState(), status: () => runtimeStatus(this.runtime) }),
      adminToken: () => this.runtime.config.admin.token,
      issuers: () => issuerIdentifiers(this.runtime.config),
      publishedKeys: () => publishedKeys(this.runtime.mechanisms)?.(),
    });
    this.adminUrl = this.admin.url;
    await Promise.all([startRuntime(this.runtime), this.store.ready()]);

    const tls = config.server.tls;
    const headerTimeoutMs = config.server.headerTimeoutMs;
    const serverOptions: ServerOptions = {
      // Room for every token up to the 8 KiB limit of SPEC §4 plus ordinary headers, so an oversized token meets
      // the extractor's 401 rather than the parser's 431.
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: headerTimeoutMs,
      // Node checks header deadlines on this interval; a quarter of the timeout answers within 25% of it.
      connectionsCheckingInterval: Math.max(25, Math.min(5_000, Math.round(headerTimeoutMs / 4))),
      // Bodies stream for as long as the client keeps sending: the upstream's client_body_timeout bounds its pauses.
      requestTimeout: 0,
      ServerResponse: responseClass(() => this.draining),
    };
    const server = tls ? createHttpsServer({ ...serverOptions, ...(await readTlsContext(tls)), ...clientCertificateOptions(tls) }) : createHttpServer(serverOptions);
    // Node's strict HTTP parser stays on: it refuses Content-Length + Transfer-Encoding and duplicate lengths.
    server.on('request', (req, res) => this.onRequest(req, res));
    // Without this listener Node answers 100 Continue itself, inviting the body before any auth decision.
    server.on('checkContinue', (req, res) => this.onRequest(req, res, true));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.onClientError(err, socket));
    server.keepAliveTimeout = 65_000;
    // Node keeps only the first 2,000 header lines by default, and a body whose length header came later would be
    // forwarded as none; maxHeaderSize already bounds what a request's headers may cost.
    server.maxHeadersCount = 0;
    this.url = await listen(server, config.server.listen, { scheme: tls ? 'https' : 'http', setting: 'server.listen' });
    this.server = server;
    this.logger.info({ url: this.url, admin: this.adminUrl, routes: config.routes.length }, 'authgate listening');
  }

  async reload(config: GatewayConfig): Promise<void> {
    const previous = this.runtime;
    // Certificates first: a renewed certificate that cannot be read refuses the whole reload.
    const tlsContext = config.server.tls ? await readTlsContext(config.server.tls) : undefined;
    const next = buildRuntime(config, { logger: this.logger, metrics: this.metrics, store: this.store }, previous);
    try {
      await startRuntime(next);
    } catch (err) {
      closeRuntime(next, 'retire');
      throw err;
    }
    const restartNeeded = listenerChanges(previous.config, config);
    if (restartNeeded.length > 0) this.logger.warn({ settings: restartNeeded }, 'these settings take effect only after a restart');
    if (tlsContext && this.server instanceof HttpsServer) this.server.setSecureContext(tlsContext);
    this.logger.level = config.logging.level;
    // The store (and its Redis connections) lives as long as the gateway; only its limits follow the config.
    this.store.rateLimits.update(config.rateLimits);
    this.runtime = next;
    // Requests still in the chain hold `previous` and may yet dispatch on its pools, so they stay open for
    // shutdown_grace; then they close gracefully (requests already forwarded run to completion).
    this.retiring.add(previous);
    setTimeout(() => {
      if (!this.retiring.delete(previous)) return;
      closeRuntime(previous, 'retire');
      this.logger.info('previous configuration retired; its replaced upstream pools close once idle');
    }, previous.config.server.shutdownGraceMs).unref();
    this.logger.info({ routes: config.routes.length }, 'configuration reloaded');
  }

  async close(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const server = this.server;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const grace = new Promise<void>((resolve) => setTimeout(resolve, this.runtime.config.server.shutdownGraceMs).unref());
      await Promise.race([closed, grace]);
      server.closeAllConnections();
      for (const socket of this.upgraded) socket.destroy();
    }
    for (const runtime of this.retiring) closeRuntime(runtime, 'shutdown');
    this.retiring.clear();
    closeRuntime(this.runtime, 'shutdown');
    await this.store.close();
    await this.admin?.close();
  }

  private listenerState(): ReadinessSource['listener'] {
    if (this.draining) return 'draining';
    return this.server === undefined ? 'starting' : 'serving';
  }

  private context(req: IncomingMessage, transport: Transport, runtime: Runtime): Context {
    const socket = req.socket as TLSSocket;
    const peer = peerOf(socket, runtime.head.trustedProxies);
    const trustedPeer = peer.trusted;
    const incomingId = req.headers['x-request-id'];
    return new Context({
      method: req.method ?? 'GET',
      target: req.url ?? '',
      host: soleHost(req),
      headers: req.headers,
      headersDistinct: req.headersDistinct,
      peerIp: peer.ip,
      trustedPeer,
      proto: socket.encrypted ? 'https' : 'http',
      transport,
      requestId: trustedPeer && typeof incomingId === 'string' && REQUEST_ID.test(incomingId) ? incomingId : randomUUID(),
      tls: socket.encrypted ? socket : undefined,
      body: transport === 'request' ? req : undefined,
    });
  }

  /** `expectsContinue`: the client sent `Expect: 100-continue` and waits for our word before its body. */
  private onRequest(req: IncomingMessage, res: ServerResponse, expectsContinue = false): void {
    const started = performance.now();
    const runtime = this.runtime;
    const ctx = this.context(req, 'request', runtime);
    let verdict: Verdict | undefined;
    // `on`, not `once`: a response closes once, and `once` wraps every listener in a bound function.
    res.on('close', () => this.recordResponse(ctx, verdict, res, started));
    if (ctx.proto === 'https') res.setHeader('strict-transport-security', HSTS);
    const settle = (settled: Verdict): void => {
      verdict = settled;
      this.respond(req, res, ctx, settled, runtime, expectsContinue);
    };
    try {
      const decided = decide(runtime.head, ctx);
      if (isThenable(decided)) decided.then(settle, (err: unknown) => this.fail(res, ctx.requestId, err));
      else settle(decided);
    } catch (err) {
      this.fail(res, ctx.requestId, err);
    }
  }

  /** A refusal or the gateway's own answer goes back to the client; a pass is forwarded to the plan's upstream. */
  private respond(req: IncomingMessage, res: ServerResponse, ctx: Context, verdict: Verdict, runtime: Runtime, expectsContinue: boolean): void {
    const plan = ctx.plan;
    // The gateway's own answer, or the page a refusal shows a browser.
    const own = verdict.ok ? verdict.answer : verdict.page;
    if (own !== undefined) {
      res.writeHead(own.status, { ...own.headers, 'x-request-id': ctx.requestId }).end(own.body);
      return;
    }
    const origin = req.headers.origin;
    // Preflight refusals carry no CORS headers: the browser reads a refused preflight as refused either way.
    if (origin !== undefined && plan?.cors !== undefined && (verdict.ok || verdict.stage !== 'cors')) {
      for (const [name, value] of Object.entries(plan.cors.responseHeaders(origin))) res.setHeader(name, value as string);
    }
    if (!verdict.ok) {
      sendError(res, verdict.error, ctx.requestId);
      return;
    }
    const ownHeaders = ownAnswerHeaders(ctx);
    // The client asked to hear before it sends a body: now that the request may pass, tell it to go on.
    if (expectsContinue) res.writeContinue();
    const onFailure = (failure: ForwardFailure): void => this.forwardFailed(res, failure, ctx.requestId, ownHeaders);
    runtime.forwarder.web(req, res, plan?.upstream as string, ctx.path + ctx.query, ctx.upstreamHeaders ?? {}, ctx.requestId, onFailure, ownHeaders);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const started = performance.now();
    const runtime = this.runtime;
    const ctx = this.context(req, 'upgrade', runtime);
    socket.on('error', () => socket.destroy());
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
    // A handshake pipelined behind a request whose response is still pending: anything written on the raw socket
    // now would go out ahead of that response and be read as its answer. Let that response finish, then close
    // the connection without answering the handshake; clients retry it on a new one (RFC 9112 §9.3.2).
    const pending = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (pending) {
      this.access.record(ctx, PIPELINED_UPGRADE, CLOSED_UNANSWERED, started);
      pending.once('close', () => {
        socket.end();
        lingerThenDestroy(socket);
      });
      return;
    }
    // Only a real WebSocket handshake counts as an upgrade: the flag unlocks query-string tokens.
    const websocket = req.method === 'GET' && req.headers['sec-websocket-key'] !== undefined && (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
    if (this.draining || !websocket) {
      this.refuseUpgrade(socket, ctx, this.draining ? DRAINING : NOT_WEBSOCKET, started);
      return;
    }
    const failed = (err: unknown): void => {
      this.logger.error({ err, requestId: ctx.requestId }, 'upgrade pipeline failed');
      sendErrorOnSocket(socket, Errors.internalError, ctx.requestId);
    };
    try {
      const decided = decide(runtime.head, ctx);
      if (isThenable(decided)) decided.then((verdict) => this.tunnel(socket, head, ctx, verdict, runtime, started), failed);
      else this.tunnel(socket, head, ctx, decided, runtime, started);
    } catch (err) {
      failed(err);
    }
  }

  private refuseUpgrade(socket: Duplex, ctx: Context, refused: Refusal, started: number): void {
    this.access.record(ctx, refused, refused.error.status, started);
    sendErrorOnSocket(socket, refused.error, ctx.requestId);
  }

  /** Upgrades never reach the gateway's own endpoints, so a verdict that passes always names an upstream. */
  private tunnel(socket: Duplex, head: Buffer, ctx: Context, verdict: Verdict, runtime: Runtime, started: number): void {
    if (!verdict.ok) {
      this.refuseUpgrade(socket, ctx, verdict, started);
      return;
    }
    runtime.forwarder.ws(socket, head, ctx.plan?.upstream as string, ctx.path + ctx.query, ctx.upstreamHeaders ?? {}, ctx.requestId, {
      upgraded: (tunnel) => {
        this.access.record(ctx, verdict, 101, started);
        if (ctx.identity) this.closeWithCredential(socket, tunnel, ctx.identity, ctx.requestId, runtime);
      },
      failed: (failure) => {
        if (failure === 'client_closed') {
          this.access.record(ctx, verdict, CLIENT_CLOSED, started);
          return;
        }
        const error = upgradeError(failure);
        this.access.record(ctx, verdict, error.status, started);
        sendErrorOnSocket(socket, error, ctx.requestId);
      },
    });
  }

  /** Answers the client (or cuts its connection once the head is out); a request given up on is logged as such. */
  private forwardFailed(res: ServerResponse, failure: ForwardFailure, requestId: string, ownHeaders: readonly string[] | undefined): void {
    const error = upstreamError(failure);
    if (isAbandoned(failure)) this.interrupted.set(res, { reason: failure, status: error.status });
    // A limited route's RateLimit-* (and a DPoP-Nonce) go on its 502 and 504 too.
    for (let i = 0; ownHeaders !== undefined && !res.headersSent && i < ownHeaders.length; i += 2) {
      res.setHeader(ownHeaders[i] as string, ownHeaders[i + 1] as string);
    }
    sendError(res, error, requestId);
  }

  /**
   * Node's parser refused bytes on a connection. Answered in the SPEC §7 shape where an answer can still be read
   * (sendErrorOnSocket destroys an unwritable socket).
   */
  private onClientError(err: NodeJS.ErrnoException, socket: Socket & { _httpMessage?: ServerResponse | null }): void {
    const pending = socket._httpMessage;
    if (pending) {
      // A response is under way on this connection: an error written now would land inside its body, so the
      // connection just ends, as Node's own handler does. If the refused bytes were that request's own body
      // (a bad chunk), the request ends here and its log line must say so, not the 200 Node presets.
      if (err.code !== 'ECONNRESET' && !pending.req.complete) this.interrupted.set(pending, MALFORMED_BODY);
      socket.destroy();
    } else if (err.code === 'ECONNRESET') {
      socket.destroy();
    } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      this.headersTimedOut(socket);
    } else {
      sendErrorOnSocket(socket, err.code === 'HPE_HEADER_OVERFLOW' ? Errors.headersTooLarge : Errors.malformedRequest, randomUUID());
    }
  }

  /** server.header_timeout passed before a request's headers were complete. */
  private headersTimedOut(socket: Socket): void {
    // A connection that never sent a byte (a browser's speculative preconnect) is closed without an answer.
    if (socket.bytesRead === 0) {
      socket.destroy();
      return;
    }
    const requestId = randomUUID();
    // Never the partial headers: they may hold a token.
    this.logger.warn({ peer: peerAddress(socket), requestId, status: 408 }, 'request headers not received in time');
    sendErrorOnSocket(socket, Errors.requestTimeout, requestId);
  }

  /** A bug, never a client's doing: answer 500 without detail and keep serving. */
  private fail(res: ServerResponse, requestId: string, err: unknown): void {
    this.logger.error({ err, requestId }, 'request pipeline failed');
    sendError(res, Errors.internalError, requestId);
  }

  /** The status the client really got: a response that never sent its head was not the 200 Node presets. */
  private recordResponse(ctx: Context, verdict: Verdict | undefined, res: ServerResponse, started: number): void {
    const interruption = this.interrupted.get(res);
    const status = res.headersSent ? res.statusCode : (interruption?.status ?? CLIENT_CLOSED);
    this.access.record(ctx, verdict, status, started, interruption?.reason);
  }

  /**
   * A WebSocket passed the checks once, with a credential that ends: when it does (expiry, revocation), so does
   * the WebSocket, with a close frame saying why, rather than carrying frames for whoever held the token.
   */
  private closeWithCredential(socket: Duplex, tunnel: WebSocketTunnel, identity: Identity, requestId: string, runtime: Runtime): void {
    const close = (why: CredentialEnd): void => {
      this.logger.info({ requestId, reason: why }, 'WebSocket closed: its credential ended');
      tunnel.close(POLICY_VIOLATION, CLOSE_REASONS[why]);
    };
    const forget = this.credentials.watch(identity, close);
    socket.once('close', forget);
    const forgetSession = runtime.login?.watchSession(identity, () => close('revoked'));
    if (forgetSession !== undefined) socket.once('close', forgetSession);
  }
}

const MAX_HEADER_BYTES = 32 * 1024;

const PIPELINED_UPGRADE = refusal('route', Errors.badUpgrade, 'pipelined_upgrade');
const DRAINING = refusal('route', Errors.unavailable, 'draining');
const NOT_WEBSOCKET = refusal('route', Errors.badUpgrade, 'not_websocket');

/** The status nginx made the convention for a client that left before an answer: for the access log only. */
const CLIENT_CLOSED = 499;
/** nginx's status for a connection closed without a response: for the access log only. */
const CLOSED_UNANSWERED = 444;

interface Interruption {
  readonly reason: string;
  /** Logged when the response head never went out. */
  readonly status: number;
}

const MALFORMED_BODY: Interruption = { reason: 'malformed_body', status: Errors.malformedRequest.status };

const FORWARD_ERRORS: Readonly<Record<ForwardFailure, GatewayError>> = {
  refused: Errors.badGateway,
  reset: Errors.badGateway,
  tls: Errors.badGateway,
  other: Errors.badGateway,
  timeout: Errors.gatewayTimeout,
  queue_timeout: Errors.upstreamBusy,
  client_body_timeout: Errors.requestTimeout,
  // The response head is out by then, so the client gets no answer: sendError cuts the connection.
  client_read_timeout: Errors.requestTimeout,
};

function upstreamError(failure: ForwardFailure): GatewayError {
  return FORWARD_ERRORS[failure];
}

/**
 * The listener's responses. A head written while the gateway is draining, or while the request body is still
 * arriving, says `Connection: close`, and Node closes the connection once the response is sent: clients do not
 * reuse a connection the gateway is about to close, and after answering (a refusal, an upstream that answered
 * early) the gateway does not go on reading a body at the client's pace.
 */
function responseClass(draining: () => boolean): typeof ServerResponse {
  class GatewayResponse extends ServerResponse {
    override writeHead(statusCode: number, ...rest: unknown[]): this {
      if (draining() || bodyPending(this.req)) this.shouldKeepAlive = false;
      return super.writeHead(statusCode, ...(rest as [OutgoingHttpHeaders]));
    }
  }
  // Node builds it for every request; the generic parameter of the declared constructor is Node's typing only.
  return GatewayResponse as typeof ServerResponse;
}

/** The gateway's own headers for the answer of a request that passes: RateLimit-*, then what the steps added. */
function ownAnswerHeaders(ctx: Context): readonly string[] | undefined {
  const limit = ctx.limit ? rateLimitHeaderPairs(ctx.limit) : undefined;
  if (ctx.answerHeaders === undefined) return limit;
  return limit === undefined ? ctx.answerHeaders : [...limit, ...ctx.answerHeaders];
}

/** Browsers honour it only over TLS; a year, as the HSTS preload list expects. */
const HSTS = 'max-age=31536000';

/** Canonical form (v4-mapped IPv6 unwrapped) so trust checks, limits and X-Forwarded-For agree on one spelling. */
function peerAddress(socket: Socket): string {
  return canonicalIp(socket.remoteAddress ?? '');
}

/** A connection's peer address and whether `trustedBy` trusts it. */
interface Peer {
  readonly ip: string;
  readonly trustedBy: TrustedProxies;
  readonly trusted: boolean;
}

/** Worked out once per connection (and again after a reload changed the trusted proxies), not per request. */
const peers = new WeakMap<Socket, Peer>();

function peerOf(socket: Socket, trustedProxies: TrustedProxies): Peer {
  let peer = peers.get(socket);
  if (peer === undefined || peer.trustedBy !== trustedProxies) {
    const ip = peerAddress(socket);
    peer = { ip, trustedBy: trustedProxies, trusted: trustedProxies.isTrusted(ip) };
    peers.set(socket, peer);
  }
  return peer;
}

function upgradeError(failure: Exclude<UpgradeFailure, 'client_closed'>): GatewayError {
  return failure === 'upgrade_refused' || failure === 'bad_handshake' ? Errors.upgradeRefused : upstreamError(failure);
}

/** Close-frame reasons, worded as the refusal a new handshake with the same token would get. */
const CLOSE_REASONS: Readonly<Record<CredentialEnd, string>> = {
  expired: InvalidTokenDescription.expired,
  revoked: InvalidTokenDescription.revoked,
};

/**
 * The Host header, or '' (refused before routing as no host) when there is none or more than one: two Host lines
 * are a 400 (RFC 9112 §3.2), for a proxy in front may have read the other one.
 */
function soleHost(req: IncomingMessage): string {
  const hosts = req.headersDistinct.host;
  return hosts?.length === 1 ? (hosts[0] as string) : '';
}

/** name → `iss` of each configured issuer (asked per admin request: reloads apply at once). */
function issuerIdentifiers(config: GatewayConfig): ReadonlyMap<string, string> {
  return new Map([...config.issuers].map(([name, issuer]) => [name, issuer.issuer]));
}
