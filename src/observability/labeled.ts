import type { Registry } from 'prom-client';

/**
 * A counter and a histogram for the metrics updated on every request, reported through a prom-client registry
 * like the others. prom-client builds a label-hash string per update (and a histogram a closure and a bucket key
 * per observation), a few thousand instructions each time; here each label set has a cell, found once (or kept by
 * the caller), and an update only adds to numbers.
 */

type LabelValue = string | number;
type Labels = Readonly<Record<string, LabelValue>>;

interface Sample {
  readonly labels: Labels;
  readonly value: number;
  readonly metricName?: string;
}

/** What a prom-client registry reads from a metric (`MetricObjectWithValues`). */
interface Reported {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly values: Sample[];
  readonly aggregator: 'sum';
}

interface Options {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly registers: readonly Registry[];
}

/** Cells by their label values, in label order: one Map level per label. */
abstract class Cells<C> {
  readonly name: string;
  readonly help: string;
  protected readonly labelNames: readonly string[];
  private readonly root = new Map<LabelValue, unknown>();
  protected readonly all: C[] = [];

  constructor(options: Options) {
    this.name = options.name;
    this.help = options.help;
    this.labelNames = options.labelNames;
    for (const registry of options.registers) registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** The cell of these label values (in `labelNames` order), made on first use. */
  labels(...values: LabelValue[]): C {
    let level = this.root;
    const last = values.length - 1;
    for (let index = 0; index < last; index++) {
      const value = values[index] as LabelValue;
      let next = level.get(value) as Map<LabelValue, unknown> | undefined;
      if (next === undefined) level.set(value, (next = new Map()));
      level = next;
    }
    let cell = level.get(values[last] as LabelValue) as C | undefined;
    if (cell === undefined) {
      cell = this.create(Object.fromEntries(this.labelNames.map((name, index) => [name, values[index] as LabelValue])));
      level.set(values[last] as LabelValue, cell);
      this.all.push(cell);
    }
    return cell;
  }

  /** The cell of a labels object, as prom-client's `inc(labels)` takes it. */
  protected cellOf(labels: Labels): C {
    return this.labels(...this.labelNames.map((name) => labels[name] ?? ''));
  }

  protected abstract create(labels: Labels): C;

  protected report(type: string, values: Sample[]): Reported {
    return { name: this.name, help: this.help, type, values, aggregator: 'sum' };
  }
}

class CounterCell {
  value = 0;
  constructor(readonly labels: Labels) {}

  inc(by = 1): void {
    this.value += by;
  }
}

export class LabeledCounter extends Cells<CounterCell> {
  inc(labels: Labels, by = 1): void {
    this.cellOf(labels).inc(by);
  }

  protected create(labels: Labels): CounterCell {
    return new CounterCell(labels);
  }

  /** Label sets never counted are left out, as prom-client leaves them out. */
  async get(): Promise<Reported> {
    return this.report(
      'counter',
      this.all.filter((cell) => cell.value > 0).map((cell) => ({ labels: cell.labels, value: cell.value })),
    );
  }

  reset(): void {
    for (const cell of this.all) cell.value = 0;
  }
}

class HistogramCell {
  /** Observations per bucket, not cumulative; the last slot counts those above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    let bucket = 0;
    while (bucket < this.bounds.length && value > (this.bounds[bucket] as number)) bucket++;
    this.counts[bucket] = (this.counts[bucket] as number) + 1;
    this.sum += value;
    this.count += 1;
  }
}

export class LabeledHistogram extends Cells<HistogramCell> {
  private readonly bounds: readonly number[];

  constructor(options: Options & { readonly buckets: readonly number[] }) {
    super(options);
    this.bounds = [...options.buckets].sort((a, b) => a - b);
  }

  observe(labels: Labels, value: number): void {
    this.cellOf(labels).observe(value);
  }

  protected create(labels: Labels): HistogramCell {
    return new HistogramCell(labels, this.bounds);
  }

  /** prom-client's shape: cumulative `_bucket` samples (`le` first), `+Inf`, `_sum` and `_count` per label set. */
  async get(): Promise<Reported> {
    const values: Sample[] = [];
    for (const cell of this.all) {
      if (cell.count === 0) continue;
      let cumulative = 0;
      this.bounds.forEach((bound, index) => {
        cumulative += cell.counts[index] as number;
        values.push({ labels: { le: bound, ...cell.labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push(
        { labels: { le: '+Inf', ...cell.labels }, value: cell.count, metricName: `${this.name}_bucket` },
        { labels: cell.labels, value: cell.sum, metricName: `${this.name}_sum` },
        { labels: cell.labels, value: cell.count, metricName: `${this.name}_count` },
      );
    }
    return this.report('histogram', values);
  }

  reset(): void {
    for (const cell of this.all) {
      cell.counts.fill(0);
      cell.sum = 0;
      cell.count = 0;
    }
  }
}
