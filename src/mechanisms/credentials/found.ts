import type { Found } from '../../chain/kinds.js';

/** Nothing in this source. */
export const NONE: Found = Object.freeze({ ok: true, value: undefined });

export function invalid(reason: string): { readonly ok: false; readonly reason: string } {
  return { ok: false, reason };
}

export function holding(value: string): Found {
  return { ok: true, value };
}
