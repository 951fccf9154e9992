import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { formatProblem, loadConfig } from '../../src/config/load.js';
import { hardeningProblems, type PodSpec } from './k8s-manifests.js';

/**
 * deploy/helm/authgate without helm (Debian ships no helm package): each mode's values, merged over values.yaml
 * the way helm merges them, carry a gateway.yaml that passes `authgate check` and the hardened pod settings;
 * the templates put those settings on every container and produce every object the raw manifests have.
 */

const CHART = fileURLToPath(new URL('../../deploy/helm/authgate/', import.meta.url));
const ENV = { AUTHGATE_ADMIN_TOKEN: 'example-admin-token', REDIS_URL: 'redis://redis:6379' };
const MODES = ['sidecar', 'standalone', 'forward-auth'] as const;

type Values = Record<string, unknown>;
const readYaml = async (path: string): Promise<Values> => parse(await readFile(join(CHART, path), 'utf8')) as Values;
const isMap = (value: unknown): value is Values => typeof value === 'object' && value !== null && !Array.isArray(value);

/** helm's merge of -f files: maps merge key by key, anything else (lists included) is replaced. */
function mergeValues(base: Values, override: Values): Values {
  const merged: Values = { ...base };
  for (const [key, value] of Object.entries(override)) {
    const existing = merged[key];
    merged[key] = isMap(existing) && isMap(value) ? mergeValues(existing, value) : value;
  }
  return merged;
}

const valuesFor = async (mode: string): Promise<Values> => mergeValues(await readYaml('values.yaml'), await readYaml(`values-${mode}.yaml`));

/** The pod spec deployment.yaml builds from the values (the same keys, put where the template puts them). */
function podSpecFrom(values: Values): PodSpec {
  const container = (name: string, resources: unknown) => ({ name, securityContext: values.securityContext as Values, resources: resources as PodSpec['containers'][number]['resources'] });
  const app = values.app as Values;
  const containers = [container('authgate', values.resources)];
  if (values.mode === 'sidecar') containers.unshift(container(String(app.name), app.resources));
  return { securityContext: values.podSecurityContext as Values, containers };
}

describe('deploy/helm/authgate', () => {
  it('is a v2 chart named authgate', async () => {
    const chart = await readYaml('Chart.yaml');
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'authgate', type: 'application' });
    expect(String(chart.version)).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it.each(MODES)('values-%s.yaml: its gateway.yaml passes `authgate check`', async (mode) => {
    const values = await valuesFor(mode);
    expect(values.mode).toBe(mode);
    const file = join(await mkdtemp(join(tmpdir(), 'authgate-helm-')), 'gateway.yaml');
    await writeFile(file, stringify(values.config));
    expect((await loadConfig(file, ENV)).problems.map(formatProblem)).toEqual([]);
  });

  it.each(MODES)('values-%s.yaml: every container of the pod is hardened', async (mode) => {
    const values = await valuesFor(mode);
    expect(hardeningProblems(podSpecFrom(values))).toEqual([]);
    expect((values.podSecurityContext as Values).runAsUser).toBe(1000);
  });

  it('templates put the hardened settings on the pod and on every container', async () => {
    const deployment = await readFile(join(CHART, 'templates/deployment.yaml'), 'utf8');
    const containerBlock = deployment.slice(deployment.indexOf('      containers:'), deployment.indexOf('      volumes:'));
    const containers = containerBlock.match(/^ {8}- name: /gm)?.length ?? 0;
    expect(containers).toBe(2); // the app (sidecar mode only) and authgate
    expect(deployment.match(/securityContext: \{\{- toYaml \.Values\.securityContext /g)?.length).toBe(containers);
    expect(deployment.match(/resources: \{\{- toYaml \.Values\.(app\.)?resources /g)?.length).toBe(containers);
    expect(deployment).toContain('securityContext: {{- toYaml .Values.podSecurityContext | nindent 8 }}');
    expect(deployment).toContain('automountServiceAccountToken: false');
  });

  it('templates produce every object the raw manifests have, and no snippet annotation', async () => {
    const texts = await Promise.all((await readdir(join(CHART, 'templates'))).map((name) => readFile(join(CHART, 'templates', name), 'utf8')));
    const kinds = texts.flatMap((text) => [...text.matchAll(/^kind: (\w+)$/gm)].map((match) => match[1]));
    expect(new Set(kinds)).toEqual(new Set(['ConfigMap', 'Deployment', 'NetworkPolicy', 'PodDisruptionBudget', 'Secret', 'Service', 'ServiceMonitor']));
    expect(texts.join('\n')).not.toContain('snippet');
  });
});
