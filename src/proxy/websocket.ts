import { request as httpRequest, type Agent, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { classifyUpstreamError, type UpstreamFailure } from './failures.js';

export type UpgradeFailure = UpstreamFailure | 'upgrade_refused' | 'client_closed';

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
}

export interface UpgradeCallbacks {
  /** The upstream switched protocols; bytes now flow both ways. */
  upgraded(): void;
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
const NOT_RELAYED = new Set(['connection', 'upgrade', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'content-length', 'x-request-id']);

/**
 * Proxies one WebSocket handshake with node:http's own upgrade support, then splices the two sockets. The
 * handshake has the upstream's timeout and dies with the client; an upstream that answers without switching
 * protocols is reported as a failure (the client gets a SPEC §7 502), never relayed raw: its body could carry
 * framing of its own. The path goes out exactly as the policy checked it.
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
  proxyReq.on('upgrade', (res, upstream: Duplex, upstreamHead: Buffer) => {
    if (!settle(undefined) || client.destroyed) {
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
    if (upstreamHead.length > 0) client.write(upstreamHead);
    if (clientHead.length > 0) upstream.write(clientHead);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    client.once('close', () => upstream.destroy());
    upstream.pipe(client);
    client.pipe(upstream);
    callbacks.upgraded();
  });
  // A client that leaves mid-handshake takes the upstream handshake with it.
  client.once('close', () => settle('client_closed'));
  proxyReq.end();
}
