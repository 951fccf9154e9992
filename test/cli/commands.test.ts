import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli.js';

/** The command line itself, in a real process: --version, --help on every command, usage errors. */

describe('authgate command line', () => {
  it('--version prints the package version and exits 0', async () => {
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const run = await runCli(['--version']);
    expect(run).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' });
  });

  it.each([
    ['start', '--help'],
    ['check', '-h'],
    ['explain', '--help'],
    ['revoke', '-h'],
    ['demo', '--help'],
  ])('authgate %s %s prints that command\'s usage and exits 0', async (command, flag) => {
    const run = await runCli([command, flag]);
    expect(run.code).toBe(0);
    expect(run.stdout.startsWith(`usage: authgate ${command}`)).toBe(true);
    expect(run.stderr).toBe('');
  });

  it('--help without a command lists every command', async () => {
    const run = await runCli(['--help']);
    expect(run.code).toBe(0);
    for (const command of ['start', 'check', 'explain', 'revoke', 'demo', '--version']) expect(run.stdout).toContain(`authgate ${command}`);
  });

  it('an unknown option exits 2 with the command\'s usage on stderr', async () => {
    const run = await runCli(['demo', '--bogus']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("authgate: Unknown option '--bogus'");
    expect(run.stderr).toContain('usage: authgate demo');
    expect(run.stdout).toBe('');
    const check = await runCli(['check', '--offline']);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain('usage: authgate check');
  });

  it('an unknown command exits 2 with the overall usage', async () => {
    const run = await runCli(['serve']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('authgate: unknown command "serve"');
    expect(run.stderr).toContain('authgate explain');
  });
});
