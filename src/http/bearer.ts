/** RFC 6750 bearer-token syntax, shared by the credential finders, the config reader and the admin API. */

/** Longest token accepted (SPEC §4: 8 KiB), checked before any decoding. */
export const MAX_TOKEN_LENGTH = 8192;

/** RFC 6750 §2.1: `Bearer` 1*SP b64token, nothing after. Node already trims the header value's outer whitespace. */
const BEARER_CREDENTIALS = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i;
/** The scheme is `Bearer` when the next character cannot continue an RFC 9110 token (so `Bearerx` is another scheme). */
const BEARER_SCHEME = /^bearer(?![!#$%&'*+\-.^_`|~0-9a-z])/i;
/** A bare token in a custom header: b64token only. */
const BARE_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** The Authorization value names the Bearer scheme (whatever follows it). */
export function hasBearerScheme(authorization: string): boolean {
  return BEARER_SCHEME.test(authorization);
}

/** The token of RFC 6750 §2.1 `Bearer` credentials; undefined for another scheme or bad syntax. */
export function bearerToken(authorization: string): string | undefined {
  return BEARER_CREDENTIALS.exec(authorization)?.[1];
}

/** RFC 6750 b64token: the characters a bearer token may consist of. */
export function isB64token(text: string): boolean {
  return BARE_TOKEN.test(text);
}
