import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { formatProblem, loadConfig } from '../../src/config/load.js';

/** The Kubernetes examples parse, and every gateway.yaml they carry passes `authgate check`. */

const DEPLOY = fileURLToPath(new URL('../../deploy/kubernetes/', import.meta.url));
const ENV = { AUTHGATE_ADMIN_TOKEN: 'example-admin-token', REDIS_URL: 'redis://redis:6379' };

interface Manifest {
  kind?: string;
  data?: Record<string, string>;
}

const files = (await readdir(DEPLOY)).filter((name) => name.endsWith('.yaml'));

describe.each(files)('deploy/kubernetes/%s', (name) => {
  it('parses as Kubernetes manifests and its embedded config is valid', async () => {
    const documents = parseAllDocuments(await readFile(join(DEPLOY, name), 'utf8'));
    for (const document of documents) expect(document.errors).toEqual([]);
    const manifests = documents.map((document) => document.toJS() as Manifest);
    expect(manifests.every((manifest) => typeof manifest.kind === 'string')).toBe(true);

    for (const manifest of manifests) {
      const config = manifest.kind === 'ConfigMap' ? manifest.data?.['gateway.yaml'] : undefined;
      if (config === undefined) continue;
      const file = join(await mkdtemp(join(tmpdir(), 'authgate-deploy-')), 'gateway.yaml');
      await writeFile(file, config);
      const loaded = await loadConfig(file, ENV);
      expect(loaded.problems.map(formatProblem)).toEqual([]);
    }
  });
});
