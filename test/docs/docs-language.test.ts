import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * README.md and docs/ speak to users: no references to the project's internal contract, issue numbers or
 * workspace, no benchmark claims from someone else's machine, every relative link resolves, and docs/README.md
 * maps every page.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const DOCS = join(ROOT, 'docs');
const pages = ['README.md', ...readdirSync(DOCS).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];
const text = (page: string): string => readFileSync(join(ROOT, page), 'utf8');

const FORBIDDEN: [string, RegExp][] = [
  ['a contract section', /SPEC §|SPEC\.md/],
  ['the workspace', /\.\.\/shared/],
  ['an issue number', /\bissue [0-9]+/i],
  ["other people's test runs", /other (engineers|people)'?s?'? (test )?runs|shared with other/i],
];

/** Lines of `page` that match `pattern`, as `page:line: text`. */
function matches(page: string, pattern: RegExp): string[] {
  return text(page)
    .split('\n')
    .flatMap((line, index) => (pattern.test(line) ? [`${page}:${index + 1}: ${line.trim()}`] : []));
}

describe('user-facing docs', () => {
  it.each(FORBIDDEN)('never mention %s', (_what, pattern) => {
    expect(pages.flatMap((page) => matches(page, pattern))).toEqual([]);
  });

  it('link only to files that exist', () => {
    const broken = pages.flatMap((page) =>
      [...text(page).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)]
        .map((match) => match[1] as string)
        .filter((target) => !/^[a-z]+:/.test(target) && !existsSync(resolve(dirname(join(ROOT, page)), target)))
        .map((target) => `${page}: ${target}`),
    );
    expect(broken).toEqual([]);
  });

  it('docs/README.md maps every page of docs/', () => {
    const map = text('docs/README.md');
    const unmapped = pages.filter((page) => page.startsWith('docs/') && page !== 'docs/README.md' && !map.includes(`](${page.slice('docs/'.length)})`));
    expect(unmapped).toEqual([]);
  });

  it('has the reference pages', () => {
    for (const page of ['configuration', 'cli', 'endpoints', 'headers', 'metrics']) expect(pages).toContain(`docs/${page}.md`);
  });

  it('performance notes describe what `npm run bench` measures on your machine, not a results table', () => {
    const performance = text('docs/performance.md');
    expect(performance).toContain('npm run bench');
    expect(performance).not.toMatch(/^## Results/m);
  });
});
