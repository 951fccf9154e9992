const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/** Milliseconds, for defaults and limits written in config terms. */
export const SECOND = 1_000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: SECOND, m: MINUTE, h: HOUR, d: 24 * HOUR };

/** `500ms`, `30s`, `10m`, `1h`, `7d` → milliseconds; anything else (fractions, spaces, compound forms) → undefined. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text);
  if (!match) return undefined;
  const ms = Number(match[1]) * (UNIT_MS[match[2] ?? ''] ?? Number.NaN);
  return Number.isSafeInteger(ms) ? ms : undefined;
}
