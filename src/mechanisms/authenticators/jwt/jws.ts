import { MAX_TOKEN_LENGTH } from '../../../http/bearer.js';
import { isPlainObject } from '../../../lib/json.js';

/**
 * Structural checks on a compact JWS before any key is touched (SPEC §4, RFC 8725). Everything here is cheap and
 * pure, and it runs before the signature check so that only a token in its one canonical spelling, with a header
 * we understand, is ever verified: base64url decoders (jose's too) accept `=` padding and spare-bit variants, which
 * would let one signed token have many spellings (and defeat any check keyed on the token text).
 */

/** Objects and arrays nested deeper than this are refused: no real access token comes close. */
export const MAX_PAYLOAD_DEPTH = 16;
/** Object members across the whole payload, at every level. */
export const MAX_PAYLOAD_MEMBERS = 512;

export type JwsFailure =
  | 'too_long'
  | 'malformed'
  | 'non_canonical'
  | 'invalid_utf8'
  | 'alg_none'
  | 'unsupported_header'
  | 'embedded_key'
  | 'bad_kid'
  | 'duplicate_claims'
  | 'too_complex';

export interface JoseHeader {
  readonly alg: string;
  readonly kid: string | undefined;
  readonly typ: string | undefined;
}

export type JwsParse =
  | { readonly ok: true; readonly header: JoseHeader; readonly payload: Record<string, unknown> }
  | { readonly ok: false; readonly reason: JwsFailure };

/** Three non-empty segments of the base64url alphabet, nothing else: refuses JWE, JSON serialization, padding, spaces. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Visible ASCII and space, bounded: a kid is only ever a map key here, but logs and metrics must stay sane. */
const SANE_KID = /^[\x20-\x7e]{1,256}$/;
/** Header parameters that carry or point at a key. A gateway takes keys from its configuration only. */
const EMBEDDED_KEY_PARAMETERS = ['jwk', 'jku', 'x5u', 'x5c'] as const;
/** `crit` and `b64` change how the token must be processed (RFC 7515 §4.1.11, RFC 7797); `enc`/`zip` mean JWE. */
const UNSUPPORTED_PARAMETERS = ['crit', 'b64', 'enc', 'zip'] as const;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function base64urlValue(code: number): number {
  if (code >= 65 && code <= 90) return code - 65; // A-Z
  if (code >= 97 && code <= 122) return code - 71; // a-z
  if (code >= 48 && code <= 57) return code + 4; // 0-9
  return code === 45 ? 62 : 63; // '-' or '_' (the alphabet was checked already)
}

/**
 * Whether `text[start, end)` (already known to be base64url characters) is the one canonical encoding of its bytes,
 * i.e. decoding and re-encoding gives it back: the length is not 1 mod 4, and the unused low bits of the last
 * character are zero. Same answer as a decode/re-encode round trip, without allocating.
 */
export function isCanonicalBase64url(text: string, start = 0, end = text.length): boolean {
  const length = end - start;
  if (length === 0) return true;
  const remainder = length % 4;
  if (remainder === 1) return false;
  if (remainder === 0) return true;
  const last = base64urlValue(text.charCodeAt(end - 1));
  return (last & (remainder === 2 ? 0x0f : 0x03)) === 0;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;

/**
 * One pass over JSON text that finds duplicate member names (at every level, comparing names after unescaping, so
 * `"sub"` and `"s\u0075b"` collide) and refuses pathological nesting or member counts before the real parse.
 * It does not validate JSON; `JSON.parse` does that afterwards.
 */
export function scanJsonMembers(json: string): 'ok' | 'duplicate_claims' | 'too_complex' | 'malformed' {
  // Read once: a `json.length` in the loops below is a property load per character in optimized code.
  const length = json.length;
  // Without a backslash anywhere no string holds an escape, and each one ends at the next quote.
  const escapes = json.indexOf('\\') >= 0;
  // One name set per open object; `undefined` marks an open array.
  const open: (Set<string> | undefined)[] = [];
  let expectName = false;
  let members = 0;
  for (let i = 0; i < length; i++) {
    const code = json.charCodeAt(i);
    if (code === QUOTE) {
      const start = i + 1;
      i = escapes ? closingQuote(json, start, length) : json.indexOf('"', start);
      if (i < 0) return 'malformed';
      if (!expectName) continue;
      expectName = false;
      let name: string;
      if (escapes) {
        try {
          name = JSON.parse(json.slice(start - 1, i + 1)) as string;
        } catch {
          return 'malformed';
        }
      } else {
        name = json.slice(start, i);
      }
      const names = open[open.length - 1];
      if (names === undefined) return 'malformed';
      if (names.has(name)) return 'duplicate_claims';
      names.add(name);
      if (++members > MAX_PAYLOAD_MEMBERS) return 'too_complex';
    } else if (code === OPEN_OBJECT || code === OPEN_ARRAY) {
      if (open.length >= MAX_PAYLOAD_DEPTH) return 'too_complex';
      const isObject = code === OPEN_OBJECT;
      open.push(isObject ? new Set<string>() : undefined);
      expectName = isObject;
    } else if (code === CLOSE_OBJECT || code === CLOSE_ARRAY) {
      if (open.pop() === undefined && code === CLOSE_OBJECT) return 'malformed';
      expectName = false;
    } else if (code === COMMA) {
      expectName = open.length > 0 && open[open.length - 1] !== undefined;
    }
  }
  return open.length === 0 ? 'ok' : 'malformed';
}

/** The quote that ends the string whose text starts at `start`, skipping escaped characters; -1 when none does. */
function closingQuote(json: string, start: number, length: number): number {
  let i = start;
  while (i < length) {
    const code = json.charCodeAt(i);
    if (code === QUOTE) return i;
    i += code === BACKSLASH ? 2 : 1;
  }
  return -1;
}

/** `token[start, end)` decoded from base64url as strict UTF-8, or undefined if it is not valid UTF-8. */
export function decodeSegment(token: string, start: number, end: number): string | undefined {
  try {
    return utf8.decode(Buffer.from(token.slice(start, end), 'base64url'));
  } catch {
    return undefined;
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function failure(reason: JwsFailure): JwsParse {
  return { ok: false, reason };
}

function checkHeader(header: Record<string, unknown>): JoseHeader | JwsFailure {
  const { alg, kid, typ } = header;
  if (typeof alg !== 'string' || alg === '') return 'malformed';
  if (alg.toLowerCase() === 'none') return 'alg_none';
  for (const name of UNSUPPORTED_PARAMETERS) if (name in header) return 'unsupported_header';
  for (const name of EMBEDDED_KEY_PARAMETERS) if (name in header) return 'embedded_key';
  if (kid !== undefined && (typeof kid !== 'string' || !SANE_KID.test(kid))) return 'bad_kid';
  if (typ !== undefined && typeof typ !== 'string') return 'malformed';
  return Object.freeze({ alg, kid, typ });
}

/**
 * The end of the signing input (the second dot) of three non-empty segments of the base64url alphabet and
 * nothing else, or -1: refuses JWE, JSON serialization, padding, spaces.
 */
export function signingInputEnd(token: string): number {
  return COMPACT_JWS.test(token) ? secondDot(token) : -1;
}

/** The second dot of a token with exactly two, found from the left: `lastIndexOf` is a slow runtime call in V8. */
export function secondDot(token: string): number {
  return token.indexOf('.', token.indexOf('.') + 1);
}

/** The protected header `token[0, end)`: decoded, free of duplicate names, and one this gateway understands. */
export function readHeader(token: string, end: number): JoseHeader | JwsFailure {
  const headerText = decodeSegment(token, 0, end);
  if (headerText === undefined) return 'invalid_utf8';
  // Duplicate header names (two `alg`s) would let two readers of the header see different values.
  if (scanJsonMembers(headerText) !== 'ok') return 'malformed';
  const header = parseJson(headerText);
  return isPlainObject(header) ? checkHeader(header) : 'malformed';
}

function readPayload(token: string, start: number, end: number): Record<string, unknown> | JwsFailure {
  const payloadText = decodeSegment(token, start, end);
  if (payloadText === undefined) return 'invalid_utf8';
  const scan = scanJsonMembers(payloadText);
  if (scan !== 'ok') return scan;
  const payload = parseJson(payloadText);
  return isPlainObject(payload) ? payload : 'malformed';
}

/**
 * Checked headers by their exact (canonical) segment: an issuer signs every token with one of a handful of
 * headers, so a miss need not decode and parse it again. Bounded: emptied when full, so a flood of distinct
 * headers costs what it would without it.
 */
const HEADER_MEMO_SIZE = 64;
const headerMemo = new Map<string, JoseHeader | JwsFailure>();

export function memoizedHeader(token: string, end: number): JoseHeader | JwsFailure {
  const segment = token.slice(0, end);
  let header = headerMemo.get(segment);
  if (header === undefined) {
    header = readHeader(token, end);
    if (headerMemo.size >= HEADER_MEMO_SIZE) headerMemo.clear();
    headerMemo.set(segment, header);
  }
  return header;
}

/**
 * Splits, canonical-checks and decodes a compact JWS, and checks its header. The signature is not verified here;
 * nothing returned may be trusted until it is. Each segment is decoded once, here: the signature check works
 * on the token's own characters.
 */
export function parseCompactJws(token: string): JwsParse {
  if (token.length > MAX_TOKEN_LENGTH) return failure('too_long');
  const secondDot = signingInputEnd(token);
  if (secondDot < 0) return failure('malformed');
  const firstDot = token.indexOf('.');
  if (
    !isCanonicalBase64url(token, 0, firstDot) ||
    !isCanonicalBase64url(token, firstDot + 1, secondDot) ||
    !isCanonicalBase64url(token, secondDot + 1, token.length)
  ) {
    return failure('non_canonical');
  }
  const header = memoizedHeader(token, firstDot);
  if (typeof header === 'string') return failure(header);
  const payload = readPayload(token, firstDot + 1, secondDot);
  if (typeof payload === 'string') return failure(payload);
  return { ok: true, header, payload };
}
