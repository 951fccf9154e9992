import type { RequestContext } from '../../chain/kinds.js';
import { headerValue } from '../../http/headers.js';
import { normalizeTarget } from '../../http/target.js';

const DEFAULT_PORT = { http: ':80', https: ':443' } as const;

/**
 * The `htu` a proof must carry for a request (RFC 9449 §4.2): scheme and host as the client used them, and the
 * normalized path; no query, no fragment. The host is lower-cased and a default port dropped (RFC 3986 §6.2.3).
 */
export function dpopHtu(proto: 'http' | 'https', host: string, path: string): string {
  const lower = host.toLowerCase();
  const authority = lower.endsWith(DEFAULT_PORT[proto]) ? lower.slice(0, -DEFAULT_PORT[proto].length) : lower;
  return `${proto}://${authority}${path}`;
}

/**
 * The last of a comma-separated list: what the trusted peer itself added. Earlier entries were passed through
 * from further out, maybe from the client, and a client must not choose the URI its proof is checked against.
 */
function lastListed(value: string | string[] | undefined): string | undefined {
  const text = headerValue(value);
  if (text === undefined) return undefined;
  const last = text.slice(text.lastIndexOf(',') + 1).trim();
  return last === '' ? undefined : last;
}

function protoOf(value: string | undefined): 'http' | 'https' | undefined {
  const lower = value?.toLowerCase();
  return lower === 'https' || lower === 'http' ? lower : undefined;
}

/**
 * The URI the client used for this request. Behind a trusted proxy the proxy's `X-Forwarded-Proto`, `-Host` and
 * `-Uri` say it (the URI is normalized as a request target is); a forward-auth check has read the original request
 * from its proxy's headers already. Undefined when a forwarded URI is no valid target: no proof can match it.
 */
export function requestHtu(ctx: RequestContext): string | undefined {
  if (ctx.transport === 'forward_auth' || !ctx.trustedPeer) return dpopHtu(ctx.proto, ctx.host, ctx.path);
  const { headers } = ctx;
  const proto = protoOf(lastListed(headers['x-forwarded-proto'])) ?? ctx.proto;
  const host = lastListed(headers['x-forwarded-host']) ?? ctx.host;
  const uri = headerValue(headers['x-forwarded-uri']);
  if (uri === undefined) return dpopHtu(proto, host, ctx.path);
  const target = normalizeTarget(uri);
  return target.ok ? dpopHtu(proto, host, target.path) : undefined;
}

/**
 * `scheme://authority[/path][?query][#fragment]`, split without WHATWG URL's own repairs (backslashes, tabs). The
 * path starts at the first `/`, so there is one way to split any text: no backtracking on a long refused one.
 */
const HTU = /^(https?):\/\/([^/?#@\\\s]+)((?:\/[^?#]*)?)(?:[?#][^\s]*)?$/i;

/**
 * Whether a proof's `htu` names `expected` (built by `dpopHtu`). The exact string is the common case and costs no
 * parsing; otherwise the proof's URI is split by hand, its scheme and host compared as `dpopHtu` writes them and
 * its path normalized as a request target is, query and fragment left out (RFC 9449 §4.3 step 9).
 */
export function htuMatches(htu: string, expected: string): boolean {
  if (htu === expected) return true;
  const parts = HTU.exec(htu);
  if (parts === null) return false;
  const proto = (parts[1] as string).toLowerCase() as 'http' | 'https';
  const path = normalizeTarget(parts[3] === '' ? '/' : (parts[3] as string));
  return path.ok && dpopHtu(proto, parts[2] as string, path.path) === expected;
}
