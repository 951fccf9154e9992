import { normalizeTarget } from '../http/target.js';

/**
 * A route path pattern, parsed once per config: `/a/b` (exact, also `/a/b/`), `/a/*` and `/a/{id}` (one
 * non-empty segment), `/a/**` (`/a` and everything below; only as the last segment).
 */
export interface PathPattern {
  /** Literal segments (case-folded when matching is case-insensitive); `undefined` is a one-segment wildcard. */
  readonly segments: readonly (string | undefined)[];
  /** Ends in `**`: any number of further segments, including none. */
  readonly rest: boolean;
  /** The `{name}` of each segment by position; empty when the pattern names none. */
  readonly names: readonly (string | undefined)[];
}

const NAMED_SEGMENT = /^\{[^{}]+\}$/;

/**
 * Literal parts go through the same normalization as request paths (so `/%61dmin` means `/admin`), otherwise a
 * pattern could name a path that no normalized request can ever have. A pattern that cannot match gives the
 * problem as a string: the config validator reports it, the router refuses the config, shadow detection skips it.
 */
export function parsePathPattern(pattern: string, pathCase: 'sensitive' | 'insensitive'): PathPattern | string {
  const normalized = normalizeTarget(pattern);
  if (!normalized.ok) return `path pattern "${pattern}": ${normalized.reason}`;
  if (normalized.query !== '') return `path pattern "${pattern}": a query string is not part of a path`;
  const body = normalized.path.slice(1).replace(/\/$/, '');
  const parts = body === '' ? [] : body.split('/');
  const segments: (string | undefined)[] = [];
  const names: (string | undefined)[] = [];
  let rest = false;
  for (const [index, part] of parts.entries()) {
    if (part === '**') {
      if (index !== parts.length - 1) return `path pattern "${pattern}": "**" must be the last segment`;
      rest = true;
    } else if (part === '*' || NAMED_SEGMENT.test(part)) {
      if (part !== '*') names[segments.length] = part.slice(1, -1);
      segments.push(undefined);
    } else if (part.includes('*')) {
      return `path pattern "${pattern}": "*" must be a whole segment`;
    } else {
      segments.push(pathCase === 'insensitive' ? part.toLowerCase() : part);
    }
  }
  return { segments, rest, names };
}

export type Params = Readonly<Record<string, string>>;

const NO_PARAMS: Params = Object.freeze({});

/**
 * The reader of a pattern's `{name}` segments from a path the pattern matched; a pattern without names shares one
 * empty object, so its routes allocate nothing. Values are percent-decoded (`/t/a%20b` gives `a b`).
 */
export function compileParams(pattern: PathPattern): (path: string) => Params {
  if (pattern.names.length === 0) return () => NO_PARAMS;
  const { names } = pattern;
  return (path) => {
    const params: Record<string, string> = {};
    let start = 1;
    for (let index = 0; index < names.length; index++) {
      let stop = path.indexOf('/', start);
      if (stop < 0) stop = path.length;
      const name = names[index];
      if (name !== undefined) params[name] = decoded(path.slice(start, stop));
      start = stop + 1;
    }
    return params;
  };
}

function decoded(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
