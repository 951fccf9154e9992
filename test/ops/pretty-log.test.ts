import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/load.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';

/** `logging.format: pretty`: readable lines for a terminal, the same events and fields as the JSON lines. */

const ENTRY = fileURLToPath(new URL('./authgate-from-source.ts', import.meta.url));
const PREAMBLE = 'version: 1\nupstreams:\n  api: { url: http://127.0.0.1:3000 }\nroutes:\n  - { name: all, match: { path: /** }, upstream: api, auth: none }\n';

let upstream: RecordingUpstream;
beforeAll(async () => {
  upstream = await startRecordingUpstream();
});
afterAll(async () => {
  await upstream?.close();
});

describe('logging.format', () => {
  it('accepts json and pretty, defaults to json', () => {
    expect(parseConfig(PREAMBLE, 'gateway.yaml', {}).config?.logging.format).toBe('json');
    for (const format of ['json', 'pretty'] as const) {
      expect(parseConfig(`${PREAMBLE}logging: { format: ${format} }\n`, 'gateway.yaml', {}).config?.logging.format).toBe(format);
    }
  });

  it('refuses anything else with file:line:col and the key', () => {
    const { config, problems } = parseConfig(`${PREAMBLE}logging:\n  format: colour\n`, 'gateway.yaml', {});
    expect(config).toBeUndefined();
    expect(problems.map(formatProblem)).toEqual([expect.stringMatching(/^gateway\.yaml:7:11: logging\.format: .*json.*pretty/)]);
  });

  it('pretty: a running gateway writes readable lines, the access line with its route, path and status', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'authgate-pretty-')), 'gateway.yaml');
    await writeFile(
      file,
      `version: 1\nserver: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\nlogging: { format: pretty }\nupstreams:\n  api: { url: ${upstream.url} }\nroutes:\n  - { name: open, match: { path: /** }, upstream: api, auth: none }\n`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', ENTRY, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = once(child, 'exit');
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    try {
      await expect.poll(() => /authgate listening/.test(output) || child.exitCode !== null, { timeout: 15_000 }).toBe(true);
      const url = /url: "(http:\/\/127\.0\.0\.1:\d+)"/.exec(output)?.[1];
      expect(url, output).toBeDefined();
      expect((await fetch(`${url}/hello/pretty`)).status).toBe(200);
      await expect.poll(() => /INFO.*: request/.test(output), { timeout: 5_000 }).toBe(true);
      const access = output.slice(output.search(/INFO.*: request/));
      expect(access).toMatch(/route: "open"/);
      expect(access).toMatch(/path: "\/hello\/pretty"/);
      expect(access).toMatch(/status: 200/);
      expect(output.split('\n').filter((line) => line.startsWith('{'))).toEqual([]);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });
});
