import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ChainableCommander, type RedisOptions } from 'ioredis';
import type { RedisConfig, RedisNode } from '../config/types.js';

/** A hung Redis must not hold requests: hot-path commands give up after this and the insurance limiter answers. */
const COMMAND_TIMEOUT_MS = 500;
const CONNECT_TIMEOUT_MS = 2_000;
const RECONNECT_BASE_MS = 100;
const RECONNECT_CAP_MS = 2_000;

/** Exponential backoff with jitter, so N replicas do not reconnect in lock step after an outage. */
export function reconnectDelayMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export type RedisClient = Redis | Cluster;

export interface Connections {
  readonly commands: RedisClient;
  /** Closes the current subscriber connection and stops replacing it. */
  closeSubscriber(): Promise<void>;
}

const BASE_OPTIONS = {
  connectionName: 'authgate',
  connectTimeout: CONNECT_TIMEOUT_MS,
  commandTimeout: COMMAND_TIMEOUT_MS,
  maxRetriesPerRequest: 1,
  autoResubscribe: false,
} satisfies RedisOptions;

/**
 * A demoted primary (a Sentinel failover) answers writes with READONLY until its clients are killed; reconnecting
 * at once asks the sentinels for the new primary instead of failing every write until then.
 */
function reconnectOnReadOnly(error: Error): boolean {
  return error.message.startsWith('READONLY');
}

function tlsOptions(config: RedisConfig): ConnectionOptions | undefined {
  if (config.tls === undefined) return undefined;
  // Read once per (re)load, never per request.
  return config.tls.caFile === undefined ? {} : { ca: readFileSync(config.tls.caFile) };
}

/**
 * The command connection and one subscriber connection for the configured topology. `onSubscriber` gets the
 * subscriber, and on a Cluster every replacement: a subscriber on a node that went away is replaced by one on
 * another node (a non-sharded PUBLISH reaches every node of a cluster, replicas included).
 */
export function connect(config: RedisConfig, onSubscriber: (subscriber: Redis) => void): Connections {
  const tls = tlsOptions(config);
  const topology = config.topology;
  const nodeOptions: RedisOptions = { ...BASE_OPTIONS, password: config.password, tls };
  if (topology.kind === 'cluster') {
    const commands = new Cluster(topology.nodes.map(asNode), {
      redisOptions: nodeOptions,
      enableOfflineQueue: false,
      scaleReads: 'master',
      clusterRetryStrategy: (attempt) => reconnectDelayMs(attempt),
      slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
      // Seeds are connected to by the name given, not a resolved address, so TLS checks the certificate against
      // it (managed clusters such as ElastiCache present certificates for names, not IPs).
      ...(tls === undefined ? {} : { dnsLookup: (address: string, done: (error: null, address: string) => void) => done(null, address) }),
    });
    return { commands, closeSubscriber: rotateSubscriber(commands, topology.nodes, nodeOptions, onSubscriber) };
  }
  const options: RedisOptions = {
    ...nodeOptions,
    enableOfflineQueue: false,
    retryStrategy: (attempt) => reconnectDelayMs(attempt),
    reconnectOnError: reconnectOnReadOnly,
    ...(topology.kind === 'sentinel'
      ? {
          sentinels: topology.nodes.map(asNode),
          name: topology.name,
          sentinelPassword: topology.password,
          enableTLSForSentinelMode: tls !== undefined,
          sentinelTLS: tls,
          // Listens for +switch-master on the sentinels, so a failover is followed before the old primary is gone.
          failoverDetector: true,
        }
      : {}),
  };
  const create = (): Redis => (topology.kind === 'url' ? new Redis(topology.url, options) : new Redis(options));
  const commands = create();
  const subscriber = create();
  onSubscriber(subscriber);
  return { commands, closeSubscriber: () => shutDown(subscriber) };
}

function asNode(node: RedisNode): { host: string; port: number } {
  return { host: node.host, port: node.port };
}

function rotateSubscriber(
  cluster: Cluster,
  seeds: readonly RedisNode[],
  options: RedisOptions,
  onSubscriber: (subscriber: Redis) => void,
): () => Promise<void> {
  let closing = false;
  let attempt = 0;
  let turn = 0;
  let current: Redis | undefined;
  let pending: NodeJS.Timeout | undefined;
  const nextNode = (): { host: string; port: number } => {
    const known = cluster.nodes('all').map((node) => ({ host: node.options.host ?? '', port: node.options.port ?? 0 }));
    const candidates = known.length > 0 ? known : seeds.map(asNode);
    return candidates[turn++ % candidates.length] as { host: string; port: number };
  };
  const open = (): void => {
    pending = undefined;
    const subscriber = new Redis({ ...options, ...nextNode(), enableOfflineQueue: false, retryStrategy: () => null });
    current = subscriber;
    subscriber.once('ready', () => (attempt = 0));
    subscriber.once('end', () => {
      if (!closing) pending = setTimeout(open, reconnectDelayMs(attempt++));
    });
    onSubscriber(subscriber);
  };
  open();
  return async () => {
    closing = true;
    clearTimeout(pending);
    if (current !== undefined) await shutDown(current);
  };
}

/** Closes a client without waiting on a peer that may never answer (a hung Redis keeps a FIN unanswered). */
export async function shutDown(client: RedisClient): Promise<void> {
  if (client.status === 'ready') await client.quit().catch(() => undefined);
  if (client.status === 'end') return;
  // Between reconnect attempts there is no socket: cancelling the pending attempt is all there is to close.
  const ended = client.status === 'reconnecting' ? Promise.resolve() : new Promise<void>((resolve) => client.once('end', resolve));
  client.disconnect();
  if (client instanceof Redis) client.stream?.destroy();
  await ended;
}

/** Runs a MULTI or a pipeline and returns its results; ioredis reports a failed command in it as a value, not a rejection. */
export async function execute(multi: ChainableCommander): Promise<unknown[]> {
  const replies = await multi.exec();
  if (replies === null) throw new Error('Redis transaction aborted');
  return replies.map(([error, result]) => {
    if (error) throw error;
    return result;
  });
}
