/**
 * Host matching for `server.allowed_hosts` and `match.host`.
 *
 * Patterns are exact hosts or `*.suffix`. Like nginx `server_name` and Envoy virtual-host domains, `*.example.com`
 * matches one or more labels (`a.example.com`, `a.b.example.com`) but not `example.com` itself.
 *
 * The request's Host is compared case-insensitively, without its `:port` and without a trailing root dot
 * (`api.example.com.` is the same name as `api.example.com`; letting it differ would let a client step past a
 * host-specific route onto a later, weaker one).
 */

export type HostPredicate = (normalizedHost: string) => boolean;

const PORT_DIGITS_MAX = 5;
const PORT_MAX = 65535;

function isNameChar(code: number): boolean {
  return (
    (code >= 0x61 && code <= 0x7a) ||
    (code >= 0x30 && code <= 0x39) ||
    code === 0x2d ||
    code === 0x2e ||
    code === 0x5f ||
    (code >= 0x41 && code <= 0x5a)
  );
}

function isIpv6LiteralChar(code: number): boolean {
  return (
    (code >= 0x30 && code <= 0x39) ||
    (code >= 0x61 && code <= 0x66) ||
    (code >= 0x41 && code <= 0x46) ||
    code === 0x3a ||
    code === 0x2e
  );
}

/** 1–65535 in decimal digits: `:`, `:0`, `:99999` or `:@other.host` name no port a client could have connected to. */
function isValidPort(host: string, colon: number): boolean {
  const digits = host.length - colon - 1;
  if (digits < 1 || digits > PORT_DIGITS_MAX) return false;
  let port = 0;
  for (let index = colon + 1; index < host.length; index++) {
    const code = host.charCodeAt(index);
    if (code < 0x30 || code > 0x39) return false;
    port = port * 10 + code - 0x30;
  }
  return port >= 1 && port <= PORT_MAX;
}

/**
 * The Host header as a lower-case name without port or trailing dot; undefined when it is not a host name or
 * bracketed IPv6 literal (optionally with a port). Anything else (`evil.com/x`, `a@b`, spaces) matches no pattern.
 */
export function normalizeHost(host: string): string | undefined {
  let nameEnd = host.length;
  let portColon = -1;
  if (host.charCodeAt(0) === 0x5b) {
    const close = host.indexOf(']');
    if (close < 2) return undefined;
    for (let index = 1; index < close; index++) if (!isIpv6LiteralChar(host.charCodeAt(index))) return undefined;
    nameEnd = close + 1;
    if (nameEnd < host.length) {
      if (host.charCodeAt(nameEnd) !== 0x3a) return undefined;
      portColon = nameEnd;
    }
  } else {
    for (let index = 0; index < host.length; index++) {
      const code = host.charCodeAt(index);
      if (code === 0x3a) {
        nameEnd = portColon = index;
        break;
      }
      if (!isNameChar(code)) return undefined;
      // An empty label (`.a`, `a..b`, `a..`) names nothing a client could have resolved.
      if (code === 0x2e && (index === 0 || host.charCodeAt(index - 1) === 0x2e)) return undefined;
    }
    if (nameEnd > 0 && host.charCodeAt(nameEnd - 1) === 0x2e) nameEnd--;
    if (nameEnd === 0) return undefined;
  }
  if (portColon >= 0 && !isValidPort(host, portColon)) return undefined;
  return (nameEnd === host.length ? host : host.slice(0, nameEnd)).toLowerCase();
}

/** Config patterns are lower-cased already; the root dot is dropped as on requests. */
function canonicalPattern(pattern: string): string {
  const lower = pattern.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** A pattern as a predicate over normalized hosts. Compiled once per config. */
export function compileHostPattern(pattern: string): HostPredicate {
  const canonical = canonicalPattern(pattern);
  if (canonical.startsWith('*.')) {
    const suffix = canonical.slice(1);
    return (host) => host.length > suffix.length && host.endsWith(suffix);
  }
  return (host) => host === canonical;
}

export function compileHostMatcher(patterns: readonly string[]): (host: string) => boolean {
  const exact = new Set<string>();
  const wildcards: HostPredicate[] = [];
  for (const pattern of patterns) {
    if (pattern.startsWith('*.')) wildcards.push(compileHostPattern(pattern));
    else exact.add(canonicalPattern(pattern));
  }
  return (host) => {
    const name = normalizeHost(host);
    if (name === undefined) return false;
    if (exact.has(name)) return true;
    for (const matches of wildcards) if (matches(name)) return true;
    return false;
  };
}
