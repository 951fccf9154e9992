import { compileExpression, type ExpressionRule } from '../expressions/cel.js';
import type { Reader, Slot } from './reader.js';

/** `require.expr`: compiled now, so a syntax or type error is a config problem pointing inside the expression. */
export function readExpression(r: Reader, slot: Slot): ExpressionRule | undefined {
  const source = r.string(slot);
  if (source === undefined) return undefined;
  const compiled = compileExpression(source);
  if (compiled.ok) return compiled;
  return r.problemInside(slot, compiled.offset, compiled.message);
}
