import type { Found, FinderType } from '../../chain/kinds.js';
import { holding, invalid, NONE } from './found.js';

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

/** The registry's `cookie`: the token in a named cookie (browsers). */
export const cookie: FinderType = {
  compile(source) {
    return { source, find: (headersDistinct) => fromCookies(headersDistinct.cookie, source.name) };
  },
};
