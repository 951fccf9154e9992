import type { TokenSource } from '../../config/types.js';
import type { CredentialFinder, CredentialSearch } from '../../chain/kinds.js';
import { bearerToken, hasBearerScheme, isB64token, MAX_TOKEN_LENGTH } from '../../http/bearer.js';

/**
 * Finding the access token in a request (SPEC §4, RFC 6750 §2). Pure: headers and query in, a decision out.
 *
 * The rule that matters for security is "at most one token": when a request carries credentials in two places,
 * the gateway and the upstream could each pick a different one, so the request is refused instead of guessing.
 * No credentials at all includes a non-Bearer scheme such as `Authorization: Basic …`.
 */
/** With no query source configured, still watched (RFC 6750 §2.3's name): refused on protected routes, removed on all. */
const DEFAULT_QUERY_PARAMETER = 'access_token';

/** What one source holds: nothing (`value` undefined), one token, or a reason to refuse the request. */
type Found = { readonly ok: true; readonly value: string | undefined } | { readonly ok: false; readonly reason: string };

const NONE: Found = Object.freeze({ ok: true, value: undefined });
const NOTHING_FOUND: CredentialSearch = Object.freeze({ ok: true, credential: undefined });
const TOO_LONG: CredentialSearch = Object.freeze({ ok: false, reason: 'token_too_long' });

function invalid(reason: string): { readonly ok: false; readonly reason: string } {
  return { ok: false, reason };
}

function holding(value: string): Found {
  return { ok: true, value };
}

/** RFC 6750 §2.1 credentials. A scheme other than Bearer means "no token here". */
function fromAuthorization(value: string): Found {
  if (!hasBearerScheme(value)) return NONE;
  const token = bearerToken(value);
  if (token === undefined) return invalid('malformed_bearer');
  return holding(token);
}

/** A custom header carries the token itself, without a scheme (Envoy `from_headers` without a prefix). */
function fromBareHeader(value: string): Found {
  if (value === '') return NONE;
  if (!isB64token(value)) return invalid('malformed_token_header');
  return holding(value);
}

function fromHeader(lines: string[] | undefined, isAuthorization: boolean): Found {
  if (lines === undefined || lines.length === 0) return NONE;
  if (lines.length > 1) return invalid(isAuthorization ? 'multiple_authorization_headers' : 'multiple_token_headers');
  const value = lines[0] as string;
  return isAuthorization ? fromAuthorization(value) : fromBareHeader(value);
}

/**
 * The value of cookie `name` across every Cookie header line, scanning in place (no split/array per request).
 * Two cookies of that name are refused: browsers send both when paths differ and servers disagree on which wins.
 */
function fromCookies(lines: string[] | undefined, name: string): Found {
  if (lines === undefined) return NONE;
  let found: string | undefined;
  for (const line of lines) {
    let start = 0;
    while (start < line.length) {
      let end = line.indexOf(';', start);
      if (end === -1) end = line.length;
      const equals = line.indexOf('=', start);
      if (equals !== -1 && equals < end && line.slice(start, equals).trim() === name) {
        if (found !== undefined) return invalid('multiple_token_cookies');
        found = line.slice(equals + 1, end).trim();
      }
      start = end + 1;
    }
  }
  // An empty value is how a browser "deletes" a cookie: treat it as absent.
  if (found === undefined || found === '') return NONE;
  return holding(found);
}

function decodeQueryComponent(text: string): string | undefined {
  if (!text.includes('%') && !text.includes('+')) return text;
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

/**
 * Visits the `name=value` pairs of a raw query string (with or without the leading `?`): `visit` gets the bounds of
 * each pair (`equals` is `end` when the pair has no `=`) and returns false to stop.
 */
function scanQuery(query: string, visit: (start: number, equals: number, end: number) => boolean): void {
  let start = query.startsWith('?') ? 1 : 0;
  while (start < query.length) {
    let end = query.indexOf('&', start);
    if (end === -1) end = query.length;
    let equals = query.indexOf('=', start);
    if (equals === -1 || equals > end) equals = end;
    if (!visit(start, equals, end)) return;
    start = end + 1;
  }
}

/**
 * A pair's name percent-decoded: an upstream decodes `access%5Ftoken` and `%61ccess_token` to `access_token`, so
 * the gateway must read (and remove) them under that name too. Undefined when the name does not decode.
 */
function parameterName(query: string, start: number, equals: number): string | undefined {
  return decodeQueryComponent(query.slice(start, equals));
}

/** Every value of parameter `name` in a raw query string; names are decoded first. */
function fromQuery(query: string, name: string): Found {
  let found: Found = NONE;
  scanQuery(query, (start, equals, end) => {
    if (parameterName(query, start, equals) !== name) return true;
    if (found.ok && found.value !== undefined) {
      found = invalid('multiple_query_tokens');
      return false;
    }
    const value = decodeQueryComponent(query.slice(Math.min(equals + 1, end), end));
    found = value === undefined ? invalid('malformed_query_token') : holding(value);
    return value !== undefined;
  });
  return found;
}

/** `query` without any pair named one of `names` in any spelling, the others kept byte for byte; `?…` or empty. */
function withoutQueryParameters(query: string, names: readonly string[]): string {
  const kept: string[] = [];
  scanQuery(query, (start, equals, end) => {
    const name = parameterName(query, start, equals);
    if (name === undefined || !names.includes(name)) kept.push(query.slice(start, end));
    return true;
  });
  return kept.length > 0 ? `?${kept.join('&')}` : '';
}

/** Whether a raw query may hold parameter `name` in some spelling: a cheap test before any scanning. */
function mayHoldParameter(query: string, name: string): boolean {
  return query.length > 1 && (query.includes(name) || query.includes('%'));
}

/** A query parameter that may carry a token; `source` undefined: none is configured, so one found is refused. */
interface QueryWatch {
  readonly name: string;
  readonly source: TokenSource | undefined;
}

/** The configured query sources, else RFC 6750 §2.3's `access_token`, watched so that it can be refused. */
function queryWatches(sources: readonly TokenSource[]): readonly QueryWatch[] {
  const configured = sources.filter((source) => source.kind === 'query').map((source) => ({ name: source.name, source }));
  return configured.length > 0 ? configured : [{ name: DEFAULT_QUERY_PARAMETER, source: undefined }];
}

/** The one token the query carries, if any, or why the request is refused. */
function fromQuerySources(query: string, watches: readonly QueryWatch[], isUpgrade: boolean): QueryFound {
  let token: QueryFound = NO_QUERY_TOKEN;
  for (const watch of watches) {
    if (!mayHoldParameter(query, watch.name)) continue;
    const found = fromQuery(query, watch.name);
    if (!found.ok) return found;
    if (found.value === undefined) continue;
    if (watch.source === undefined) return invalid('query_token_not_enabled');
    if (!isUpgrade) return invalid('query_token_not_upgrade');
    if (token.ok && token.value !== undefined) return invalid('multiple_query_tokens');
    token = { ok: true, value: found.value, source: watch.source };
  }
  return token;
}

/** A query token and the source it was configured by. */
type QueryFound =
  | { readonly ok: true; readonly value: string; readonly source: TokenSource }
  | { readonly ok: true; readonly value: undefined; readonly source: undefined }
  | { readonly ok: false; readonly reason: string };

const NO_QUERY_TOKEN: QueryFound = Object.freeze({ ok: true, value: undefined, source: undefined });

/**
 * Compiles what the upstream's query string loses: the token parameters, in every spelling and every copy, on
 * every route (`auth: none` too), unless `identity.forward_token` keeps them like the other token places.
 */
export function compileTokenQueryStripper(sources: readonly TokenSource[], forwardToken: boolean): (query: string) => string {
  if (forwardToken) return (query) => query;
  const names = queryWatches(sources).map((watch) => watch.name);
  return (query) => (names.some((name) => mayHoldParameter(query, name)) ? withoutQueryParameters(query, names) : query);
}

interface CompiledSource {
  readonly source: TokenSource;
  /** Lower-cased header name, or the cookie/query name as configured. */
  readonly key: string;
  readonly isAuthorization: boolean;
}

/**
 * Compiles the `tokens:` list once per config. The returned function is the per-request hot path.
 *
 * A query-string token is honoured only on WebSocket upgrades and only when a query source is configured; any other
 * query token is refused (400) rather than ignored, since an upstream might still read it. With no query source,
 * `access_token` in the query is refused the same way.
 */
export function compileTokenExtractor(sources: readonly TokenSource[]): CredentialFinder {
  const compiled: CompiledSource[] = sources.map((source) => {
    const key = source.kind === 'header' ? source.name.toLowerCase() : source.name;
    return { source, key, isAuthorization: source.kind === 'header' && key === 'authorization' };
  });
  const watches = queryWatches(sources);
  const others = compiled.filter((entry) => entry.source.kind !== 'query');

  return (headersDistinct, query, isUpgrade) => {
    let token: string | undefined;
    let tokenSource: TokenSource | undefined;

    for (const entry of others) {
      const found =
        entry.source.kind === 'header'
          ? fromHeader(headersDistinct[entry.key], entry.isAuthorization)
          : fromCookies(headersDistinct.cookie, entry.key);
      if (!found.ok) return found;
      if (found.value === undefined) continue;
      if (token !== undefined) return invalid('multiple_token_sources');
      token = found.value;
      tokenSource = entry.source;
    }

    const inQuery = fromQuerySources(query, watches, isUpgrade);
    if (!inQuery.ok) return inQuery;
    if (inQuery.value !== undefined) {
      if (token !== undefined) return invalid('multiple_token_sources');
      if (!isB64token(inQuery.value)) return invalid('malformed_query_token');
      token = inQuery.value;
      tokenSource = inQuery.source;
    }

    if (token === undefined || tokenSource === undefined) return NOTHING_FOUND;
    if (token.length > MAX_TOKEN_LENGTH) return TOO_LONG;
    return { ok: true, credential: { scheme: 'bearer', value: token, source: tokenSource } };
  };
}
