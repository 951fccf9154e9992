import { isIP } from 'node:net';
import type { ListenAddress } from './types.js';

/** RFC 9110 `token`: header names, methods, cookie names. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const PORT = /^(0|[1-9]\d{0,4})$/;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

export function isToken(text: string): boolean {
  return TOKEN.test(text);
}

export function isHostname(text: string): boolean {
  return HOSTNAME.test(text);
}

/** `host:port`, `[v6]:port`; port 0 asks the OS for a free port (tests, the demo). */
export function parseListen(text: string): ListenAddress | string {
  const colon = text.lastIndexOf(':');
  if (colon === -1) return `expected host:port, got "${text}"`;
  const rawHost = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  const bracketed = rawHost.startsWith('[') && rawHost.endsWith(']');
  const host = bracketed ? rawHost.slice(1, -1) : rawHost;
  if (bracketed ? isIP(host) !== 6 : isIP(host) !== 4 && !isHostname(host.toLowerCase())) {
    return `"${rawHost}" is not an IP address or host name (write IPv6 addresses as [::1]:8080)`;
  }
  const port = PORT.test(portText) ? Number(portText) : Number.NaN;
  if (!(port <= 65_535)) return `"${portText}" is not a port number`;
  return { host, port };
}

/**
 * `host` or `*.suffix`, lower-cased; an error message when invalid. A `:port` is refused: requests are matched on
 * the Host name alone (routing/hosts.ts drops the request's port), so a pattern with a port could never match.
 */
export function parseHostPattern(text: string): string | { error: string } {
  const lower = text.toLowerCase();
  const colon = lower.lastIndexOf(':');
  if (colon !== -1 && !lower.endsWith(']')) {
    return { error: `"${text}" must not have a :port (hosts are matched without the request's port)` };
  }
  const name = lower.startsWith('*.') ? lower.slice(2) : lower;
  const validHost = isHostname(name) || isIP(name) === 4 || (!lower.startsWith('*.') && isBracketedV6(name));
  if (!validHost) return { error: `"${text}" is not a host name or "*.suffix" pattern` };
  return lower;
}

function isBracketedV6(text: string): boolean {
  return text.startsWith('[') && text.endsWith(']') && isIP(text.slice(1, -1)) === 6;
}

/** Plain-http URLs are allowed only to the local machine, where nothing can intercept them. */
export function isLoopbackUrl(url: URL): boolean {
  return LOOPBACK_HOSTS.has(url.hostname) || (isIP(url.hostname) === 4 && url.hostname.startsWith('127.'));
}

/**
 * A URL for fetching keys or discovery documents: https, or http on loopback only.
 * Returns an error message, or the parsed URL.
 */
export function parseKeyServerUrl(text: string): URL | string {
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (url === undefined || url.hostname === '') return `"${text}" is not a URL`;
  if (url.username !== '' || url.password !== '') return 'must not contain credentials';
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackUrl(url))) return url;
  return 'must be an https URL (plain http only to 127.0.0.1, [::1] or localhost)';
}

/** A CORS origin: `scheme://host[:port]` with nothing after it, or `*`. */
export function isOrigin(text: string): boolean {
  if (text === '*') return true;
  if (!URL.canParse(text)) return false;
  const url = new URL(text);
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === text.toLowerCase();
}
