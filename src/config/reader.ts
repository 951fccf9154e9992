import { isAlias, isMap, isScalar, isSeq, type Document, type Node } from 'yaml';
import { parseDuration } from './duration.js';
import { valueOffset } from './scalar-offset.js';
import type { AppliedReferences } from './interpolate.js';
import type { ProblemSink } from './problems.js';
import { didYouMean } from './suggest.js';

/** A place in the config: the value found there (absent when missing or null) and where to point at. */
export interface Slot {
  readonly node: Node | undefined;
  readonly path: string;
  /** Source offset used when the value is absent: the key if written, else the enclosing mapping. */
  readonly anchor: number;
}

/** The same entry, pointing at its key rather than its value (a problem about the key itself, or a missing value). */
export function keySlot(slot: Slot): Slot {
  return { ...slot, node: undefined };
}

export interface NamedEntry {
  readonly name: string;
  readonly slot: Slot;
}

export interface Named<T> {
  readonly values: Map<string, T>;
  readonly names: readonly string[];
  readonly slots: ReadonlyMap<string, Slot>;
}

function childPath(parent: string, key: string): string {
  return parent === '' ? key : `${parent}.${key}`;
}

/** A YAML mapping whose keys were checked against the allowed set. An absent section reads as empty. */
export class Section {
  constructor(
    private readonly path: string,
    private readonly offset: number,
    private readonly fields: ReadonlyMap<string, { readonly node: Node | undefined; readonly keyOffset: number }>,
  ) {}

  slot(key: string): Slot {
    const field = this.fields.get(key);
    return { node: field?.node, path: childPath(this.path, key), anchor: field?.keyOffset ?? this.offset };
  }

  has(key: string): boolean {
    return this.fields.get(key)?.node !== undefined;
  }
}

/**
 * Typed access to the parsed document. Every reader records a problem and returns undefined when the value is
 * invalid, and returns undefined silently when it is absent, so callers write `read(slot) ?? default` and keep
 * going: all problems of a file come out in one run.
 */
export class Reader {
  constructor(
    private readonly doc: Document,
    readonly sink: ProblemSink,
    private readonly references: AppliedReferences,
    /** The file as written: positions inside a scalar are found in it. */
    private readonly fileText: string,
  ) {}

  root(): Slot {
    return { node: this.resolve(this.doc.contents), path: '', anchor: 0 };
  }

  problem(slot: Slot, message: string): undefined {
    if (isScalar(slot.node) && this.references.unresolved.has(slot.node)) return undefined;
    // The value is not in the file: say where it came from (not what it is, which may be a secret).
    const names = isScalar(slot.node) ? this.references.variables.get(slot.node) : undefined;
    const from = names === undefined ? '' : ` (the value comes from ${names.map((name) => `\${${name}}`).join(', ')})`;
    this.sink.problem(offsetOf(slot.node) ?? slot.anchor, slot.path, `${message}${from}`);
    return undefined;
  }

  /** A problem at the `index`-th character of a scalar's value (an expression's error), wherever its quoting put it. */
  problemInside(slot: Slot, index: number, message: string): undefined {
    const { node } = slot;
    if (!isScalar(node) || node.range == null) return this.problem(slot, message);
    this.sink.problem(valueOffset(this.fileText, node, index), slot.path, message);
    return undefined;
  }

  warning(slot: Slot, message: string): void {
    this.sink.warning(offsetOf(slot.node) ?? slot.anchor, slot.path, message);
  }

  /** A warning at the `index`-th character of a scalar's value, as `problemInside` places a problem. */
  warningInside(slot: Slot, index: number, message: string): void {
    const { node } = slot;
    if (!isScalar(node) || node.range == null) return this.warning(slot, message);
    this.sink.warning(valueOffset(this.fileText, node, index), slot.path, message);
  }

  /** Records "required" when the slot is empty; true when a value is there. */
  required(slot: Slot): boolean {
    if (slot.node !== undefined) return true;
    this.problem(slot, 'required');
    return false;
  }

  /** A mapping with a fixed set of keys; absent or invalid (problem recorded) reads as empty. */
  section(slot: Slot, allowedKeys: readonly string[]): Section {
    const { node } = slot;
    const empty = new Section(slot.path, slot.anchor, new Map());
    if (node === undefined) return empty;
    if (!isMap(node)) {
      this.problem(slot, 'expected a mapping');
      return empty;
    }
    const fields = new Map<string, { node: Node | undefined; keyOffset: number }>();
    for (const entry of this.entries(slot)) {
      if (!allowedKeys.includes(entry.name)) {
        this.problem(keySlot(entry.slot), `unknown key "${entry.name}"${didYouMean(entry.name, allowedKeys)}`);
        continue;
      }
      fields.set(entry.name, { node: entry.slot.node, keyOffset: entry.slot.anchor });
    }
    return new Section(slot.path, offsetOf(node) ?? slot.anchor, fields);
  }

  /** The pairs of a mapping keyed by user-chosen names (issuers, upstreams, …), in file order; [] when invalid. */
  entries(slot: Slot): NamedEntry[] {
    const { node } = slot;
    if (node === undefined) return [];
    if (!isMap(node)) {
      this.problem(slot, 'expected a mapping');
      return [];
    }
    const seen = new Set<string>();
    const entries: NamedEntry[] = [];
    for (const pair of node.items) {
      const key = this.resolve(pair.key);
      const keyOffset = offsetOf(key) ?? offsetOf(node) ?? slot.anchor;
      if (!isScalar(key) || (typeof key.value !== 'string' && typeof key.value !== 'number')) {
        this.sink.problem(keyOffset, slot.path, 'keys must be plain names');
        continue;
      }
      const name = String(key.value);
      const path = childPath(slot.path, name);
      if (seen.has(name)) {
        this.sink.problem(keyOffset, path, 'duplicate key');
        continue;
      }
      seen.add(name);
      entries.push({ name, slot: { node: this.resolve(pair.value), path, anchor: keyOffset } });
    }
    return entries;
  }

  list(slot: Slot): Slot[] | undefined {
    const { node } = slot;
    if (node === undefined) return undefined;
    if (!isSeq(node)) return this.problem(slot, 'expected a list');
    return node.items.map((item, i) => ({
      node: this.resolve(item),
      path: `${slot.path}[${i}]`,
      anchor: offsetOf(item as Node) ?? offsetOf(node) ?? slot.anchor,
    }));
  }

  /**
   * A mapping of user-named entries (issuers, upstreams, rate limits). `names` keeps every name written, also
   * those whose entry has problems, so references to them are not reported a second time as unknown.
   */
  named<T>(slot: Slot, read: (name: string, entry: Slot) => T | undefined): Named<T> {
    const values = new Map<string, T>();
    const slots = new Map<string, Slot>();
    for (const { name, slot: entry } of this.entries(slot)) {
      slots.set(name, entry);
      const value = read(name, entry);
      if (value !== undefined) values.set(name, value);
    }
    return { values, names: [...slots.keys()], slots };
  }

  /** Reads each list item; undefined when the list is absent or any item is invalid (problems recorded). */
  items<T>(slot: Slot, read: (item: Slot) => T | undefined, options: { nonEmpty?: boolean } = {}): T[] | undefined {
    const items = this.list(slot);
    if (items === undefined) return undefined;
    if (options.nonEmpty && items.length === 0) return this.problem(slot, 'must not be empty');
    const values: T[] = [];
    let valid = true;
    for (const item of items) {
      const value = this.required(item) ? read(item) : undefined;
      if (value === undefined) valid = false;
      else values.push(value);
    }
    return valid ? values : undefined;
  }

  stringList(slot: Slot, options: { nonEmpty?: boolean } = {}): string[] | undefined {
    return this.items(slot, (item) => this.string(item), options);
  }

  /** A non-empty string. Numbers and booleans that came from `${…}` are read back as their text. */
  string(slot: Slot): string | undefined {
    const { node } = slot;
    if (node === undefined) return undefined;
    if (isScalar(node)) {
      const text = typeof node.value === 'string' ? node.value : this.references.substitutedText.get(node);
      if (text === '') return this.problem(slot, 'must not be empty');
      if (text !== undefined) return text;
    }
    return this.problem(slot, 'expected a string');
  }

  /** A string that may be empty (absent also reads as empty). */
  optionalString(slot: Slot): string | undefined {
    const { node } = slot;
    if (node === undefined) return '';
    if (isScalar(node) && node.value === '') return '';
    return this.string(slot);
  }

  integer(slot: Slot, min: number): number | undefined {
    const { node } = slot;
    if (node === undefined) return undefined;
    if (!isScalar(node) || typeof node.value !== 'number' || !Number.isSafeInteger(node.value)) {
      return this.problem(slot, 'expected a whole number');
    }
    if (node.value < min) return this.problem(slot, `must be at least ${min}`);
    return node.value;
  }

  boolean(slot: Slot): boolean | undefined {
    const { node } = slot;
    if (node === undefined) return undefined;
    if (isScalar(node) && typeof node.value === 'boolean') return node.value;
    // YAML 1.2 reads yes/no/on/off as strings, where YAML 1.1 (and many a habit) made them booleans.
    // A value from the environment is named by its variable (problem() adds it), never shown.
    const fromFile = isScalar(node) && typeof node.value === 'string' && !this.references.variables.has(node);
    const got = fromFile ? `, got the string "${String(node.value)}"` : '';
    return this.problem(slot, `expected true or false${got}`);
  }

  duration(slot: Slot, options: { positive?: boolean } = {}): number | undefined {
    const text = this.text(slot);
    if (text === undefined) return undefined;
    const ms = parseDuration(text);
    if (ms === undefined) return this.problem(slot, `expected a duration like 500ms, 30s, 10m, 1h or 7d, got "${text}"`);
    if (options.positive && ms === 0) return this.problem(slot, 'must be longer than 0');
    return ms;
  }

  oneOf<T extends string>(slot: Slot, values: readonly T[]): T | undefined {
    const text = this.text(slot);
    if (text === undefined) return undefined;
    const found = values.find((v) => v === text);
    if (found !== undefined) return found;
    const expected = values.map((v) => `"${v}"`).join(', ');
    return this.problem(slot, `"${text}" is not one of ${expected}${didYouMean(text, values)}`);
  }

  /** A claim value as written in `require_claims` or `require.claims`. */
  claimValue(slot: Slot): string | number | boolean | undefined {
    const { node } = slot;
    if (node === undefined) return this.problem(slot, 'expected a string, number or boolean');
    if (isScalar(node) && ['string', 'number', 'boolean'].includes(typeof node.value)) {
      return node.value as string | number | boolean;
    }
    return this.problem(slot, 'expected a string, number or boolean');
  }

  /** Any scalar as text, for values that are parsed further (durations, enums, addresses). */
  text(slot: Slot): string | undefined {
    const { node } = slot;
    if (node === undefined) return undefined;
    if (isScalar(node) && ['string', 'number', 'boolean'].includes(typeof node.value)) {
      return this.references.substitutedText.get(node) ?? String(node.value);
    }
    return this.problem(slot, 'expected a single value');
  }

  /** Follows aliases; a null scalar (`key:` or `${X:-}`) reads as absent. */
  private resolve(node: unknown): Node | undefined {
    const target = isAlias(node) ? node.resolve(this.doc) : node;
    if (target === null || target === undefined) return undefined;
    if (isScalar(target) && target.value === null) return undefined;
    return target as Node;
  }
}

function offsetOf(node: Node | undefined): number | undefined {
  return node?.range?.[0];
}
