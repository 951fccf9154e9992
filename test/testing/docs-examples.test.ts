import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

/**
 * docs/testing.md must not rot: every code block preceded by `<!-- file: NAME -->` is written to a fresh directory
 * outside the repository, exactly as printed, and run the way a team would run it — with `authgate` resolved as a
 * package (a node_modules link to this checkout, its sources picked through the `source` export condition).
 */
const ROOT = resolve(import.meta.dirname, '../..');
const DOC = join(ROOT, 'docs/testing.md');
const run = promisify(execFile);
const RUN_TIMEOUT_MS = 60_000;

function examples(markdown: string): Map<string, string> {
  const found = new Map<string, string>();
  const block = /<!-- file: ([\w.-]+) -->\s*```\w*\n([\s\S]*?)\n```/g;
  for (const match of markdown.matchAll(block)) found.set(match[1]!, `${match[2]!}\n`);
  return found;
}

let dir: string;
let files: Map<string, string>;

beforeAll(async () => {
  files = examples(await readFile(DOC, 'utf8'));
  dir = await mkdtemp(join(tmpdir(), 'authgate-docs-'));
  await mkdir(join(dir, 'node_modules'));
  await symlink(ROOT, join(dir, 'node_modules/authgate'), 'dir');
  for (const name of ['vitest', 'tsx']) await symlink(join(ROOT, 'node_modules', name), join(dir, 'node_modules', name), 'dir');
  for (const [name, text] of files) await writeFile(join(dir, name), text);
  await writeFile(
    join(dir, 'vitest.config.mjs'),
    "export default { resolve: { conditions: ['source'] }, ssr: { resolve: { conditions: ['source'] } } };\n",
  );
});

/** Runs a command in the example directory; resolves to its output whatever the exit code. */
async function inExamples(command: string, args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd: dir, timeout: RUN_TIMEOUT_MS, env: { ...process.env, NODE_OPTIONS: '', VITEST: '', NO_COLOR: '1', FORCE_COLOR: '0' } });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

describe('docs/testing.md examples, run as written', () => {
  it('has the vitest and the node:test example', () => {
    expect([...files.keys()]).toEqual(['orders.test.ts', 'orders.node.test.mjs']);
  });

  it('the vitest example passes its three tests', async () => {
    const vitest = join(ROOT, 'node_modules/vitest/vitest.mjs');
    const result = await inExamples(process.execPath, [vitest, 'run', '--root', dir, '--config', join(dir, 'vitest.config.mjs'), 'orders.test.ts']);
    expect(result.output).toMatch(/Tests\s+3 passed/);
    expect(result.code).toBe(0);
  });

  it('the node:test example passes its two tests', async () => {
    const result = await inExamples(process.execPath, ['--conditions=source', '--import', 'tsx', '--test', 'orders.node.test.mjs']);
    expect(result.output).toContain('# pass 2');
    expect(result.output).toContain('# fail 0');
    expect(result.code).toBe(0);
  });
});
