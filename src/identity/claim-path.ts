import { isPlainObject } from '../lib/json.js';

/**
 * Claim paths (SPEC §5). A path is first looked up as a whole top-level claim name, so URL-shaped
 * namespaced claims such as `https://example.com/roles` work; otherwise it is split on `.` and walked
 * through nested plain objects (`realm_access.roles`, `resource_access.my-client.roles`).
 *
 * Only own properties are read: a token saying `{"__proto__": …}` or a path like `constructor.name`
 * must never reach into Object.prototype.
 */

const hasOwn = Object.prototype.hasOwnProperty;

function ownValue(container: Readonly<Record<string, unknown>>, key: string): unknown {
  return hasOwn.call(container, key) ? container[key] : undefined;
}

/** The value at `path` in `claims`, or `undefined` when any step is missing or not a plain object. */
export function readClaim(claims: Readonly<Record<string, unknown>>, path: string): unknown {
  const whole = ownValue(claims, path);
  if (whole !== undefined || !path.includes('.')) return whole;
  let current: unknown = claims;
  let start = 0;
  // Walk by index instead of split('.') so the hot path allocates nothing but the segment strings.
  while (start <= path.length) {
    const dot = path.indexOf('.', start);
    const end = dot === -1 ? path.length : dot;
    if (!isPlainObject(current)) return undefined;
    current = ownValue(current, path.slice(start, end));
    if (current === undefined) return undefined;
    start = end + 1;
  }
  return current;
}

/** A scalar claim as text (for identity headers and rate-limit keys); arrays, objects and null give `undefined`. */
export function claimAsString(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
      return Number.isFinite(value) ? String(value) : undefined;
    case 'boolean':
      return value ? 'true' : 'false';
    default:
      return undefined;
  }
}

const EMPTY: readonly string[] = Object.freeze([]);

/**
 * A claim read as a list of strings: a string is one member; an array keeps its string, number and boolean
 * members as strings (other members are skipped); anything else is the empty list.
 */
export function claimAsList(value: unknown): readonly string[] {
  if (typeof value === 'string') return [value];
  if (!Array.isArray(value)) return EMPTY;
  const list: string[] = [];
  for (const member of value) {
    const text = claimAsString(member);
    if (text !== undefined) list.push(text);
  }
  return list;
}

/**
 * Scopes as OAuth writes them: a space-separated string (`scope`, Entra's `scp`) or an array of strings.
 * Runs of spaces and empty members are dropped.
 */
export function scopeList(value: unknown): readonly string[] {
  if (typeof value !== 'string') return claimAsList(value);
  const list: string[] = [];
  for (const scope of value.split(' ')) if (scope !== '') list.push(scope);
  return list;
}
