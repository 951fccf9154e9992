/** A JSON object (not an array, not a class instance): what a claim set, a JWK or a request body must be. */
export function isPlainObject(value: unknown): value is Readonly<Record<string, unknown>> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Freezes a parsed JSON value and everything in it, so one shared copy can serve every reader. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const member of Object.values(value)) deepFreeze(member);
  }
  return value;
}

/** What JSON.stringify escapes in a string: quote, backslash, control characters, and lone surrogate halves. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * `value` as a JSON string literal, exactly as `JSON.stringify` writes it, without the cost of a call into it for
 * the usual text that needs no escape. (A regular expression, not a character loop: the strings that pass here
 * come in several representations, and V8 then looks `charCodeAt` up through an inline cache on every character.)
 */
export function jsonString(value: string): string {
  return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`;
}
