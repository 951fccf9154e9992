const DEFAULT_PORT = { http: ':80', https: ':443' } as const;

/**
 * The `htu` a proof must carry for a request (RFC 9449 §4.2): scheme and host as the client used them (behind a
 * trusted proxy, from its forwarded headers), and the normalized path; no query, no fragment. The host is
 * lower-cased and a default port dropped, as URL parsing does to the proof's side.
 */
export function dpopHtu(proto: 'http' | 'https', host: string, path: string): string {
  const lower = host.toLowerCase();
  const authority = lower.endsWith(DEFAULT_PORT[proto]) ? lower.slice(0, -DEFAULT_PORT[proto].length) : lower;
  return `${proto}://${authority}${path}`;
}

/**
 * Whether a proof's `htu` names `expected` (built by `dpopHtu`). The exact string is the common case and costs no
 * parsing; otherwise the proof's URI is parsed and compared without its query and fragment.
 */
export function htuMatches(htu: string, expected: string): boolean {
  if (htu === expected) return true;
  if (!URL.canParse(htu)) return false;
  const url = new URL(htu);
  return `${url.protocol}//${url.host}${url.pathname}` === expected;
}
