import type { CredentialFinder, CredentialSearch, FinderType, Found } from '../../chain/kinds.js';
import type { TokenSource } from '../../config/types.js';
import { isB64token, MAX_TOKEN_LENGTH } from '../../http/bearer.js';
import { cookie } from './cookie.js';
import { invalid } from './found.js';
import { header } from './header.js';
import { query, UNCONFIGURED_QUERY } from './query.js';

/**
 * Finding the access token in a request (SPEC §4, RFC 6750 §2). Pure: headers and query in, a decision out.
 *
 * The rule that matters for security is "at most one token": when a request carries credentials in two places,
 * the gateway and the upstream could each pick a different one, so the request is refused instead of guessing.
 * No credentials at all includes a scheme other than Bearer and DPoP, such as `Authorization: Basic …`.
 */

/** A finder for each kind of `tokens:` entry. */
export type CredentialFinders = { readonly [K in TokenSource['kind']]: FinderType };

const NOTHING_FOUND: CredentialSearch = Object.freeze({ ok: true, credential: undefined });
const TOO_LONG: CredentialSearch = Object.freeze({ ok: false, reason: 'token_too_long' });

/**
 * Compiles the `tokens:` list once per config. The returned function is the per-request hot path: the header and
 * cookie sources first, then the query ones. Two tokens in the query are `multiple_query_tokens`, a token there
 * beside one elsewhere `multiple_token_sources`.
 */
export function compileTokenExtractor(sources: readonly TokenSource[], finders: CredentialFinders = { header, cookie, query }): CredentialFinder {
  const others = sources.filter((source) => source.kind !== 'query').map((source) => finders[source.kind].compile(source));
  const queries = sources.filter((source) => source.kind === 'query').map((source) => finders.query.compile(source));
  const ordered = [...others, ...(queries.length > 0 ? queries : [UNCONFIGURED_QUERY])];

  return (headersDistinct, query, isUpgrade) => {
    let token: Extract<Found, { ok: true }> | undefined;
    let tokenSource: TokenSource | undefined;
    for (const finder of ordered) {
      const found = finder.find(headersDistinct, query, isUpgrade);
      if (!found.ok) return found;
      if (found.value === undefined) continue;
      const inQuery = finder.source.kind === 'query';
      if (token !== undefined) return invalid(inQuery && tokenSource?.kind === 'query' ? 'multiple_query_tokens' : 'multiple_token_sources');
      if (inQuery && !isB64token(found.value)) return invalid('malformed_query_token');
      token = found;
      tokenSource = finder.source;
    }
    const value = token?.value;
    if (value === undefined || tokenSource === undefined) return NOTHING_FOUND;
    if (value.length > MAX_TOKEN_LENGTH) return TOO_LONG;
    const proof = token?.proof;
    return { ok: true, credential: proof === undefined ? { scheme: 'bearer', value, source: tokenSource } : { scheme: 'dpop', value, proof, source: tokenSource } };
  };
}
