import type { LineCounter } from 'yaml';

/** One finding about the config file, positioned at the offending key or value (1-based line and column). */
export interface ConfigProblem {
  file: string;
  line: number;
  col: number;
  /** Dotted path of the key, with `[i]` for list items; empty for YAML syntax errors. */
  path: string;
  message: string;
}

/** `FILE:LINE:COL: path.to.key: message` (the path part is left out when there is none). */
export function formatProblem(p: ConfigProblem): string {
  const where = `${p.file}:${p.line}:${p.col}:`;
  return p.path === '' ? `${where} ${p.message}` : `${where} ${p.path}: ${p.message}`;
}

/** Collects problems and warnings, turning source offsets into line:col as it goes. */
export class ProblemSink {
  readonly problems: ConfigProblem[] = [];
  readonly warnings: ConfigProblem[] = [];

  constructor(
    private readonly file: string,
    private readonly lineCounter: LineCounter,
  ) {}

  problem(offset: number, path: string, message: string): void {
    this.add(this.problems, offset, path, message);
  }

  warning(offset: number, path: string, message: string): void {
    this.add(this.warnings, offset, path, message);
  }

  /** A value read twice (to pick a key source, then as itself) is still one mistake: said once. */
  private add(list: ConfigProblem[], offset: number, path: string, message: string): void {
    const found = this.at(offset, path, message);
    const said = list.some((other) => other.line === found.line && other.col === found.col && other.path === path && other.message === message);
    if (!said) list.push(found);
  }

  private at(offset: number, path: string, message: string): ConfigProblem {
    const { line, col } = this.lineCounter.linePos(offset);
    return { file: this.file, line, col, path, message };
  }
}
