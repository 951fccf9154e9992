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
  let rest = false;
  for (const [index, part] of parts.entries()) {
    if (part === '**') {
      if (index !== parts.length - 1) return `path pattern "${pattern}": "**" must be the last segment`;
      rest = true;
    } else if (part === '*' || NAMED_SEGMENT.test(part)) {
      segments.push(undefined);
    } else if (part.includes('*')) {
      return `path pattern "${pattern}": "*" must be a whole segment`;
    } else {
      segments.push(pathCase === 'insensitive' ? part.toLowerCase() : part);
    }
  }
  return { segments, rest };
}
