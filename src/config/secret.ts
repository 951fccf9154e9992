import { inspect } from 'node:util';

/**
 * A credential read from the config (a client secret). It prints as `[redacted]` wherever it ends up (a log line
 * with the config, `JSON.stringify`, `util.inspect`, a template string); only `reveal()` gives the value, at the
 * one place that sends it.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return '[redacted]';
  }

  toJSON(): string {
    return '[redacted]';
  }

  [inspect.custom](): string {
    return '[redacted]';
  }
}
