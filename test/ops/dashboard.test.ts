import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/observability/metrics.js';

/** deploy/grafana's dashboard queries only metrics the gateway exports, and covers every authgate_* family. */

const DASHBOARD = new URL('../../deploy/grafana/authgate-dashboard.json', import.meta.url);
const SERIES_SUFFIXES = ['_bucket', '_sum', '_count'];

interface Panel {
  readonly title: string;
  readonly targets?: readonly { readonly expr: string }[];
}

const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as {
  panels: Panel[];
  templating: { list: { query: unknown }[] };
};
const queries = [
  ...dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr)),
  ...dashboard.templating.list.map((variable) => JSON.stringify(variable.query)),
];
const queried = new Set(queries.flatMap((query) => query.match(/\b(?:authgate|process|nodejs)_[a-z0-9_]+\b/g) ?? []));

/** Every series name the registry exposes: histograms as their _bucket/_sum/_count series. */
async function exportedSeries(): Promise<Set<string>> {
  const families = await new Metrics({ defaultMetrics: true }).registry.getMetricsAsJSON();
  return new Set(
    families.flatMap(({ name, type }) => (String(type) === 'histogram' || String(type) === 'summary' ? SERIES_SUFFIXES.map((suffix) => name + suffix) : [name])),
  );
}

describe('deploy/grafana/authgate-dashboard.json', () => {
  it('queries only series the gateway exports', async () => {
    const exported = await exportedSeries();
    expect(queried.size).toBeGreaterThan(0);
    expect([...queried].filter((name) => !exported.has(name))).toEqual([]);
  });

  it('has a panel for every authgate_* metric family', async () => {
    const families = (await new Metrics().registry.getMetricsAsJSON()).map(({ name }) => name);
    const covered = (family: string): boolean => [...queried].some((name) => name === family || name.startsWith(`${family}_`));
    expect(families.filter((family) => !covered(family))).toEqual([]);
  });

  it('shows latency as histogram quantiles', () => {
    expect(queries.some((query) => query.includes('histogram_quantile(0.99') && query.includes('authgate_request_duration_seconds_bucket'))).toBe(true);
  });
});
