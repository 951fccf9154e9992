/**
 * Response latency at microsecond resolution (autocannon's own histogram keeps whole milliseconds, too coarse to
 * compare a 2 ms p99 with a 2.3 ms one). One counter per microsecond up to 10 s; slower responses share the top one.
 */
const MAX_MICROSECONDS = 10_000_000;

export class LatencyRecorder {
  private readonly counts = new Uint32Array(MAX_MICROSECONDS + 1);
  private total = 0;

  record(milliseconds: number): void {
    this.counts[Math.min(MAX_MICROSECONDS, Math.round(milliseconds * 1000))]! += 1;
    this.total += 1;
  }

  get count(): number {
    return this.total;
  }

  /** The `quantile` (0..1) in milliseconds. */
  percentile(quantile: number): number {
    const rank = Math.ceil(quantile * this.total);
    let seen = 0;
    for (let micros = 0; micros < this.counts.length; micros++) {
      seen += this.counts[micros] as number;
      if (seen >= rank && seen > 0) return micros / 1000;
    }
    return 0;
  }
}
