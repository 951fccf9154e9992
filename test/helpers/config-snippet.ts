import { LineCounter, parseDocument } from 'yaml';
import { applyReferences, maskReferences } from '../../src/config/interpolate.js';
import { formatProblem, ProblemSink } from '../../src/config/problems.js';
import { Reader, type Slot } from '../../src/config/reader.js';

export interface SnippetRead<T> {
  readonly value: T;
  /** `gateway.yaml:LINE:COL: path: message`, as `authgate check` prints them. */
  readonly problems: readonly string[];
}

/**
 * Runs a config reader on a YAML snippet the way the loader does (`${…}` references resolved from `env`), so a
 * feature's reader is tested on real file positions before it is registered with the loader.
 */
export function readSnippet<T>(yaml: string, read: (r: Reader, root: Slot) => T, env: NodeJS.ProcessEnv = {}): SnippetRead<T> {
  const lineCounter = new LineCounter();
  const sink = new ProblemSink('gateway.yaml', lineCounter);
  const masked = maskReferences(yaml);
  const doc = parseDocument(masked.text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  if (doc.errors.length > 0) throw new Error(`snippet is not YAML: ${doc.errors[0]?.message}`);
  const reader = new Reader(doc, sink, applyReferences(doc, masked, env, sink), yaml);
  const value = read(reader, reader.root());
  return { value, problems: sink.problems.map(formatProblem) };
}
