import { createHash } from 'node:crypto';
import { request as httpRequest, type Agent, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { HOP_BY_HOP } from '../http/hop-by-hop.js';
import { classifyUpstreamError, type UpstreamFailure } from './failures.js';
import { closeFrame, FrameRelay } from './websocket-frames.js';

/**
 * `bad_handshake`: a 101 that does not complete the client's handshake (wrong or missing Sec-WebSocket-Accept);
 * `queue_timeout`: the upstream already has `max_connections` open.
 */
export type UpgradeFailure = UpstreamFailure | 'upgrade_refused' | 'bad_handshake' | 'client_closed' | 'queue_timeout';

/** RFC 6455 §7.4.1: the status for ending a connection whose terms no longer hold. */
export const POLICY_VIOLATION = 1008;
/** RFC 6455 §7.4.1: an endpoint going away; here, a tunnel idle past its upstream's websocket_idle_timeout. */
const GOING_AWAY = 1001;

/** How long a tunnel being closed may take to get its frames in progress and close frames out before both sockets go. */
const CLOSE_GRACE_MS = 5000;

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The Sec-WebSocket-Accept that answers `key` (RFC 6455 §4.2.2). */
export function websocketAccept(key: string): string {
  return createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64');
}

/** An open, proxied WebSocket. */
export interface WebSocketTunnel {
  /**
   * Ends both sides with a close frame of `status` and `reason`, each sent once the frame in progress in its
   * direction has been relayed; a side that takes longer than a few seconds is cut.
   */
  close(status: number, reason: string): void;
}

/** Where one upstream takes WebSocket handshakes. */
export interface UpgradeTarget {
  readonly https: boolean;
  readonly hostname: string;
  readonly port: number;
  /** The upstream URL's path prefix without a trailing slash ('' for none). */
  readonly basePath: string;
  readonly agent: Agent;
  readonly ca: Buffer | undefined;
  readonly servername: string | undefined;
  readonly timeoutMs: number;
  /** A tunnel that carries nothing either way for this long is closed. */
  readonly idleTimeoutMs: number;
}

export interface UpgradeCallbacks {
  /** The upstream switched protocols; bytes now flow both ways. */
  upgraded(tunnel: WebSocketTunnel): void;
  /**
   * No upgrade happened: the upstream refused, timed out or answered without switching protocols (the client
   * socket is still ours to answer on), or the client itself left (`client_closed`: nobody to answer).
   */
  failed(failure: UpgradeFailure): void;
}

/**
 * Response headers of a 101 that describe the upstream connection rather than the upgraded one. Connection and
 * Upgrade are written by us, so nothing the upstream says can turn the 101 into something else.
 */
const NOT_RELAYED = new Set([...HOP_BY_HOP, 'content-length', 'x-request-id']);

/**
 * Proxies one WebSocket handshake with node:http's own upgrade support, then splices the two sockets. The
 * handshake has the upstream's timeout and dies with the client; an upstream that answers without switching
 * protocols, or switches them without accepting this handshake's key, is reported as a failure (the client gets
 * a SPEC §7 502), never relayed raw: its body could carry framing of its own. The path goes out exactly as the
 * policy checked it.
 */
export function forwardUpgrade(
  client: Duplex,
  clientHead: Buffer,
  target: UpgradeTarget,
  pathAndQuery: string,
  headers: OutgoingHttpHeaders,
  requestId: string,
  callbacks: UpgradeCallbacks,
): void {
  let settled = false;
  const settle = (failure: UpgradeFailure | undefined): boolean => {
    if (settled) return false;
    settled = true;
    if (failure !== undefined) {
      proxyReq.destroy();
      callbacks.failed(failure);
    }
    return true;
  };
  const proxyReq = (target.https ? httpsRequest : httpRequest)({
    host: target.hostname,
    port: target.port,
    method: 'GET',
    path: target.basePath + pathAndQuery,
    headers,
    agent: target.agent,
    ...(target.https ? { ca: target.ca, servername: target.servername } : {}),
  });
  proxyReq.setTimeout(target.timeoutMs, () => settle('timeout'));
  proxyReq.on('error', (err: Error & { code?: string }) => settle(classifyUpstreamError(err)));
  proxyReq.on('response', (res) => {
    res.resume();
    settle('upgrade_refused');
  });
  proxyReq.on('upgrade', (res: IncomingMessage, upstream: Duplex, upstreamHead: Buffer) => {
    // A 101 that does not answer this handshake may come from something that is no WebSocket server at all: a
    // tunnel to it would carry whatever the client sends next, HTTP requests with identity headers of its own.
    const completes = completesHandshake(res, headers['sec-websocket-key']);
    if (!settle(completes ? undefined : 'bad_handshake') || !completes || client.destroyed) {
      upstream.destroy();
      return;
    }
    proxyReq.setTimeout(0);
    let head = 'HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n';
    for (let i = 0; i < res.rawHeaders.length; i += 2) {
      const name = res.rawHeaders[i] as string;
      if (!NOT_RELAYED.has(name.toLowerCase())) head += `${name}: ${res.rawHeaders[i + 1] as string}\r\n`;
    }
    client.write(`${head}x-request-id: ${requestId}\r\n\r\n`);
    callbacks.upgraded(openTunnel(client, clientHead, upstream, upstreamHead, target.idleTimeoutMs));
  });
  // A client that leaves mid-handshake takes the upstream handshake with it.
  client.once('close', () => settle('client_closed'));
  proxyReq.end();
}

/** RFC 6455 §4.1: the client fails the connection unless the 101 says `websocket` and accepts its very key. */
function completesHandshake(res: IncomingMessage, key: OutgoingHttpHeaders[string]): boolean {
  return (
    typeof key === 'string' &&
    res.headers.upgrade?.toLowerCase() === 'websocket' &&
    res.headers['sec-websocket-accept'] === websocketAccept(key)
  );
}

/** Splices the two sockets frame-aware, so that `close` can end the WebSocket between frames. */
function openTunnel(client: Duplex, clientHead: Buffer, upstream: Duplex, upstreamHead: Buffer, idleTimeoutMs: number): WebSocketTunnel {
  const toClient = new FrameRelay(upstream, client);
  const toUpstream = new FrameRelay(client, upstream);
  const destroyBoth = (): void => {
    client.destroy();
    upstream.destroy();
  };
  let deadline: NodeJS.Timeout | undefined;
  const windDown = (): void => {
    deadline ??= setTimeout(destroyBoth, CLOSE_GRACE_MS).unref();
  };
  upstream.on('error', destroyBoth);
  client.on('error', destroyBoth);
  // A side that goes takes the other with it, unless that one was ended cleanly and may still be flushing.
  upstream.once('close', () => (toClient.ended ? windDown() : client.destroy()));
  client.once('close', () => (toUpstream.ended ? windDown() : upstream.destroy()));
  // A side that hung up its half (FIN) sends nothing more: the other has a few seconds to finish, not for ever.
  upstream.once('end', windDown);
  client.once('end', windDown);
  toClient.start(upstreamHead);
  toUpstream.start(clientHead);
  const tunnel: WebSocketTunnel = {
    close(status, reason) {
      toClient.endWith(closeFrame(status, reason, false));
      toUpstream.endWith(closeFrame(status, reason, true));
      windDown();
    },
  };
  // Every byte either way passes the client socket, so its idle timer is the tunnel's (it also replaces whatever
  // timeout the requests before the upgrade left on the connection).
  if (client instanceof Socket) {
    client.setTimeout(idleTimeoutMs);
    client.once('timeout', () => tunnel.close(GOING_AWAY, 'idle'));
  }
  return tunnel;
}
