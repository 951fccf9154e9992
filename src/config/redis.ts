import { isMap } from 'yaml';
import { formatHostPort } from '../lib/listen.js';
import { existingFile } from './files.js';
import type { Reader, Section, Slot } from './reader.js';
import type { RedisConfig, RedisNode, RedisTopology } from './types.js';
import { parseListen } from './values.js';

/**
 * `store.redis`: a URL, or a mapping naming a Sentinel group or a Cluster's seed nodes, with the data nodes'
 * password and TLS. Empty (`redis: ""`, `redis:` or an empty `${REDIS_URL:-}`) means the in-memory store.
 */
export function readRedis(r: Reader, slot: Slot, baseDir: string): RedisConfig | undefined {
  if (!isMap(slot.node)) {
    const url = r.optionalString(slot) || undefined;
    if (url === undefined) return undefined;
    if (!isRedisUrl(url)) return r.problem(slot, 'expected a redis:// or rediss:// URL');
    return { topology: { kind: 'url', url }, password: undefined, tls: undefined };
  }
  const s = r.section(slot, ['sentinel', 'cluster', 'password', 'tls']);
  const topology = readTopology(r, s, slot);
  const tlsSlot = s.slot('tls');
  const tls = s.has('tls') ? readRedisTls(r, tlsSlot, baseDir) : undefined;
  const password = r.string(s.slot('password'));
  return topology === undefined ? undefined : { topology, password, tls };
}

function readTopology(r: Reader, s: Section, slot: Slot): RedisTopology | undefined {
  if (s.has('sentinel') && s.has('cluster')) return r.problem(s.slot('cluster'), 'sentinel and cluster exclude each other');
  if (s.has('cluster')) {
    const c = r.section(s.slot('cluster'), ['nodes']);
    const nodes = readNodes(r, c.slot('nodes'));
    return nodes === undefined ? undefined : { kind: 'cluster', nodes };
  }
  if (!s.has('sentinel')) return r.problem(slot, 'needs sentinel or cluster (a single node is written as a redis:// URL)');
  const t = r.section(s.slot('sentinel'), ['name', 'nodes', 'password']);
  const nameSlot = t.slot('name');
  const name = r.required(nameSlot) ? r.string(nameSlot) : undefined;
  const nodes = readNodes(r, t.slot('nodes'));
  const password = r.string(t.slot('password'));
  return name === undefined || nodes === undefined ? undefined : { kind: 'sentinel', name, nodes, password };
}

function readNodes(r: Reader, slot: Slot): RedisNode[] | undefined {
  if (!r.required(slot)) return undefined;
  return r.items(slot, (item) => {
    const text = r.text(item);
    if (text === undefined) return undefined;
    const parsed = parseListen(text);
    if (typeof parsed === 'string') return r.problem(item, parsed);
    return parsed.port === 0 ? r.problem(item, 'needs a port') : parsed;
  }, { nonEmpty: true });
}

function readRedisTls(r: Reader, slot: Slot, baseDir: string): RedisConfig['tls'] {
  const s = r.section(slot, ['ca_file']);
  return { caFile: s.has('ca_file') ? existingFile(r, s.slot('ca_file'), baseDir) : undefined };
}

function isRedisUrl(text: string): boolean {
  if (!URL.canParse(text)) return false;
  const url = new URL(text);
  return (url.protocol === 'redis:' || url.protocol === 'rediss:') && url.hostname !== '';
}

/** For summaries printed to terminals and CI logs: where Redis is, without its password. */
export function describeRedis(config: RedisConfig): string {
  const { topology } = config;
  const tls = config.tls === undefined ? '' : ' (TLS)';
  const nodes = (list: readonly RedisNode[]): string => list.map((node) => formatHostPort(node.host, node.port)).join(', ');
  if (topology.kind === 'sentinel') return `redis sentinel "${topology.name}" via ${nodes(topology.nodes)}${tls}`;
  if (topology.kind === 'cluster') return `redis cluster ${nodes(topology.nodes)}${tls}`;
  const url = new URL(topology.url);
  if (url.password !== '') url.password = '***';
  return `redis ${url.href}`;
}
