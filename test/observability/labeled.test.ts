import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LabeledCounter, LabeledHistogram } from '../../src/observability/labeled.js';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const DURATIONS = [0, 0.0005, 0.0004, 0.0007, 0.003, 0.2, 0.25, 7, 10, 12, 1e-9];

/** The same updates through prom-client's own metrics and through labeled cells, each in its own registry. */
function twins(): { ours: Registry; theirs: Registry } {
  const ours = new Registry();
  const theirs = new Registry();
  const counterOptions = { name: 'test_requests_total', help: 'Requests, by route, method and status', labelNames: ['route', 'method', 'status'] as const };
  const histogramOptions = { name: 'test_duration_seconds', help: 'Durations, by route', labelNames: ['route'] as const, buckets: BUCKETS };
  const counter = new Counter({ ...counterOptions, registers: [theirs] });
  const histogram = new Histogram({ ...histogramOptions, registers: [theirs] });
  const labeledCounter = new LabeledCounter({ ...counterOptions, registers: [ours] });
  const labeledHistogram = new LabeledHistogram({ ...histogramOptions, registers: [ours] });
  const requests: [string, string, number][] = [
    ['api', 'GET', 200],
    ['api', 'GET', 200],
    ['-', 'POST', 404],
    ['api', 'GET', 401],
    ['say "hi"\\', 'GET', 200],
  ];
  for (const [route, method, status] of requests) {
    counter.inc({ route, method, status });
    labeledCounter.labels(route, method, status).inc();
  }
  labeledCounter.inc({ route: 'api', method: 'PUT', status: 201 }, 3);
  counter.inc({ route: 'api', method: 'PUT', status: 201 }, 3);
  for (const [index, seconds] of DURATIONS.entries()) {
    const route = index % 3 === 0 ? 'public' : 'api';
    histogram.observe({ route }, seconds);
    labeledHistogram.labels(route).observe(seconds);
  }
  return { ours, theirs };
}

describe('labeled counters and histograms', () => {
  it('expose exactly what prom-client exposes for the same updates', async () => {
    const { ours, theirs } = twins();
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it('report the same JSON, which the cluster aggregator sums alike', async () => {
    const { ours, theirs } = twins();
    const oursJson = await ours.getMetricsAsJSON();
    const theirsJson = await theirs.getMetricsAsJSON();
    // prom-client's histogram samples carry an empty exemplar slot (exemplars are off here).
    const withoutExemplars = (json: unknown): unknown => JSON.parse(JSON.stringify(json, (key, value: unknown) => (key === 'exemplar' ? undefined : value)));
    expect(withoutExemplars(oursJson)).toEqual(withoutExemplars(theirsJson));
    const aggregated = (json: typeof oursJson) => AggregatorRegistry.aggregate([json, json]).metrics();
    expect(await aggregated(oursJson)).toBe(await aggregated(theirsJson));
  });

  it('hand out one cell per label set and leave out label sets never updated', async () => {
    const registry = new Registry();
    const counter = new LabeledCounter({ name: 'test_total', help: 'Test', labelNames: ['result'], registers: [registry] });
    expect(counter.labels('hit')).toBe(counter.labels('hit'));
    counter.labels('miss');
    counter.labels('hit').inc();
    expect((await counter.get()).values).toEqual([{ labels: { result: 'hit' }, value: 1 }]);
  });
});
