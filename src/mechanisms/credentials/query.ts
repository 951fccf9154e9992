import type { Found, FinderType, SourceFinder } from '../../chain/kinds.js';
import type { TokenSource } from '../../config/types.js';
import { holding, invalid, NONE } from './found.js';

/** With no query source configured, still watched (RFC 6750 §2.3's name): refused on protected routes, removed on all. */
const DEFAULT_QUERY_PARAMETER = 'access_token';

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

/**
 * A parameter name as the frameworks an upstream may run fold it: without case (ASP.NET); leading spaces skipped,
 * cut at a NUL, `.`, ` ` and `[` read as `_` (PHP); a trailing `[]` dropped (array parameters). Removing what
 * folds to a token name removes a little too much at worst; keeping it would hand an upstream a token nobody verified.
 */
function foldedName(name: string): string {
  const nul = name.indexOf('\0');
  const cut = nul < 0 ? name : name.slice(0, nul);
  return cut.trimStart().toLowerCase().replace(/\[\]$/, '').replace(/[. [\]]/g, '_');
}

/**
 * `query` without any pair whose name folds to one of `folded` (names already folded), the others kept byte for
 * byte; `?…` or empty. Some frameworks split pairs on `;` as well as `&`, so each `;`-part is a pair of its own:
 * `a=1;access_token=t` keeps `a=1`.
 */
function withoutQueryParameters(query: string, folded: readonly string[]): string {
  const kept: string[] = [];
  scanQuery(query, (start, _equals, end) => {
    const parts = query.slice(start, end).split(';');
    const keptParts = parts.filter((part) => !namesOneOf(part, folded));
    if (keptParts.length === parts.length) kept.push(query.slice(start, end));
    else if (keptParts.some((part) => part !== '')) kept.push(keptParts.join(';'));
    return true;
  });
  return kept.length > 0 ? `?${kept.join('&')}` : '';
}

/** Whether the pair `part` is named, once decoded and folded, one of `folded`. */
function namesOneOf(part: string, folded: readonly string[]): boolean {
  const name = decodeQueryComponent(part.split('=', 1)[0] as string);
  return name !== undefined && folded.includes(foldedName(name));
}

/** Whether a raw query may hold parameter `name` in some spelling: a cheap test before any scanning. */
function mayHoldParameter(query: string, name: string): boolean {
  return query.length > 1 && (query.includes(name) || query.includes('%'));
}

/**
 * The same for the spellings an upstream framework may fold to a name: what they all share is the name's start up
 * to the first character a framework folds, in any case. A test compiled once, run without copying the query.
 */
function foldedSpellingTest(name: string): (query: string) => boolean {
  const stem = new RegExp((foldedName(name).split('_', 1)[0] as string).replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i');
  return (query) => query.length > 1 && (query.includes('%') || stem.test(query));
}

/**
 * Compiles what the upstream's query string loses: the token parameters, in every spelling and every copy, on
 * every route (`auth: none` too), unless `identity.forward_token` keeps them like the other token places.
 */
export function compileTokenQueryStripper(sources: readonly TokenSource[], forwardToken: boolean): (query: string) => string {
  if (forwardToken) return (query) => query;
  const names = watchedQueryNames(sources);
  const folded = names.map(foldedName);
  const mayHold = names.map(foldedSpellingTest);
  return (query) => (mayHold.some((test) => test(query)) ? withoutQueryParameters(query, folded) : query);
}

/** The configured query parameters, else RFC 6750 §2.3's `access_token`: each is kept from the upstream. */
function watchedQueryNames(sources: readonly TokenSource[]): readonly string[] {
  const configured = sources.filter((source) => source.kind === 'query').map((source) => source.name);
  return configured.length > 0 ? configured : [DEFAULT_QUERY_PARAMETER];
}

/**
 * A token in the query is honoured only on a WebSocket upgrade (browsers cannot set headers on one) and only
 * where a query source is configured; anywhere else it is refused (400) rather than ignored, since an upstream
 * might still read it.
 */
function queryFinder(source: TokenSource, enabled: boolean): SourceFinder {
  return {
    source,
    find(_headersDistinct, query, isUpgrade): Found {
      if (!mayHoldParameter(query, source.name)) return NONE;
      const found = fromQuery(query, source.name);
      if (!found.ok || found.value === undefined) return found;
      if (!enabled) return invalid('query_token_not_enabled');
      return isUpgrade ? found : invalid('query_token_not_upgrade');
    },
  };
}

/** The registry's `query`: a token in a query parameter, on WebSocket upgrades. */
export const query: FinderType = {
  compile: (source) => queryFinder(source, true),
};

/** Without any query source, `access_token` in the query is still looked for, and refused where found. */
export const UNCONFIGURED_QUERY: SourceFinder = queryFinder({ kind: 'query', name: DEFAULT_QUERY_PARAMETER }, false);
