import { isIP } from 'node:net';

/**
 * The client IP behind `server.trusted_proxies` (SPEC §1 step 1). Only X-Forwarded-For is read, and only when the
 * TCP peer is trusted; X-Real-IP and Forwarded never choose the client (they are trivially spoofed and three
 * sources could disagree).
 */
export interface TrustedProxies {
  isTrusted(ip: string): boolean;
}

const V4_MAPPED_PREFIX = '::ffff:';
/** Decimal without leading zeros: `/08` is refused rather than read as 8 (or, by some tools, as octal). */
const PREFIX_LENGTH = /^(0|[1-9]\d{0,2})$/;

/**
 * Every address and range is held as 128 bits (four 32-bit words), IPv4 as its IPv4-mapped IPv6 form, so one
 * comparison covers `10.0.0.1`, `::ffff:10.0.0.1`, `10.0.0.0/8` and `::ffff:10.0.0.0/104` alike.
 * (node:net BlockList does the same but costs about a microsecond per check; this runs several times a request.)
 */
export interface AddressRange {
  readonly network: Uint32Array;
  readonly mask: Uint32Array;
}

/** Parse target for the hot path: one buffer, reused, since checks are synchronous. */
const scratchGroups = new Uint16Array(8);
const scratchWords = new Uint32Array(4);

/**
 * An IPv4 or IPv6 `address/length` as a range, a bare address as /32 or /128; undefined when it is neither. The
 * config validator uses it too, so `check` accepts exactly what the gateway can compile. Zone ids (`fe80::1%eth0`)
 * are refused: a peer address never carries one when compared.
 */
export function parseCidr(text: string): AddressRange | undefined {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  if (address.includes('%')) return undefined;
  const words = parseAddress(address, new Uint32Array(4));
  if (words === undefined) return undefined;
  const maxPrefix = isIP(address) === 4 ? 32 : 128;
  const prefixText = slash === -1 ? undefined : text.slice(slash + 1);
  const prefix = prefixText === undefined ? maxPrefix : PREFIX_LENGTH.test(prefixText) ? Number(prefixText) : Number.NaN;
  if (!(prefix <= maxPrefix)) return undefined;
  // An IPv4 prefix counts from bit 96 of its IPv4-mapped form.
  const mask = prefixMask(prefix + (128 - maxPrefix));
  return { network: words.map((word, index) => (word & (mask[index] as number)) >>> 0), mask };
}

const NOBODY_TRUSTED: TrustedProxies = { isTrusted: () => false };

export function compileTrustedProxies(cidrs: readonly string[]): TrustedProxies {
  const ranges: AddressRange[] = cidrs.map((cidr) => {
    const range = parseCidr(cidr);
    if (range === undefined) throw new Error(`trusted proxy "${cidr}" is not an IP address or CIDR`);
    return range;
  });
  if (ranges.length === 0) return NOBODY_TRUSTED;
  return {
    isTrusted(ip) {
      const words = parseAddress(ip, scratchWords);
      if (words === undefined) return false;
      return ranges.some(({ network, mask }) => {
        for (let index = 0; index < 4; index++) {
          if (((words[index] as number) & (mask[index] as number)) >>> 0 !== network[index]) return false;
        }
        return true;
      });
    },
  };
}

function prefixMask(prefix: number): Uint32Array {
  const mask = new Uint32Array(4);
  for (let index = 0; index < 4; index++) {
    const bits = Math.min(32, Math.max(0, prefix - index * 32));
    mask[index] = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  }
  return mask;
}

/** `ip` as four 32-bit words written into `out`, or undefined when it is not an IPv4 or IPv6 address. */
function parseAddress(ip: string, out: Uint32Array): Uint32Array | undefined {
  const family = isIP(ip);
  if (family === 0) return undefined;
  if (family === 4) {
    out[0] = 0;
    out[1] = 0;
    out[2] = 0xffff;
    out[3] = parseIpv4(ip, 0, ip.length);
    return out;
  }
  const groups = parseIpv6Groups(ip, scratchGroups);
  for (let index = 0; index < 4; index++) {
    out[index] = (((groups[index * 2] as number) << 16) | (groups[index * 2 + 1] as number)) >>> 0;
  }
  return out;
}

/** A dotted quad already validated by isIP (no leading zeros, each part <= 255). */
function parseIpv4(text: string, start: number, end: number): number {
  let value = 0;
  let part = 0;
  for (let index = start; index < end; index++) {
    const code = text.charCodeAt(index);
    if (code === 0x2e) {
      value = value * 256 + part;
      part = 0;
    } else {
      part = part * 10 + (code - 0x30);
    }
  }
  return value * 256 + part;
}

function hexDigit(code: number): number {
  return code <= 0x39 ? code - 0x30 : (code | 0x20) - 0x61 + 10;
}

/** The eight groups of an IPv6 address already validated by isIP (`::` gap, embedded IPv4, zone id allowed). */
function parseIpv6Groups(text: string, out: Uint16Array): Uint16Array {
  const zone = text.indexOf('%');
  const end = zone < 0 ? text.length : zone;
  let count = 0;
  let gap = -1;
  let index = 0;
  if (text.charCodeAt(0) === 0x3a && text.charCodeAt(1) === 0x3a) {
    gap = 0;
    index = 2;
  }
  while (index < end) {
    let cursor = index;
    let value = 0;
    while (cursor < end && text.charCodeAt(cursor) !== 0x3a && text.charCodeAt(cursor) !== 0x2e) {
      value = value * 16 + hexDigit(text.charCodeAt(cursor));
      cursor++;
    }
    if (text.charCodeAt(cursor) === 0x2e) {
      const v4 = parseIpv4(text, index, end);
      out[count++] = v4 >>> 16;
      out[count++] = v4 & 0xffff;
      break;
    }
    out[count++] = value;
    if (cursor >= end) break;
    if (text.charCodeAt(cursor + 1) === 0x3a) {
      gap = count;
      index = cursor + 2;
    } else {
      index = cursor + 1;
    }
  }
  if (gap >= 0) {
    const tail = count - gap;
    out.copyWithin(8 - tail, gap, count);
    out.fill(0, gap, 8 - tail);
  }
  return out;
}

/** `::ffff:1.2.3.4` (a dual-stack socket's view of an IPv4 peer) as `1.2.3.4`, so one client has one key. */
export function canonicalIp(ip: string): string {
  const lower = ip.toLowerCase();
  return lower.startsWith(V4_MAPPED_PREFIX) && isIP(lower.slice(V4_MAPPED_PREFIX.length)) === 4
    ? lower.slice(V4_MAPPED_PREFIX.length)
    : lower;
}

/**
 * What an address-keyed rate limit counts: an IPv4 address as is, an IPv6 address by its /64, which one client (a
 * home, a phone, a server) usually holds whole and can pick any address from; also one spelling per address.
 */
export function rateLimitAddress(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  // An IPv4 client written as IPv6 (`::ffff:0:a.b.c.d`, NAT64's `64:ff9b::a.b.c.d`) is that IPv4 client, not one of
  // the many behind the same prefix.
  const lastColon = ip.lastIndexOf(':');
  if (ip.includes('.', lastColon)) return ip.slice(lastColon + 1);
  const elided = ip.indexOf('::');
  const groups = elided < 0 ? ip.split(':') : expandElided(ip.slice(0, elided), ip.slice(elided + 2));
  return `${groups.slice(0, 4).map((group) => Number.parseInt(group, 16).toString(16)).join(':')}::/64`;
}

/** The eight groups of an IPv6 address written with `::`. */
function expandElided(head: string, tail: string): string[] {
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  return [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
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
