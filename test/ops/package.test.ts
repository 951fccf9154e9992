import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

/**
 * What `npm publish` would ship: `npm pack --dry-run --json` (which builds through `prepare`) lists the compiled
 * output with its declarations, the bin, README, LICENSE, CHANGELOG and SECURITY, and nothing from the sources,
 * tests or secrets; the `exports` entry points resolve and export what they promise.
 */

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface PackageJson {
  license: string;
  bin: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>;
}

let packed: string[];
let pkg: PackageJson;

beforeAll(async () => {
  pkg = JSON.parse(await readFile(`${REPO}package.json`, 'utf8')) as PackageJson;
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts=false'], { cwd: REPO, maxBuffer: 16 * 1024 * 1024 });
  const [report] = JSON.parse(stdout.slice(stdout.indexOf('['))) as { files: { path: string }[] }[];
  packed = (report?.files ?? []).map((file) => file.path);
}, 240_000);

describe('npm pack', () => {
  it('ships the bin, README, LICENSE, CHANGELOG, SECURITY and the bundled config', () => {
    for (const file of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'SECURITY.md', 'gateway.yaml', ...Object.values(pkg.bin)]) {
      expect(packed).toContain(file.replace(/^\.\//, ''));
    }
  });

  it('ships compiled JavaScript with declarations for every entry point', () => {
    expect(packed).toContain('dist/cli/main.js');
    for (const target of Object.values(pkg.exports)) {
      if (typeof target === 'string') continue;
      expect(packed).toContain(target.default.replace(/^\.\//, ''));
      expect(packed).toContain(target.types.replace(/^\.\//, ''));
    }
  });

  it('ships no sources, tests, benchmarks, deploy files, source maps or secrets', () => {
    const unwanted = /^(src|test|bench|deploy|node_modules|\.ci)\/|\.(ts|map|pem|key|env)$|(^|\/)\.env|tsconfig/;
    expect(packed.filter((file) => unwanted.test(file) && !file.endsWith('.d.ts'))).toEqual([]);
  });

  it('is Apache-2.0 with the full license text', async () => {
    expect(pkg.license).toBe('Apache-2.0');
    const license = await readFile(`${REPO}LICENSE`, 'utf8');
    expect(license).toContain('Apache License');
    expect(license).toContain('Version 2.0, January 2004');
    expect(license).toContain('END OF TERMS AND CONDITIONS');
  });
});

describe('exports', () => {
  /** Imports the package by its own name (self-reference through `exports`) in a fresh Node process. */
  async function exported(specifier: string): Promise<Record<string, string>> {
    const script = `const m = await import(${JSON.stringify(specifier)}); console.log(JSON.stringify(Object.fromEntries(Object.entries(m).map(([k, v]) => [k, typeof v]))));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO });
    return JSON.parse(stdout) as Record<string, string>;
  }

  it('authgate: startGateway and loadConfig', async () => {
    expect(await exported('authgate')).toMatchObject({ startGateway: 'function', loadConfig: 'function', parseConfig: 'function', formatProblem: 'function' });
  });

  it('authgate/config: loadConfig, parseConfig and formatProblem, without the gateway', async () => {
    const names = await exported('authgate/config');
    expect(names).toEqual({ loadConfig: 'function', parseConfig: 'function', formatProblem: 'function' });
  });

  it('does not expose internal modules', async () => {
    await expect(exported('authgate/dist/gateway/gateway.js')).rejects.toThrow(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
  });
});
