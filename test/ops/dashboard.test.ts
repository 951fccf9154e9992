import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/observability/metrics.js';
import { promtool } from './promtool.js';

/**
 * deploy/grafana's dashboard queries only metrics the gateway exports and covers every authgate_* family; the
 * alert rules of docs/metrics.md pass `promtool check rules` and use exported metrics too.
 */

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
const metricNames = (texts: readonly string[]): Set<string> =>
  new Set(texts.flatMap((query) => query.match(/\b(?:authgate|process|nodejs)_[a-z0-9_]+\b/g) ?? []));
const queried = metricNames(queries);

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

describe('docs/metrics.md alert rules', () => {
  const doc = readFile(new URL('../../docs/metrics.md', import.meta.url), 'utf8');
  const rules = async (): Promise<string> => /^```yaml\n([\s\S]*?)^```$/m.exec(await doc)?.[1] ?? '';

  it('pass `promtool check rules`', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'authgate-rules-')), 'rules.yaml');
    await writeFile(file, await rules());
    const { code, output } = await promtool(['check', 'rules', file]);
    expect(output).toContain('SUCCESS');
    expect(code).toBe(0);
  });

  it('use only series the gateway exports', async () => {
    const exported = await exportedSeries();
    const used = metricNames([await rules()]);
    expect(used.size).toBeGreaterThan(0);
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
  });
});
