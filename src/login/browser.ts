import type { IncomingHttpHeaders } from 'node:http';
import { originOfUrl } from '../http/url.js';

/**
 * Which requests come from a person's browser, and which unsafe requests a session may carry. Pure functions of
 * the request headers, so the chain can ask them without I/O.
 */

/**
 * A top-level navigation: only these are sent to sign in (302). A script's fetch/XHR gets the 401 instead, never a
 * redirect it could follow to the IdP. `Sec-Fetch-Mode` decides when the browser sends it; older browsers are
 * recognized by an Accept that ranks text/html first (a script's default Accept is `*\/*`).
 */
export function isNavigation(method: string, headers: IncomingHttpHeaders): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  if (headers['x-requested-with'] !== undefined) return false;
  const mode = headers['sec-fetch-mode'];
  if (mode !== undefined) return mode === 'navigate';
  const accept = headers.accept;
  return accept !== undefined && prefersHtml(accept);
}

/** text/html is listed by name with a q above 0, and nothing else has a higher q. */
export function prefersHtml(accept: string): boolean {
  let html = 0;
  let best = 0;
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';');
    const q = qualityOf(params);
    const name = type.trim().toLowerCase();
    if (name === 'text/html') html = Math.max(html, q);
    else best = Math.max(best, q);
  }
  return html > 0 && html >= best;
}

function qualityOf(params: readonly string[]): number {
  for (const param of params) {
    const [key = '', value = ''] = param.split('=');
    if (key.trim().toLowerCase() !== 'q') continue;
    const q = Number(value.trim());
    return Number.isFinite(q) && q >= 0 && q <= 1 ? q : 0;
  }
  return 1;
}

const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * A session rides on a cookie the browser adds to any site's request, so an unsafe method must show where it came
 * from: its `Origin` (or, without one, its `Referer`) is the gateway's own origin or a configured CORS origin.
 * `trustedOrigins` is built once per config; `Origin: null` (sandboxed frames, some redirects) is refused.
 */
export function passesCsrfCheck(method: string, headers: IncomingHttpHeaders, trustedOrigins: ReadonlySet<string>): boolean {
  if (SAFE_METHODS.has(method)) return true;
  const origin = headers.origin;
  if (origin !== undefined) return trustedOrigins.has(origin);
  const referer = headers.referer;
  if (referer === undefined) return false;
  return trustedOrigins.has(originOfUrl(referer));
}

/** The origins an unsafe session request may come from: the gateway's and the CORS ones (never `*`). */
export function trustedOrigins(externalOrigin: string, corsOrigins: readonly string[]): ReadonlySet<string> {
  return new Set([externalOrigin, ...corsOrigins.filter((origin) => origin !== '*' && origin !== 'null')]);
}
