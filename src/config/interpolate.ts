import { isPair, isScalar, isSeq, parseDocument, visit, type Document, type Scalar } from 'yaml';
import type { ProblemSink } from './problems.js';

/** One `${NAME}` or `${NAME:-default}` in the source text. */
export interface EnvReference {
  readonly offset: number;
  readonly length: number;
  readonly name: string;
  readonly fallback: string | undefined;
}

export interface MaskedSource {
  /** The source with every reference overwritten by a same-length run of a private-use character. */
  readonly text: string;
  readonly references: readonly EnvReference[];
  /** Offsets of `${` that do not start a well-formed reference. */
  readonly malformed: readonly number[];
}

const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}\r\n]*))?\}/y;
/** What a malformed reference covers: up to its `}` or the end of the line. */
const MALFORMED_REFERENCE = /\$\{[^}\r\n]*\}?/y;

/**
 * Private-use characters are valid inside any YAML scalar, including flow collections where `{` and `}` are not,
 * so `{ redis: ${REDIS_URL:-} }` parses. Neighbouring references alternate between the first two so that
 * `${A}${B}` stays two runs; malformed references get the third, so they neither break the YAML nor count as
 * references.
 */
const MASKS = ['\uE000', '\uE001'] as const;
const MALFORMED_MASK = '\uE002';
const ANY_MASK_RUN = /[\uE000-\uE002]+/g;
const MASK_RUN = /\uE000+|\uE001+/g;
const HAS_MASK = /[\uE000\uE001]/;

/**
 * Overwrites references instead of substituting them, so that every offset the YAML parser reports is an
 * offset in the file as written, and so that an environment value can never add YAML structure.
 */
export function maskReferences(source: string): MaskedSource {
  const references: EnvReference[] = [];
  const malformed: number[] = [];
  let text = '';
  let copied = 0;
  for (let at = source.indexOf('${'); at !== -1; ) {
    REFERENCE.lastIndex = at;
    const match = REFERENCE.exec(source);
    if (match === null || match[1] === undefined) {
      MALFORMED_REFERENCE.lastIndex = at;
      const length = MALFORMED_REFERENCE.exec(source)?.[0].length ?? 2;
      text += source.slice(copied, at) + MALFORMED_MASK.repeat(length);
      malformed.push(at);
      copied = at + length;
      at = source.indexOf('${', copied);
      continue;
    }
    const length = match[0].length;
    text += source.slice(copied, at) + (references.length % 2 === 0 ? MASKS[0] : MASKS[1]).repeat(length);
    references.push({ offset: at, length, name: match[1], fallback: match[2] });
    copied = at + length;
    at = source.indexOf('${', copied);
  }
  return { text: text + source.slice(copied), references, malformed };
}

/** Shows masked text (in a YAML parser message) the way the reader wrote it, more or less. */
export function unmask(message: string): string {
  return message.replace(ANY_MASK_RUN, '${…}');
}

/** POSIX semantics: the default applies when the variable is unset or empty; `undefined` = unset, no default. */
export function resolveReference(reference: EnvReference, env: NodeJS.ProcessEnv): string | undefined {
  const value = env[reference.name];
  if (reference.fallback !== undefined && (value === undefined || value === '')) return reference.fallback;
  return value;
}

/**
 * Types a substituted unquoted scalar the way YAML would have typed it had the value been written there
 * (`100` → number, `true` → boolean, empty → null), but only when the whole value is one such scalar:
 * anything else stays the exact substituted string, so `#` or `: ` inside a secret never truncates it.
 */
export function retypePlainScalar(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed === '') return null;
  const doc = parseDocument(trimmed);
  const contents = doc.contents;
  const wholeScalar =
    doc.errors.length === 0 && isScalar(contents) && contents.type === 'PLAIN' && contents.range?.[1] === trimmed.length;
  return wholeScalar && typeof contents.value !== 'string' ? contents.value : text;
}

export interface AppliedReferences {
  /** The substituted text of each retyped unquoted scalar, so a string field still reads `8080` as text. */
  readonly substitutedText: ReadonlyMap<Scalar, string>;
  /** Scalars with an unset or malformed reference: already reported, so nothing else is said about them. */
  readonly unresolved: ReadonlySet<Scalar>;
  /** The variables each substituted scalar took its value from, named when that value is refused. */
  readonly variables: ReadonlyMap<Scalar, readonly string[]>;
}

/**
 * What the example Secrets in the deploy manifests hold (alone or inside a URL). Applied as written, they would make a
 * public admin token, session key or Redis password live: a value from the environment holding it is refused.
 */
const EXAMPLE_VALUE_MARK = 'replace-with-';

/** Substitutes the masked references inside the scalars of a document parsed from `masked.text`. */
export function applyReferences(
  doc: Document,
  masked: MaskedSource,
  env: NodeJS.ProcessEnv,
  sink: ProblemSink,
): AppliedReferences {
  const substitutedText = new Map<Scalar, string>();
  const unresolved = new Set<Scalar>();
  const variables = new Map<Scalar, string[]>();
  if (masked.references.length === 0 && masked.malformed.length === 0) return { substitutedText, unresolved, variables };
  visit(doc, {
    Scalar(key, node, ancestors) {
      const range = node.range;
      if (!range) return;
      const within = (offset: number): boolean => offset >= range[0] && offset < range[1];
      const path = describePath(ancestors, node);
      for (const offset of masked.malformed.filter(within)) {
        sink.problem(offset, path, 'malformed reference, expected ${NAME} or ${NAME:-default}');
        unresolved.add(node);
      }
      if (typeof node.value !== 'string' || !HAS_MASK.test(node.value)) return;
      const references = masked.references.filter((r) => within(r.offset));
      variables.set(node, references.map((reference) => reference.name));
      let next = 0;
      const substituted = node.value.replace(MASK_RUN, () => {
        const reference = references[next++];
        if (reference === undefined) return '';
        const value = resolveReference(reference, env);
        if (value === undefined) {
          sink.problem(reference.offset, path, `environment variable ${reference.name} is not set (write \${${reference.name}:-default} to give a default)`);
          unresolved.add(node);
          return '';
        }
        if (value.includes(EXAMPLE_VALUE_MARK)) {
          sink.problem(reference.offset, path, `environment variable ${reference.name} still holds an example value (replace-with-…): put your own in its Secret`);
          unresolved.add(node);
        }
        return value;
      });
      // An unresolved scalar keeps its text (and so its node) so readers can recognise and skip it.
      if (key === 'key' || node.type !== 'PLAIN' || unresolved.has(node)) {
        node.value = substituted;
      } else {
        node.value = retypePlainScalar(substituted);
        substitutedText.set(node, substituted);
      }
    },
  });
  return { substitutedText, unresolved, variables };
}

/** `routes[2].match.path` for a node, from the ancestors `visit` hands over. */
function describePath(ancestors: readonly unknown[], node: unknown): string {
  const chain = [...ancestors, node];
  let path = '';
  for (let i = 0; i + 1 < chain.length; i++) {
    const parent = chain[i];
    const child = chain[i + 1];
    if (isPair(parent) && child === parent.value && isScalar(parent.key)) {
      path += path === '' ? String(parent.key.value) : `.${String(parent.key.value)}`;
    } else if (isSeq(parent)) {
      path += `[${parent.items.indexOf(child as never)}]`;
    }
  }
  return path;
}
