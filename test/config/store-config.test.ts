import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCheck } from '../../src/cli/check.js';
import { formatProblem, parseConfig } from '../../src/config/load.js';

const MINIMAL = `version: 1
issuers:
  idp:
    issuer: https://idp.example.com/
    discovery: true
    audiences: [api]
upstreams:
  api: { url: http://127.0.0.1:3000 }
routes:
  - { name: all, match: { path: /** }, upstream: api }
`;
const FILE = '/etc/authgate/gateway.yaml';

function read(extra: string, env: NodeJS.ProcessEnv = {}) {
  const { config, problems } = parseConfig(`${MINIMAL}${extra}`, FILE, env);
  return { config, problems: problems.map(formatProblem) };
}

describe('store.redis topologies', () => {
  it('reads Sentinel: the group, the sentinels, both passwords and TLS with a CA file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'authgate-store-'));
    await writeFile(join(dir, 'ca.pem'), 'not checked here');
    const yaml = `${MINIMAL}store:
  redis:
    sentinel: { name: mymaster, nodes: ["10.0.0.1:26379", "sentinel-2.internal:26379"], password: \${SENTINEL_PASSWORD} }
    password: \${REDIS_PASSWORD}
    tls: { ca_file: ca.pem }
`;
    const { config, problems } = parseConfig(yaml, join(dir, 'gateway.yaml'), { SENTINEL_PASSWORD: 's3', REDIS_PASSWORD: 'r3' });
    expect(problems.map(formatProblem)).toEqual([]);
    expect(config?.store.redis).toEqual({
      topology: { kind: 'sentinel', name: 'mymaster', nodes: [{ host: '10.0.0.1', port: 26379 }, { host: 'sentinel-2.internal', port: 26379 }], password: 's3' },
      password: 'r3',
      tls: { caFile: join(dir, 'ca.pem') },
    });
  });

  it('reads a Cluster’s seed nodes and password; TLS off unless asked for', () => {
    const { config, problems } = read('store:\n  redis:\n    cluster: { nodes: ["10.0.1.1:6379", "[fd00::1]:6380"] }\n    password: pw\n');
    expect(problems).toEqual([]);
    expect(config?.store.redis).toEqual({
      topology: { kind: 'cluster', nodes: [{ host: '10.0.1.1', port: 6379 }, { host: 'fd00::1', port: 6380 }] },
      password: 'pw',
      tls: undefined,
    });
  });

  it('`tls: {}` trusts the system CAs', () => {
    const { config } = read('store:\n  redis:\n    cluster: { nodes: ["10.0.1.1:6379"] }\n    tls: {}\n');
    expect(config?.store.redis?.tls).toEqual({ caFile: undefined });
  });

  it.each([
    ['neither sentinel nor cluster', '    password: pw\n', '13:5: store.redis: needs sentinel or cluster (a single node is written as a redis:// URL)'],
    ['both', '    sentinel: { name: m, nodes: ["a:1"] }\n    cluster: { nodes: ["b:2"] }\n', '14:14: store.redis.cluster: sentinel and cluster exclude each other'],
    ['a sentinel without a name', '    sentinel: { nodes: ["a:1"] }\n', '13:15: store.redis.sentinel.name: required'],
    ['no nodes', '    cluster: { nodes: [] }\n', '13:23: store.redis.cluster.nodes: must not be empty'],
    ['a node without a port', '    cluster: { nodes: ["10.0.0.1"] }\n', '13:24: store.redis.cluster.nodes[0]: expected host:port, got "10.0.0.1"'],
    ['port 0', '    cluster: { nodes: ["10.0.0.1:0"] }\n', '13:24: store.redis.cluster.nodes[0]: needs a port'],
    ['an unknown key', '    cluster: { nodes: ["a:1"], seeds: [] }\n', '13:32: store.redis.cluster.seeds: unknown key "seeds"'],
    ['a missing CA file', '    cluster: { nodes: ["a:1"] }\n    tls: { ca_file: /nonexistent/ca.pem }\n', '14:21: store.redis.tls.ca_file: file not found: /nonexistent/ca.pem'],
  ])('refuses %s, naming file:line:col and the key', (_case, lines, expected) => {
    expect(read(`store:\n  redis:\n${lines}`).problems).toEqual([`${FILE}:${expected}`]);
  });

  it('`check` prints where Redis is without its passwords', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'authgate-store-'));
    const file = join(dir, 'gateway.yaml');
    await writeFile(file, `${MINIMAL}store:\n  redis:\n    sentinel: { name: mymaster, nodes: ["10.0.0.1:26379"], password: hidden-1 }\n    password: hidden-2\n`);
    const stdout = new PassThrough();
    const chunks: Buffer[] = [];
    stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    expect(await runCheck(file, { stdout, stderr: new PassThrough() } as never)).toBe(0);
    const summary = Buffer.concat(chunks).toString();
    expect(summary).toContain('store      redis sentinel "mymaster" via 10.0.0.1:26379');
    expect(summary).not.toContain('hidden');
  });
});

describe('rate_limits mode', () => {
  const limits = (entries: string) => read(`rate_limits:\n${entries}`);

  it('defaults to exact below 100 a window and to leased from 100', () => {
    const { config, problems } = limits('  login: { key: ip, limit: 5, window: 1m }\n  edge: { key: ip, limit: 99, window: 1s }\n  api: { key: ip, limit: 100, window: 1s }\n');
    expect(problems).toEqual([]);
    expect([...(config?.rateLimits.values() ?? [])].map((limit) => [limit.name, limit.mode])).toEqual([['login', 'exact'], ['edge', 'exact'], ['api', 'leased']]);
  });

  it('takes an explicit mode either way', () => {
    const { config } = limits('  login: { key: ip, limit: 5, window: 1m, mode: leased }\n  api: { key: ip, limit: 1000, window: 1s, mode: exact }\n');
    expect([...(config?.rateLimits.values() ?? [])].map((limit) => limit.mode)).toEqual(['leased', 'exact']);
  });

  it('refuses another mode, naming file:line:col', () => {
    expect(limits('  api: { key: ip, limit: 1000, window: 1s, mode: lazy }\n').problems).toEqual([
      `${FILE}:12:50: rate_limits.api.mode: "lazy" is not one of "leased", "exact"`,
    ]);
  });
});
