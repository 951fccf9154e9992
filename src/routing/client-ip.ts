import { BlockList, isIP } from 'node:net';

/**
 * The client IP behind `server.trusted_proxies` (SPEC §1 step 1). Only X-Forwarded-For is read, and only when the
 * TCP peer is trusted; X-Real-IP and Forwarded never choose the client (they are trivially spoofed and three
 * sources could disagree).
 */
export interface TrustedProxies {
  isTrusted(ip: string): boolean;
}

const V4_MAPPED_PREFIX = '::ffff:';

export function compileTrustedProxies(cidrs: readonly string[]): TrustedProxies {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const slash = cidr.indexOf('/');
    const address = slash < 0 ? cidr : cidr.slice(0, slash);
    const family = isIP(address);
    if (family === 0) throw new Error(`trusted proxy "${cidr}" is not an IP address or CIDR`);
    const prefix = slash < 0 ? (family === 4 ? 32 : 128) : Number(cidr.slice(slash + 1));
    list.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return {
    isTrusted(ip) {
      const family = isIP(ip);
      // BlockList compares IPv4-mapped IPv6 (`::ffff:10.0.0.1`) with IPv4 rules and vice versa.
      return family !== 0 && list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
    },
  };
}

/** `::ffff:1.2.3.4` (a dual-stack socket's view of an IPv4 peer) as `1.2.3.4`, so one client has one key. */
export function canonicalIp(ip: string): string {
  const lower = ip.toLowerCase();
  return lower.startsWith(V4_MAPPED_PREFIX) && isIP(lower.slice(V4_MAPPED_PREFIX.length)) === 4
    ? lower.slice(V4_MAPPED_PREFIX.length)
    : lower;
}

/**
 * Walks X-Forwarded-For from the right, skipping trusted hops; the first untrusted address is the client.
 * A malformed entry (`unknown`, garbage, empty) ends the walk at the hop that wrote it: that hop is trusted but
 * did not know its client, and skipping past it would let the client choose the addresses further left.
 */
export function resolveClientIp(peerIp: string, xForwardedFor: string | undefined, trusted: TrustedProxies): string {
  const peer = canonicalIp(peerIp);
  if (xForwardedFor === undefined || !trusted.isTrusted(peer)) return peer;
  let client = peer;
  let end = xForwardedFor.length;
  while (end >= 0) {
    const comma = xForwardedFor.lastIndexOf(',', end - 1);
    const hop = parseHop(xForwardedFor.slice(comma + 1, end));
    if (hop === undefined) return client;
    client = hop;
    if (!trusted.isTrusted(hop)) return hop;
    end = comma;
  }
  return client;
}

/** One X-Forwarded-For entry: an address, optionally `[v6]:port` or `v4:port` (as some load balancers write). */
function parseHop(entry: string): string | undefined {
  let address = entry.trim();
  if (address.startsWith('[')) {
    const close = address.indexOf(']');
    if (close < 0) return undefined;
    address = address.slice(1, close);
  } else {
    const colon = address.indexOf(':');
    if (colon >= 0 && address.indexOf(':', colon + 1) < 0) address = address.slice(0, colon);
  }
  return isIP(address) === 0 ? undefined : canonicalIp(address);
}
