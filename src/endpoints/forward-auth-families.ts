import { METHODS, type IncomingHttpHeaders } from 'node:http';
import type { RequestContext } from '../chain/kinds.js';
import type { ForwardAuthFamily } from '../config/types.js';
import { headerValue } from '../http/headers.js';
import { normalizeHost } from '../routing/hosts.js';
import { Errors, type GatewayError } from '../http/responses.js';
import { invalidRequest } from '../mechanisms/errors/bearer.js';

/**
 * How each proxy family describes the request it asks about. A proxy passes the client's own headers through to
 * the auth endpoint and sets only its own few, so a header of another family is the client's word: each family
 * reads exactly the headers its proxy sets and nothing else.
 */
export type ProxyFamily = Exclude<ForwardAuthFamily, 'off'>;

/** The parts of the original request the proxy described; undefined where its header was missing. */
interface Described {
  readonly method: string | undefined;
  readonly target: string | undefined;
  readonly host: string | undefined;
  readonly proto: 'http' | 'https' | undefined;
  /** The host the proxy routed on, when it says so apart from `host` (ingress-nginx: `?host=$host` on auth-url). */
  readonly routedHost?: string | undefined;
}

export type OriginalReading =
  | { readonly ok: true; readonly original: Pick<RequestContext, 'method' | 'target' | 'host' | 'proto'> }
  | { readonly ok: false; readonly error: GatewayError; readonly reason: string };

const one = (headers: IncomingHttpHeaders, name: string): string | undefined => headerValue(headers[name]);
const protoOf = (scheme: string | undefined): 'http' | 'https' | undefined =>
  scheme === undefined ? undefined : scheme.toLowerCase() === 'https' ? 'https' : 'http';

const DESCRIBERS: Readonly<Record<ProxyFamily, (facts: RequestContext, envoyTarget: string | undefined) => Described>> = {
  // nginx auth_request: the configuration sets X-Original-URI/-Method (and the host, or passes Host on; the scheme,
  // which a DPoP proof names, or else the check's own).
  nginx: ({ headers, proto }) => ({
    method: one(headers, 'x-original-method'),
    target: one(headers, 'x-original-uri'),
    host: one(headers, 'x-original-host') ?? one(headers, 'host'),
    proto: protoOf(one(headers, 'x-original-proto')) ?? proto,
  }),
  // ingress-nginx auth-url: X-Original-URL is `$scheme://$http_host$request_uri`, X-Original-Method the method. Its
  // host is the Host header's, while nginx routes on the request line's host when the client sends an absolute
  // URL: an auth-url ending in `?host=$host` tells which one nginx took.
  'ingress-nginx': ({ headers, target }) => {
    const url = splitOriginalUrl(one(headers, 'x-original-url'));
    const routedHost = queryParameter(target, 'host');
    return { method: one(headers, 'x-original-method'), target: url?.target, host: url?.host, proto: protoOf(url?.scheme), routedHost };
  },
  // Traefik ForwardAuth sets all four X-Forwarded-* headers on every check.
  traefik: ({ headers }) => ({
    method: one(headers, 'x-forwarded-method'),
    target: one(headers, 'x-forwarded-uri'),
    host: one(headers, 'x-forwarded-host'),
    proto: protoOf(one(headers, 'x-forwarded-proto')),
  }),
  // Envoy ext_authz (HTTP service) repeats the original request: its method, its authority, prefix + its path, and
  // the X-Forwarded-Proto Envoy set for the client's connection (the check's own connection may be plain HTTP).
  envoy: ({ method, host, proto, headers }, envoyTarget) => ({
    method,
    target: envoyTarget,
    host: host === '' ? undefined : host,
    proto: protoOf(one(headers, 'x-forwarded-proto')) ?? proto,
  }),
};

const KNOWN_METHODS = new Set(METHODS);
const URI_MISSING = invalidRequest('The original request URI is missing');
const METHOD_MISSING = invalidRequest('The original request method is missing');
const HOST_MISSING = invalidRequest('The original request host is missing');
const SCHEME_MISSING = invalidRequest('The original request scheme is missing');

/**
 * The original request as `family` describes it. A missing header → 400; a method that is no HTTP method or a
 * host that is no host name (userinfo, `@`, an odd port) → 400 as for a bad target. The target itself is checked
 * by the chain's normalization, exactly as a proxied request's, but the proxy forwards it as the client sent it,
 * not normalized: one with a segment that normalizing would resolve or drop (`.`, `..`, `//`) → 400, for the app
 * could read `/admin/../public/x` as under `/admin/` where the decision was about `/public/x`.
 */
export function readOriginalRequest(family: ProxyFamily, facts: RequestContext, envoyTarget?: string): OriginalReading {
  const { method, target, host, proto, routedHost } = DESCRIBERS[family](facts, envoyTarget);
  if (target === undefined) return { ok: false, error: URI_MISSING, reason: 'no_original_uri' };
  if (method === undefined) return { ok: false, error: METHOD_MISSING, reason: 'no_original_method' };
  if (host === undefined) return { ok: false, error: HOST_MISSING, reason: 'no_original_host' };
  if (proto === undefined) return { ok: false, error: SCHEME_MISSING, reason: 'no_original_proto' };
  const upper = method.toUpperCase();
  if (!KNOWN_METHODS.has(upper)) return { ok: false, error: Errors.badTarget, reason: 'bad_original_method' };
  if (normalizeHost(host) === undefined) return { ok: false, error: Errors.badTarget, reason: 'bad_original_host' };
  if (routedHost !== undefined && normalizeHost(routedHost) !== normalizeHost(host)) {
    return { ok: false, error: Errors.badTarget, reason: 'original_host_mismatch' };
  }
  if (hasDotOrEmptySegment(target)) return { ok: false, error: Errors.badTarget, reason: 'unnormalized_original' };
  return { ok: true, original: { method: upper, target, host, proto } };
}

/** `http(s)://authority/target`: an authority up to the first `/`, then the origin-form target. */
const ORIGINAL_URL = /^(https?):\/\/([^/]*)(\/.*)$/is;

/**
 * X-Original-URL split by hand, not by WHATWG URL: URL would read `shop.example.com:@docs.example.com` as userinfo
 * and the host `docs.example.com`, and would resolve dot segments before the normalizer could refuse them. Here
 * the authority is everything before the first `/` and must pass as a Host header would; the target stays verbatim.
 * Undefined when the header is missing; an unsplittable URL yields an empty host, refused as a bad host.
 */
function splitOriginalUrl(url: string | undefined): { scheme: string; host: string; target: string } | undefined {
  if (url === undefined) return undefined;
  const parts = ORIGINAL_URL.exec(url);
  if (!parts) return { scheme: 'http', host: '', target: '/' };
  return { scheme: parts[1] as string, host: parts[2] as string, target: parts[3] as string };
}

/**
 * For Envoy: the original target inside a check request's raw target, which is `{prefix}/verify` + the original
 * path. Read from the raw target, before any normalization could fold a `..` of the original path into the
 * prefix. Undefined when the target does not start with the verify path. Runs on every request while `envoy` is
 * configured, so it compares in place instead of building strings.
 */
export function envoyOriginalTarget(rawTarget: string, reservedPrefix: string, folded: boolean): string | undefined {
  if (!startsWithAt(rawTarget, reservedPrefix, 0, folded) || !startsWithAt(rawTarget, VERIFY, reservedPrefix.length, folded)) {
    return undefined;
  }
  const restStart = reservedPrefix.length + VERIFY.length;
  if (restStart === rawTarget.length) return '/';
  const next = rawTarget.charCodeAt(restStart);
  if (next === QUESTION) return `/${rawTarget.slice(restStart)}`;
  return next === SLASH ? rawTarget.slice(restStart) : undefined;
}

/** `text` has `prefix` at `position`, ASCII letters compared without case when `folded`. */
function startsWithAt(text: string, prefix: string, position: number, folded: boolean): boolean {
  if (!folded) return text.startsWith(prefix, position);
  if (text.length < position + prefix.length) return false;
  for (let index = 0; index < prefix.length; index++) {
    if (asciiLower(text.charCodeAt(position + index)) !== asciiLower(prefix.charCodeAt(index))) return false;
  }
  return true;
}

function asciiLower(code: number): number {
  return code >= 0x41 && code <= 0x5a ? code + 0x20 : code;
}

const VERIFY = '/verify';
const SLASH = 0x2f;
const QUESTION = 0x3f;

/** Whether the path of `target` has a segment that is empty (but for a trailing one), `.` or `..`, escaped or not. */
function hasDotOrEmptySegment(target: string): boolean {
  const query = target.indexOf('?');
  const segments = (query < 0 ? target : target.slice(0, query)).split('/');
  for (let index = 1; index < segments.length; index++) {
    const segment = (segments[index] as string).replace(/%2e/gi, '.');
    if (segment === '.' || segment === '..' || (segment === '' && index < segments.length - 1)) return true;
  }
  return false;
}

/** One query parameter of a request target, decoded; undefined when absent, '' (no host) when given more than once. */
function queryParameter(target: string, name: string): string | undefined {
  const start = target.indexOf('?');
  if (start < 0) return undefined;
  const values = new URLSearchParams(target.slice(start + 1)).getAll(name);
  return values.length <= 1 ? values[0] : '';
}
