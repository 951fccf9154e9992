import { describe, expect, it } from 'vitest';
import { parseConfig, formatProblem } from '../../src/config/load.js';
import { maskReferences, resolveReference, retypePlainScalar } from '../../src/config/interpolate.js';

describe('maskReferences', () => {
  it.each([
    ['a: ${A}', [{ offset: 3, length: 4, name: 'A', fallback: undefined }], []],
    ['a: ${A:-x y}', [{ offset: 3, length: 9, name: 'A', fallback: 'x y' }], []],
    ['a: ${A:-}', [{ offset: 3, length: 6, name: 'A', fallback: '' }], []],
    ['a: x${A}y${B_2}', [
      { offset: 4, length: 4, name: 'A', fallback: undefined },
      { offset: 9, length: 6, name: 'B_2', fallback: undefined },
    ], []],
    ['a: $A and $$ and $', [], []],
    ['a: ${1A}', [], [3]],
    ['a: ${A', [], [3]],
    ['a: ${A:x}', [], [3]],
    ['a: ${A:-b\n}', [], [3]],
  ])('%j', (source, references, malformed) => {
    const masked = maskReferences(source);
    expect(masked.references).toEqual(references);
    expect(masked.malformed).toEqual(malformed);
    expect(masked.text).toHaveLength(source.length);
    expect(masked.text).not.toContain('${');
  });

  it('keeps neighbouring references apart and leaves the rest of the text as written', () => {
    const { text } = maskReferences('k: ${A}${B} # ${C}');
    expect(text).toBe('k: \uE000\uE000\uE000\uE000\uE001\uE001\uE001\uE001 # \uE000\uE000\uE000\uE000');
  });
});

describe('resolveReference', () => {
  const ref = (fallback?: string) => ({ offset: 0, length: 0, name: 'V', fallback });
  it.each([
    [{ V: 'set' }, undefined, 'set'],
    [{ V: '' }, undefined, ''],
    [{}, undefined, undefined],
    [{ V: 'set' }, 'dflt', 'set'],
    [{ V: '' }, 'dflt', 'dflt'],
    [{}, 'dflt', 'dflt'],
    [{}, '', ''],
  ])('env %j, default %j → %j', (env, fallback, expected) => {
    expect(resolveReference(ref(fallback), env)).toBe(expected);
  });
});

describe('retypePlainScalar', () => {
  it.each([
    ['100', 100],
    ['true', true],
    ['', null],
    ['  ', null],
    ['~', null],
    ['0x10', 16],
    ['abc', 'abc'],
    ['127.0.0.1:8080', '127.0.0.1:8080'],
    ['s3cr3t # not a comment', 's3cr3t # not a comment'],
    ['a: b', 'a: b'],
    ['[1, 2]', '[1, 2]'],
    ['100 # x', '100 # x'],
  ])('%j → %j', (text, value) => {
    expect(retypePlainScalar(text)).toEqual(value);
  });
});

const BASE = `version: 1
server: { listen: \${LISTEN:-127.0.0.1:8080} }
admin:
  token: \${ADMIN_TOKEN:-}
issuers:
  idp:
    issuer: https://idp.example.com/
    secret: "\${SECRET}"
    audiences: [\${AUD:-api}]
    algorithms: [HS256]
upstreams:
  api: { url: \${UPSTREAM:-http://127.0.0.1:3000}, timeout: \${TIMEOUT:-5s} }
rate_limits:
  burst: { key: ip, limit: \${LIMIT:-100}, window: 1s }
routes:
  - { name: all, match: { path: /** }, upstream: api, rate_limit: burst }
`;
const SECRET = 'a-shared-secret-of-32-bytes-or-more';

describe('interpolation in a config', () => {
  it('applies defaults and types unquoted values like YAML would, also inside flow mappings', () => {
    const { config, problems } = parseConfig(BASE, 'gw.yaml', { SECRET });
    expect(problems).toEqual([]);
    expect(config?.server.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(config?.admin.token).toBe('');
    expect(config?.issuers.get('idp')?.audiences).toEqual(['api']);
    expect(config?.upstreams.get('api')?.timeoutMs).toBe(5_000);
    expect(config?.rateLimits.get('burst')?.limit).toBe(100);
  });

  it('uses the environment over defaults, and keeps values with YAML syntax as exact strings', () => {
    const env = { SECRET: `${SECRET} # : [x]`, ADMIN_TOKEN: '12345', LIMIT: '7', LISTEN: '[::1]:9000' };
    const { config, problems } = parseConfig(BASE, 'gw.yaml', env);
    expect(problems).toEqual([]);
    expect(config?.issuers.get('idp')?.keys).toEqual({ kind: 'secret', secret: `${SECRET} # : [x]` });
    expect(config?.admin.token).toBe('12345');
    expect(config?.rateLimits.get('burst')?.limit).toBe(7);
    expect(config?.server.listen).toEqual({ host: '::1', port: 9000 });
  });

  it('reports an unset variable at its position, once, and a value that types wrong at the value', () => {
    const { config, problems } = parseConfig(BASE, 'gw.yaml', { LIMIT: 'many' });
    expect(config).toBeUndefined();
    expect(problems.map(formatProblem)).toEqual([
      'gw.yaml:8:14: issuers.idp.secret: environment variable SECRET is not set (write ${SECRET:-default} to give a default)',
      'gw.yaml:14:28: rate_limits.burst.limit: expected a whole number (the value comes from ${LIMIT})',
    ]);
  });

  it('refuses a variable still holding the example value of the deploy manifests, at its position', () => {
    const { config, problems } = parseConfig(BASE, 'gw.yaml', { SECRET, ADMIN_TOKEN: 'replace-with-the-output-of-openssl-rand-hex-32' });
    expect(config).toBeUndefined();
    expect(problems.map(formatProblem)).toEqual([
      expect.stringMatching(/^gw\.yaml:\d+:\d+: admin\.token: environment variable ADMIN_TOKEN still holds an example value \(replace-with-…\): put your own in its Secret$/),
    ]);
  });

  it('ignores references in comments and reports malformed ones inside values', () => {
    const text = BASE.replace('version: 1', 'version: 1 # ${NOT_READ}').replace('timeout: ${TIMEOUT:-5s}', 'timeout: ${TIMEOUT:5s}');
    const { problems } = parseConfig(text, 'gw.yaml', { SECRET });
    expect(problems.map(formatProblem)).toEqual([
      'gw.yaml:12:60: upstreams.api.timeout: malformed reference, expected ${NAME} or ${NAME:-default}',
    ]);
  });
});
