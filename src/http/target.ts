/**
 * Request-target normalization (SPEC §6). The normalized path is both what routes match and what is forwarded,
 * so the gateway and the upstream can never disagree about which resource a request is for.
 *
 * One pass validates the whole target and notes whether the path needs rewriting; most real paths do not, and
 * return as a slice of the input. Only paths with escapes, `.`/`..` segments or `//` take the rewriting pass.
 */
export type NormalizedTarget =
  /** `query` is `''` or `?…`, kept verbatim. */
  | { readonly ok: true; readonly path: string; readonly query: string }
  /** `reason` is for logs, e.g. `encoded slash`. */
  | { readonly ok: false; readonly reason: string };

// Character classes of raw path characters. Everything not listed is PLAIN and copied as is.
const PLAIN = 0;
const SLASH = 1;
const PERCENT = 2;
const QUESTION = 3;
const CONTROL = 4;
const SPACE = 5;
const BACKSLASH = 6;
const HASH = 7;
const SEMICOLON = 8;
const NON_ASCII = 9;

const REJECTION_BY_CLASS: Readonly<Record<number, NormalizedTarget>> = {
  [CONTROL]: rejection('control character'),
  [SPACE]: rejection('space'),
  [BACKSLASH]: rejection('backslash'),
  [HASH]: rejection('fragment'),
  [SEMICOLON]: rejection('matrix parameter'),
  [NON_ASCII]: rejection('non-ASCII character'),
};
const NOT_ORIGIN_FORM = rejection('not origin-form');
const BAD_ESCAPE = rejection('invalid percent-encoding');
const ABOVE_ROOT = rejection('dot-segment above root');

const PATH_CLASS = new Uint8Array(128);
for (let code = 0; code < 0x20; code++) PATH_CLASS[code] = CONTROL;
PATH_CLASS[0x7f] = CONTROL;
PATH_CLASS[0x20] = SPACE;
PATH_CLASS[0x2f] = SLASH;
PATH_CLASS[0x25] = PERCENT;
PATH_CLASS[0x3f] = QUESTION;
PATH_CLASS[0x5c] = BACKSLASH;
PATH_CLASS[0x23] = HASH;
PATH_CLASS[0x3b] = SEMICOLON;

const HEX_VALUE = new Int8Array(128).fill(-1);
for (let digit = 0; digit < 16; digit++) {
  const text = digit.toString(16);
  HEX_VALUE[text.charCodeAt(0)] = digit;
  HEX_VALUE[text.toUpperCase().charCodeAt(0)] = digit;
}

function isUnreserved(byte: number): boolean {
  return (
    (byte >= 0x30 && byte <= 0x39) ||
    (byte >= 0x41 && byte <= 0x5a) ||
    (byte >= 0x61 && byte <= 0x7a) ||
    byte === 0x2d ||
    byte === 0x2e ||
    byte === 0x5f ||
    byte === 0x7e
  );
}

/** Why an escaped byte is refused in a path, or undefined when it is acceptable. */
const ESCAPE_REJECTION: ReadonlyArray<NormalizedTarget | undefined> = Array.from({ length: 256 }, (_, byte) => {
  if (byte === 0x2f) return rejection('encoded slash');
  if (byte === 0x5c) return rejection('encoded backslash');
  if (byte === 0x3b) return rejection('encoded matrix parameter');
  if (byte < 0x20 || byte === 0x7f) return rejection('encoded control character');
  return undefined;
});

/** What an accepted escape becomes: the character itself when unreserved, else the escape with upper-case hex. */
const ESCAPE_REPLACEMENT: readonly string[] = Array.from({ length: 256 }, (_, byte) =>
  isUnreserved(byte) ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`,
);

function rejection(reason: string): NormalizedTarget {
  return Object.freeze({ ok: false, reason });
}

/** The byte of the escape at `index` (which holds `%`), or -1 when two hex digits do not follow. */
function escapedByte(target: string, index: number): number {
  const high = HEX_VALUE[target.charCodeAt(index + 1)] ?? -1;
  const low = HEX_VALUE[target.charCodeAt(index + 2)] ?? -1;
  return high < 0 || low < 0 ? -1 : (high << 4) | low;
}

/** True when target[start, end) is a segment that rewriting would change: empty, `.` or `..`. */
function isEmptyOrDotSegment(target: string, start: number, end: number): boolean {
  const length = end - start;
  if (length === 0) return true;
  if (target.charCodeAt(start) !== 0x2e) return false;
  return length === 1 || (length === 2 && target.charCodeAt(start + 1) === 0x2e);
}

export function normalizeTarget(target: string): NormalizedTarget {
  if (target.charCodeAt(0) !== 0x2f) return NOT_ORIGIN_FORM;
  const length = target.length;
  let needsRewrite = false;
  let segmentStart = 1;
  let pathEnd = length;
  for (let index = 1; index < length; index++) {
    const code = target.charCodeAt(index);
    const kind = code < 128 ? (PATH_CLASS[code] as number) : NON_ASCII;
    if (kind === PLAIN) continue;
    if (kind === SLASH) {
      if (isEmptyOrDotSegment(target, segmentStart, index)) needsRewrite = true;
      segmentStart = index + 1;
    } else if (kind === PERCENT) {
      const byte = escapedByte(target, index);
      if (byte < 0) return BAD_ESCAPE;
      const refused = ESCAPE_REJECTION[byte];
      if (refused) return refused;
      // Rewrite when decoding (unreserved) or when the hex is not already upper case.
      if (isUnreserved(byte) || target.charCodeAt(index + 1) > 0x60 || target.charCodeAt(index + 2) > 0x60) {
        needsRewrite = true;
      }
      index += 2;
    } else if (kind === QUESTION) {
      pathEnd = index;
      break;
    } else {
      return REJECTION_BY_CLASS[kind] as NormalizedTarget;
    }
  }
  // The last segment may be empty (a trailing slash is kept), but `.` and `..` still need resolving.
  if (segmentStart < pathEnd && isEmptyOrDotSegment(target, segmentStart, pathEnd)) needsRewrite = true;

  for (let index = pathEnd + 1; index < length; index++) {
    const code = target.charCodeAt(index);
    if (code <= 0x20 || code === 0x7f) return REJECTION_BY_CLASS[code === 0x20 ? SPACE : CONTROL] as NormalizedTarget;
    if (code === 0x23) return REJECTION_BY_CLASS[HASH] as NormalizedTarget;
    if (code > 0x7f) return REJECTION_BY_CLASS[NON_ASCII] as NormalizedTarget;
  }

  const query = pathEnd === length ? '' : target.slice(pathEnd);
  if (!needsRewrite) return { ok: true, path: pathEnd === length ? target : target.slice(0, pathEnd), query };
  const path = rewritePath(target, pathEnd);
  return path === undefined ? ABOVE_ROOT : { ok: true, path, query };
}

/**
 * Decodes escaped unreserved characters, upper-cases the remaining escapes, resolves dot-segments and drops empty
 * segments. Input was validated by the scan. Undefined when a `..` climbs above the root.
 */
function rewritePath(target: string, pathEnd: number): string | undefined {
  const segments: string[] = [];
  let segment = '';
  let runStart = 1;
  let trailingSlash = false;
  for (let index = 1; index <= pathEnd; index++) {
    const code = index < pathEnd ? target.charCodeAt(index) : 0x2f;
    if (code === 0x25) {
      segment += target.slice(runStart, index) + ESCAPE_REPLACEMENT[escapedByte(target, index)];
      index += 2;
      runStart = index + 1;
    } else if (code === 0x2f) {
      segment += target.slice(runStart, index);
      runStart = index + 1;
      if (segment === '..') {
        if (segments.pop() === undefined) return undefined;
      } else if (segment !== '' && segment !== '.') {
        segments.push(segment);
      }
      // RFC 3986 §5.2.4: a path ending in `/`, `/.` or `/..` keeps its trailing slash.
      trailingSlash = segment === '' || segment === '.' || segment === '..';
      segment = '';
    }
  }
  if (segments.length === 0) return '/';
  const joined = `/${segments.join('/')}`;
  return trailingSlash ? `${joined}/` : joined;
}
