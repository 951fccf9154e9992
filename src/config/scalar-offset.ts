import type { Scalar } from 'yaml';

/**
 * Where the `index`-th character of a scalar's value stands in the file. The value and its source differ by the
 * quoting: quotes, escapes (`\"`, `''`), a block scalar's header and indentation, folded line breaks. Walking both
 * side by side and skipping source characters until the next value character matches lands on the right spot
 * for every character that is not itself such whitespace, which is where an expression error points.
 */
export function valueOffset(text: string, node: Scalar, index: number): number {
  const [start, end] = node.range as [number, number, number];
  const value = typeof node.value === 'string' ? node.value : String(node.value);
  let at = contentStart(text, node, start);
  for (let i = 0; i < Math.min(index, value.length); i++) at = matching(text, at, end, value[i] as string) + 1;
  return index < value.length ? matching(text, at, end, value[index] as string) : Math.min(at, end);
}

function contentStart(text: string, node: Scalar, start: number): number {
  if (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE') return start + 1;
  if (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') return text.indexOf('\n', start) + 1;
  return start;
}

/** The next occurrence of `char` from `at` within the scalar; `at` itself when there is none (an escape like `\n`). */
function matching(text: string, at: number, end: number, char: string): number {
  const found = text.indexOf(char, at);
  return found < 0 || found >= end ? at : found;
}
