import { once } from 'node:events';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    expect(check.stderr).not.toContain('did you mean');
  });

  it('suggests the option one typo away', async () => {
    const run = await runCli(['check', '--onlin']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`authgate: Unknown option '--onlin', did you mean "--online"?`);
  });

  it('start on a port another program holds exits 1 naming the setting and the address', async () => {
    const holder = createServer().listen(0, '127.0.0.1');
    await once(holder, 'listening');
    const { port } = holder.address() as AddressInfo;
    try {
      const dir = await mkdtemp(join(tmpdir(), 'authgate-busy-'));
      const file = join(dir, 'gateway.yaml');
      await writeFile(file, `version: 1\nserver: { listen: 127.0.0.1:${port} }\nadmin: { listen: 127.0.0.1:0 }\nupstreams:\n  app: { url: "http://127.0.0.1:9" }\nroutes:\n  - { name: all, match: { path: /** }, upstream: app, auth: none }\n`);
      const run = await runCli(['start', '-c', file]);
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(`authgate: server.listen: cannot listen on 127.0.0.1:${port}: the address is already in use`);
    } finally {
      holder.close();
    }
  });

  it('an unknown command exits 2 with the overall usage', async () => {
    const run = await runCli(['serve']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('authgate: unknown command "serve"');
    expect(run.stderr).toContain('authgate explain');
  });
});
