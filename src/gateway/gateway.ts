import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
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
import type { GatewayConfig, ListenAddress, ServerTlsConfig } from '../config/types.js';
import { AccessLog, loggerFor, type Logger } from '../observability/log.js';
import { canonicalIp } from '../routing/client-ip.js';
import { Metrics } from '../observability/metrics.js';
import { createStore } from '../store/index.js';
import type { Store } from '../store/types.js';
import { POLICY_VIOLATION, type UpgradeFailure, type WebSocketTunnel } from '../proxy/websocket.js';
import { InvalidTokenDescription, type Identity } from '../auth/types.js';
import { CredentialWatch, type CredentialEnd } from './credential-watch.js';
import { listen } from '../admin/listen.js';
import { startAdminServer, type AdminServer } from '../admin/server.js';
import { sendError, sendErrorOnSocket, Errors, SECURITY_HEADERS, type GatewayError } from './errors.js';
import { decide, type Outcome, type RequestFacts } from './pipeline.js';
import { answerPreflight } from './cors.js';
import { handleReserved } from './reserved.js';
import { buildRuntime, closeRuntime, type Runtime } from './runtime.js';
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
  private readonly accessLog: AccessLog;
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
    this.accessLog = new AccessLog(logger);
    this.runtime = buildRuntime(config, { logger, metrics });
    this.store = createStore(config.store, config.rateLimits, { logger, metrics });
    this.credentials = new CredentialWatch(this.store.revocations);
  }

  async start(): Promise<void> {
    const config = this.runtime.config;
    const adminConfig = this.adminListen ? { ...config.admin, listen: this.adminListen } : config.admin;
    this.admin = await startAdminServer(adminConfig, {
      logger: this.logger,
      metrics: this.metrics,
      store: this.store,
      readiness: () => ({ draining: this.draining, runtime: this.runtime }),
      adminToken: () => this.runtime.config.admin.token,
    });
    this.adminUrl = this.admin.url;
    await Promise.all([this.runtime.authenticator.start(), this.store.ready()]);

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
    const server = tls ? createHttpsServer({ ...serverOptions, ...(await readTlsContext(tls)) }) : createHttpServer(serverOptions);
    // Node's strict HTTP parser stays on: it refuses Content-Length + Transfer-Encoding and duplicate lengths.
    server.on('request', (req, res) => this.onRequest(req, res));
    // Without this listener Node answers 100 Continue itself, inviting the body before any auth decision.
    server.on('checkContinue', (req, res) => this.onRequest(req, res, true));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.onClientError(err, socket));
    server.keepAliveTimeout = 65_000;
    this.url = await listen(server, config.server.listen, { scheme: tls ? 'https' : 'http' });
    this.server = server;
    this.logger.info({ url: this.url, admin: this.adminUrl, routes: config.routes.length }, 'authgate listening');
  }

  async reload(config: GatewayConfig): Promise<void> {
    const previous = this.runtime;
    // Certificates first: a renewed certificate that cannot be read refuses the whole reload.
    const tlsContext = config.server.tls ? await readTlsContext(config.server.tls) : undefined;
    const next = buildRuntime(config, { logger: this.logger, metrics: this.metrics }, previous);
    try {
      await next.authenticator.start();
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
    // Requests still in the pipeline hold `previous` and may yet dispatch on its pools, so they stay open for
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

  private facts(req: IncomingMessage, upgrade: boolean, trustedPeer: boolean, peerIp: string): RequestFacts {
    const incomingId = req.headers['x-request-id'];
    return {
      method: req.method ?? 'GET',
      target: req.url ?? '',
      host: req.headers.host ?? '',
      headers: req.headers,
      headersDistinct: req.headersDistinct,
      peerIp,
      trustedPeer,
      proto: (req.socket as TLSSocket).encrypted ? 'https' : 'http',
      upgrade,
      requestId: trustedPeer && typeof incomingId === 'string' && REQUEST_ID.test(incomingId) ? incomingId : randomUUID(),
    };
  }

  /** `expectsContinue`: the client sent `Expect: 100-continue` and waits for our word before its body. */
  private onRequest(req: IncomingMessage, res: ServerResponse, expectsContinue = false): void {
    const started = performance.now();
    const runtime = this.runtime;
    const peerIp = peerAddress(req.socket);
    const facts = this.facts(req, false, runtime.trustedProxies.isTrusted(peerIp), peerIp);
    let decision: Outcome | undefined;
    /** A reserved endpoint's answer may close the response before its outcome promise settles. */
    let outcomePending: Promise<unknown> | undefined;
    res.once('close', () => {
      if (outcomePending) void outcomePending.finally(() => this.recordResponse(facts, decision, res, started));
      else this.recordResponse(facts, decision, res, started);
    });
    if (facts.proto === 'https') res.setHeader('strict-transport-security', HSTS);

    const reserved = handleReserved(res, facts, runtime, { store: this.store, metrics: this.metrics, logger: this.logger });
    if (reserved) {
      outcomePending = reserved.then((d) => (decision = d)).catch((err: unknown) => this.fail(res, facts.requestId, err));
      return;
    }
    const preflight = answerPreflight(facts, runtime);
    if (preflight) {
      decision = { allow: preflight.headers !== undefined, reason: 'cors_preflight', route: preflight.route, identity: undefined, path: preflight.path };
      if (preflight.headers) res.writeHead(204, { ...preflight.headers, ...SECURITY_HEADERS, 'x-request-id': facts.requestId }).end();
      else sendError(res, Errors.corsRefused, facts.requestId);
      return;
    }
    const origin = req.headers.origin;
    decide(facts, runtime, { store: this.store, metrics: this.metrics }).then(
      (d) => {
        decision = d;
        const cors = origin !== undefined && d.route ? runtime.plans.get(d.route)?.cors : undefined;
        if (cors) for (const [name, value] of Object.entries(cors.responseHeaders(origin as string))) res.setHeader(name, value as string);
        if (!d.allow) {
          sendError(res, d.error, facts.requestId);
          return;
        }
        if (d.rateLimitHeaders) for (const name in d.rateLimitHeaders) res.setHeader(name, d.rateLimitHeaders[name] as string);
        // The client asked to hear before it sends a body: now that the request may pass, tell it to go on.
        if (expectsContinue) res.writeContinue();
        runtime.forwarder.web(req, res, d.route.upstream, d.path + d.query, d.upstreamHeaders, facts.requestId, (failure) =>
          this.forwardFailed(res, failure, facts.requestId),
        );
      },
      (err: unknown) => this.fail(res, facts.requestId, err),
    );
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const started = performance.now();
    const runtime = this.runtime;
    const peerIp = peerAddress(req.socket);
    const facts = this.facts(req, true, runtime.trustedProxies.isTrusted(peerIp), peerIp);
    socket.on('error', () => socket.destroy());
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
    // A handshake pipelined behind a request whose response is still pending: anything written on the raw socket
    // now would go out ahead of that response and be read as its answer. Let that response finish, then close
    // the connection without answering the handshake; clients retry it on a new one (RFC 9112 §9.3.2).
    const pending = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (pending) {
      this.record(facts, { allow: false, reason: 'pipelined_upgrade', route: undefined, identity: undefined, path: undefined }, CLOSED_UNANSWERED, started);
      pending.once('close', () => socket.end());
      return;
    }
    // Only a real WebSocket handshake counts as an upgrade: the flag unlocks query-string tokens.
    const websocket = req.method === 'GET' && req.headers['sec-websocket-key'] !== undefined && (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
    if (this.draining || !websocket) {
      const error = this.draining ? Errors.unavailable : Errors.badUpgrade;
      const reason = this.draining ? 'draining' : 'not_websocket';
      this.record(facts, { allow: false, reason, route: undefined, identity: undefined, path: undefined }, error.status, started);
      sendErrorOnSocket(socket, error, facts.requestId);
      return;
    }
    decide(facts, runtime, { store: this.store, metrics: this.metrics }).then(
      (d) => {
        if (!d.allow) {
          this.record(facts, d, d.error.status, started);
          sendErrorOnSocket(socket, d.error, facts.requestId);
          return;
        }
        runtime.forwarder.ws(socket, head, d.route.upstream, d.path + d.query, d.upstreamHeaders, facts.requestId, {
          upgraded: (tunnel) => {
            this.record(facts, d, 101, started);
            if (d.identity) this.closeWithCredential(socket, tunnel, d.identity, facts.requestId);
          },
          failed: (failure) => {
            if (failure === 'client_closed') {
              this.record(facts, d, CLIENT_CLOSED, started);
              return;
            }
            const error = upgradeError(failure);
            this.record(facts, d, error.status, started);
            sendErrorOnSocket(socket, error, facts.requestId);
          },
        });
      },
      (err: unknown) => {
        this.logger.error({ err, requestId: facts.requestId }, 'upgrade pipeline failed');
        sendErrorOnSocket(socket, Errors.internalError, facts.requestId);
      },
    );
  }

  /** Answers the client (or cuts its connection once the head is out); a request given up on is logged as such. */
  private forwardFailed(res: ServerResponse, failure: ForwardFailure, requestId: string): void {
    const error = upstreamError(failure);
    if (isAbandoned(failure)) this.interrupted.set(res, { reason: failure, status: error.status });
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
  private recordResponse(facts: RequestFacts, decision: Outcome | undefined, res: ServerResponse, started: number): void {
    const interruption = this.interrupted.get(res);
    const status = res.headersSent ? res.statusCode : (interruption?.status ?? CLIENT_CLOSED);
    this.record(facts, decision, status, started, interruption?.reason);
  }

  /** `interrupted`: why the gateway ended the request itself, whatever the decision was. */
  private record(facts: RequestFacts, decision: Outcome | undefined, status: number, started: number, interrupted?: string): void {
    const ms = performance.now() - started;
    const route = decision?.route?.name ?? '-';
    const method = decision?.method ?? facts.method;
    this.metrics.requests.inc({ route, method, status });
    this.metrics.requestDuration.observe({ route }, ms / 1000);
    if (decision && !decision.allow && (decision.stage === 'authenticate' || decision.stage === 'revocation' || decision.stage === 'authorize')) {
      this.metrics.authDenied.inc({ reason: decision.reason });
    }
    if (!this.runtime.config.logging.accessLog) return;
    const identity = decision?.identity;
    this.accessLog.write({
      requestId: facts.requestId,
      route,
      method,
      path: decision?.path,
      status,
      decision: decision && !interrupted ? (decision.allow ? 'allow' : 'deny') : 'error',
      reason: interrupted ?? (decision && !decision.allow ? decision.reason : undefined),
      detail: decision?.detail,
      subject: identity?.subject,
      issuer: identity?.issuer.name,
      upstream: decision?.allow ? decision.route?.upstream : undefined,
      ms: Math.round(ms * 1000) / 1000,
    });
  }

  /**
   * A WebSocket passed the checks once, with a credential that ends: when it does (expiry, revocation), so does
   * the WebSocket, with a close frame saying why, rather than carrying frames for whoever held the token.
   */
  private closeWithCredential(socket: Duplex, tunnel: WebSocketTunnel, identity: Identity, requestId: string): void {
    const forget = this.credentials.watch(identity, (why) => {
      this.logger.info({ requestId, reason: why }, 'WebSocket closed: its credential ended');
      tunnel.close(POLICY_VIOLATION, CLOSE_REASONS[why]);
    });
    socket.once('close', forget);
  }
}

async function readTlsContext(tls: ServerTlsConfig): Promise<{ cert: Buffer; key: Buffer; minVersion: ServerTlsConfig['minVersion'] }> {
  const [cert, key] = await Promise.all([readFile(tls.certFile), readFile(tls.keyFile)]);
  return { cert, key, minVersion: tls.minVersion };
}

/** Settings bound to the open listeners: a reload cannot apply them, so it says which need a restart. */
function listenerChanges(before: GatewayConfig, after: GatewayConfig): string[] {
  const changed: string[] = [];
  const same = (a: { host: string; port: number }, b: { host: string; port: number }): boolean => a.host === b.host && a.port === b.port;
  if (!same(before.server.listen, after.server.listen)) changed.push('server.listen');
  if ((before.server.tls === undefined) !== (after.server.tls === undefined)) changed.push('server.tls');
  if (!same(before.admin.listen, after.admin.listen)) changed.push('admin.listen');
  if (before.server.workers !== after.server.workers) changed.push('server.workers');
  if (before.server.headerTimeoutMs !== after.server.headerTimeoutMs) changed.push('server.header_timeout');
  if (JSON.stringify(before.store) !== JSON.stringify(after.store)) changed.push('store');
  return changed;
}

const MAX_HEADER_BYTES = 32 * 1024;

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

/** Browsers honour it only over TLS; a year, as the HSTS preload list expects. */
const HSTS = 'max-age=31536000';



/** Canonical form (v4-mapped IPv6 unwrapped) so trust checks, limits and X-Forwarded-For agree on one spelling. */
function peerAddress(socket: Socket): string {
  return canonicalIp(socket.remoteAddress ?? '');
}

function upgradeError(failure: Exclude<UpgradeFailure, 'client_closed'>): GatewayError {
  return failure === 'upgrade_refused' || failure === 'bad_handshake' ? Errors.upgradeRefused : upstreamError(failure);
}

/** Close-frame reasons, worded as the refusal a new handshake with the same token would get. */
const CLOSE_REASONS: Readonly<Record<CredentialEnd, string>> = {
  expired: InvalidTokenDescription.expired,
  revoked: InvalidTokenDescription.revoked,
};
