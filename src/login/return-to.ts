/**
 * Where a browser may be sent after signing in or out. The decision is made on the URL as a browser would parse
 * it (WHATWG URL), never on the string: a browser resolves `/\host`, `https:host` or a path with a tab in it
 * differently from what a pattern on the text expects. Anything not provably same-origin or listed returns to `/`.
 */
import type { AllowedRedirect } from '../config/login.js';

export interface RedirectPolicy {
  /** The gateway's own origin as browsers reach it (from `login.external_url`). */
  readonly origin: string;
  readonly allowed: readonly AllowedRedirect[];
}

const FALLBACK = '/';
/** Longer return-to values are not worth keeping in a pre-login record. */
const MAX_LENGTH = 2048;

/** The place to send the browser: a same-origin path (relative), a listed absolute URL, or `/`. */
export function safeReturnTo(raw: string | undefined, policy: RedirectPolicy): string {
  if (raw === undefined || raw.length === 0 || raw.length > MAX_LENGTH || hasControlOrSpace(raw)) return FALLBACK;
  if (raw.startsWith('/')) return samePath(raw, policy.origin);
  const url = parseAbsolute(raw);
  if (url === undefined || url.username !== '' || url.password !== '') return FALLBACK;
  if (url.origin === policy.origin) return samePath(url.pathname + url.search + url.hash, policy.origin);
  return policy.allowed.some((entry) => allows(entry, url)) ? url.href : FALLBACK;
}

/**
 * A path on the gateway's origin, re-serialized by the URL parser. Refused when the browser (or an upstream
 * decoding `%2F`) could read it as another host: `//host`, `/\host`, `/%2F%2Fhost`, `/.//host`.
 */
function samePath(raw: string, origin: string): string {
  if (raw.startsWith('//') || raw.startsWith('/\\')) return FALLBACK;
  let url: URL;
  try {
    url = new URL(raw, origin);
  } catch {
    return FALLBACK;
  }
  if (url.origin !== origin) return FALLBACK;
  if (looksLikeAuthority(url.pathname)) return FALLBACK;
  return url.pathname + url.search + url.hash;
}

function looksLikeAuthority(pathname: string): boolean {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return true;
  }
  return decoded.startsWith('//') || decoded.startsWith('/\\') || decoded.includes('\\');
}

function parseAbsolute(raw: string): URL | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return undefined;
  }
  return url.protocol === 'https:' || url.protocol === 'http:' ? url : undefined;
}

function allows(entry: AllowedRedirect, url: URL): boolean {
  if (entry.kind === 'origin') return url.origin === entry.origin;
  // The host must have at least one label before the suffix: `*.example.com` is not `example.com` nor `evilexample.com`.
  return url.protocol === entry.protocol && url.port === entry.port && url.hostname.length > entry.suffix.length
    && url.hostname.endsWith(entry.suffix);
}

/** C0 controls, space and DEL: the URL parser silently drops tab/CR/LF and trims spaces, so they never pass. */
function hasControlOrSpace(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code <= 0x20 || code === 0x7f) return true;
  }
  return false;
}
