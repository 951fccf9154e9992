/** Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and are never passed on as they are. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Connection options that name no header. */
const PLAIN_OPTIONS: ReadonlySet<string> = new Set(['keep-alive', 'close', 'upgrade']);

/**
 * The header names a Connection value lists (RFC 9110 §7.6.1), which are hop-by-hop for this message too, minus
 * the options that name none. `canonical` maps each name the way its side compares names. Added to `into` when
 * given; undefined when the value lists none, so the common `keep-alive` costs no parsing.
 */
export function connectionListed(value: string, canonical: (name: string) => string, into?: Set<string>): Set<string> | undefined {
  if (PLAIN_OPTIONS.has(value.toLowerCase())) return into;
  let names = into;
  for (const option of value.split(',')) {
    const name = canonical(option.trim());
    if (name !== '' && !PLAIN_OPTIONS.has(name)) (names ??= new Set()).add(name);
  }
  return names;
}
