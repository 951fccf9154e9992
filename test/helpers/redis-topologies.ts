import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { Redis } from 'ioredis';
import { freePort, kill, spawnRedisServer, waitForPong } from './redis.js';

/**
 * Real Redis topologies on loopback for the store tests: a Cluster of three primaries with a replica each, and a
 * primary with a replica watched by three Sentinels. Both require passwords, so the gateway's password settings
 * are exercised too. Start-up waits on what each server reports (CLUSTER INFO, INFO replication, SENTINEL
 * MASTER), within a bounded deadline.
 */

export const DATA_PASSWORD = 'topology-data-password';
export const SENTINEL_PASSWORD = 'topology-sentinel-password';
export const SENTINEL_GROUP = 'authgate-primary';
/** How long a node may be unreachable before the cluster or the sentinels fail it over. */
export const NODE_TIMEOUT_MS = 1_000;
const READY_DEADLINE_MS = 30_000;
const POLL_MS = 50;

interface Node {
  readonly port: number;
  child: ChildProcess;
  readonly args: readonly string[];
}

/** Polls `probe` until it returns true; throws `what` after the deadline. */
export async function waitUntil(what: string, probe: () => Promise<boolean>, deadlineMs = READY_DEADLINE_MS): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** `tls`: the server listens only with TLS, so it is probed with a TLS client (which needs the password) instead of a raw PING. */
async function startNode(args: readonly string[], port: number, tls?: { readonly client: ConnectionOptions; readonly password: string }): Promise<Node> {
  const child = await spawnRedisServer(args);
  if (tls === undefined) await waitForPong(port, child);
  else {
    await waitUntil(`redis-server to answer over TLS on port ${port}`, async () => {
      if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode} on port ${port}`);
      return (await ask(port, tls.password, (client) => client.ping(), tls.client)) === 'PONG';
    });
  }
  return { port, child, args };
}

/** A short-lived admin connection to one server. */
async function ask<T>(port: number, password: string, command: (client: Redis) => Promise<T>, tls?: ConnectionOptions): Promise<T> {
  const client = new Redis({
    host: '127.0.0.1', port, password, tls, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await command(client);
  } finally {
    client.disconnect();
  }
}

function field(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

function runRedisCli(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: READY_DEADLINE_MS }, (error, stdout, stderr) => {
      if ((error as NodeJS.ErrnoException | null)?.code === 'ENOENT') {
        reject(new Error('redis-cli is not installed; run `apt-get install redis-tools` to run the Cluster tests'));
      } else if (error) reject(new Error(`redis-cli ${args.join(' ')} failed: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

/** Calls per command (`INFO commandstats`: `hgetall`, `cluster|slots`…) summed over the data nodes on `ports`. */
async function commandCalls(ports: readonly number[], askNode: Ask): Promise<Record<string, number>> {
  const calls: Record<string, number> = {};
  for (const port of ports) {
    const stats = await askNode(port, DATA_PASSWORD, (client) => client.info('commandstats'));
    for (const [, command, count] of stats.matchAll(/^cmdstat_(\S+?):calls=(\d+)/gm)) {
      calls[command as string] = (calls[command as string] ?? 0) + Number(count);
    }
  }
  return calls;
}

export interface RedisClusterTopology {
  /** Every node, as seeds for `store.redis.cluster.nodes`. */
  readonly nodes: readonly string[];
  /** The port of the primary that holds `key`'s slot now. */
  primaryOf(key: string): Promise<number>;
  /** SIGKILLs the primary holding `key`; resolves with its port once its replica has taken over and the cluster is ok. */
  killPrimaryOf(key: string): Promise<{ killed: number; promoted: number }>;
  /** The primary of some slot, other than the primaries of `keys` and the nodes in `spare`. */
  anotherPrimary(keys: readonly string[], spare: readonly number[]): Promise<number>;
  /** Calls per command served by the live nodes since they started. */
  commandCalls(): Promise<Record<string, number>>;
  /** Ports of the live nodes on which a client named `name` holds a subscription. */
  subscribedNodes(name: string): Promise<number[]>;
  /** SIGKILLs one node; resolves once the others flagged it failed and the cluster is ok again. */
  killNode(port: number): Promise<void>;
  /** Starts a killed node again; resolves once it rejoined (as a replica) and the cluster is ok. */
  revive(port: number): Promise<void>;
  close(): Promise<void>;
}

/** Three primaries and three replicas, `cluster-node-timeout` {@link NODE_TIMEOUT_MS}. */
export async function startRedisCluster(): Promise<RedisClusterTopology> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-cluster-'));
  const nodes = new Map<number, Node>();
  try {
    for (let i = 0; i < 6; i++) {
      const [port, busPort] = [await freePort(), await freePort()];
      const args = [
        '--port', String(port), '--cluster-port', String(busPort), '--bind', '127.0.0.1', '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', String(NODE_TIMEOUT_MS),
        '--dir', dir, '--save', '', '--appendonly', 'no', '--requirepass', DATA_PASSWORD, '--masterauth', DATA_PASSWORD,
      ];
      nodes.set(port, await startNode(args, port));
    }
    const addresses = [...nodes.keys()].map((port) => `127.0.0.1:${port}`);
    await runRedisCli(['-a', DATA_PASSWORD, '--no-auth-warning', '--cluster', 'create', ...addresses, '--cluster-replicas', '1', '--cluster-yes']);
    await waitForCluster([...nodes.keys()]);
  } catch (error) {
    await Promise.all([...nodes.values()].map((node) => kill(node.child)));
    throw error;
  }
  const live = (): number[] => [...nodes.values()].filter((node) => node.child.exitCode === null && node.child.signalCode === null).map((node) => node.port);
  const primaryOf = async (key: string): Promise<number> => {
    const slot = await ask(live()[0] as number, DATA_PASSWORD, (client) => client.cluster('KEYSLOT', key));
    const slots = await ask(live()[0] as number, DATA_PASSWORD, (client) => client.cluster('SLOTS'));
    const primary = slots.find(([from, to]) => slot >= from && slot <= to)?.[2];
    if (primary === undefined) throw new Error(`no node serves slot ${slot}`);
    return primary[1];
  };
  return {
    nodes: [...nodes.keys()].map((port) => `127.0.0.1:${port}`),
    primaryOf,
    async killPrimaryOf(key) {
      const killed = await primaryOf(key);
      await kill((nodes.get(killed) as Node).child);
      let promoted = killed;
      await waitUntil('a replica to take over', async () => {
        promoted = await primaryOf(key);
        return promoted !== killed;
      });
      await waitForCluster(live());
      return { killed, promoted };
    },
    async anotherPrimary(keys, spare) {
      const taken = new Set([...(await Promise.all(keys.map(primaryOf))), ...spare]);
      const slots = await ask(live()[0] as number, DATA_PASSWORD, (client) => client.cluster('SLOTS'));
      const other = slots.map(([, , primary]) => primary?.[1]).find((port) => port !== undefined && !taken.has(port));
      if (other === undefined) throw new Error('every primary holds one of the keys or is spared');
      return other;
    },
    commandCalls: () => commandCalls(live(), ask),
    async subscribedNodes(name) {
      const listed = await Promise.all(live().map(async (port) => ({ port, clients: String(await ask(port, DATA_PASSWORD, (client) => client.call('CLIENT', 'LIST', 'TYPE', 'pubsub'))) })));
      return listed.filter(({ clients }) => clients.includes(` name=${name} `)).map(({ port }) => port);
    },
    async killNode(port) {
      await kill((nodes.get(port) as Node).child);
      await waitUntil(`the cluster to flag ${port} failed`, async () => {
        const view = String(await ask(live()[0] as number, DATA_PASSWORD, (client) => client.call('CLUSTER', 'NODES')));
        // `<id> <ip:port@bus> <flags,…> …`: a node others agree is down is flagged `fail` (`fail?` is one node's suspicion).
        return view.split('\n').some((line) => line.includes(` 127.0.0.1:${port}@`) && (line.split(' ')[2] ?? '').split(',').includes('fail'));
      });
      await waitForCluster(live());
    },
    async revive(port) {
      const node = nodes.get(port) as Node;
      node.child = (await startNode(node.args, port)).child;
      await waitForCluster(live());
    },
    async close() {
      await Promise.all([...nodes.values()].map((node) => kill(node.child)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Every live node says the cluster is ok, knows all six nodes with its bus link to each live one up (a message
 * published on one node reaches another's subscribers over that link), and every replica's link to its primary is up.
 */
async function waitForCluster(ports: readonly number[]): Promise<void> {
  await waitUntil('the cluster to be ok on every node', async () => {
    for (const port of ports) {
      const info = await ask(port, DATA_PASSWORD, (client) => client.cluster('INFO'));
      if (field(info, 'cluster_state') !== 'ok' || field(info, 'cluster_known_nodes') !== '6') return false;
      const links = String(await ask(port, DATA_PASSWORD, (client) => client.cluster('NODES')));
      if (!busLinksUp(links, ports)) return false;
      const replication = await ask(port, DATA_PASSWORD, (client) => client.info('replication'));
      if (field(replication, 'role') === 'slave' && field(replication, 'master_link_status') !== 'up') return false;
    }
    return true;
  });
}

/** `CLUSTER NODES` of one node: every live node it lists is linked (`connected`) and not in a handshake or failed. */
function busLinksUp(nodesText: string, livePorts: readonly number[]): boolean {
  return nodesText.trim().split('\n').every((line) => {
    const [, address = '', flags = '', , , , , linkState] = line.split(' ');
    const port = Number(address.slice(address.indexOf(':') + 1, address.indexOf('@')));
    if (!livePorts.includes(port)) return true;
    return linkState === 'connected' && !/handshake|fail|noaddr/.test(flags);
  });
}

export interface SentinelTopology {
  /** `host:port` of the three sentinels. */
  readonly sentinels: readonly string[];
  /** The primary's port, as the sentinels see it. */
  primary(): Promise<number>;
  /**
   * `SENTINEL FAILOVER`; resolves once every sentinel names the new primary and it acts as one (the old primary
   * is turned into its replica shortly after; a second failover would have to wait for that).
   */
  failover(): Promise<{ from: number; to: number }>;
  /** Calls per command served by the primary and the replica since they started. */
  commandCalls(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

/** A certificate (self-signed: it is its own CA) for 127.0.0.1, for topologies that speak only TLS. */
export interface TopologyTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: Buffer;
}

function tlsArgs(tls: TopologyTls): string[] {
  return [
    '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile, '--tls-ca-cert-file', tls.certFile,
    '--tls-auth-clients', 'no', '--tls-replication', 'yes',
  ];
}

/**
 * A primary and one replica, both with a password, watched by three sentinels (quorum 2) that have one too.
 * With `tls`, every server (sentinels included) listens only with TLS, and replicates and monitors over it.
 */
export async function startSentinels(options: { tls?: TopologyTls } = {}): Promise<SentinelTopology> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-sentinel-'));
  const started: Node[] = [];
  const clientTls = options.tls === undefined ? undefined : { ca: options.tls.certPem };
  const listen = (port: number): string[] => (options.tls === undefined ? ['--port', String(port)] : ['--port', '0', '--tls-port', String(port), ...tlsArgs(options.tls)]);
  const dataArgs = (port: number): string[] => [
    ...listen(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
    '--requirepass', DATA_PASSWORD, '--masterauth', DATA_PASSWORD,
  ];
  const probeTls = (password: string) => (clientTls === undefined ? undefined : { client: clientTls, password });
  const askNode = <T>(port: number, password: string, command: (client: Redis) => Promise<T>): Promise<T> => ask(port, password, command, clientTls);
  const sentinelPorts: number[] = [];
  const dataPorts: number[] = [];
  try {
    const primaryPort = await freePort();
    started.push(await startNode(dataArgs(primaryPort), primaryPort, probeTls(DATA_PASSWORD)));
    const replicaPort = await freePort();
    dataPorts.push(primaryPort, replicaPort);
    started.push(await startNode([...dataArgs(replicaPort), '--replicaof', '127.0.0.1', String(primaryPort)], replicaPort, probeTls(DATA_PASSWORD)));
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const file = join(dir, `sentinel-${port}.conf`);
      await writeFile(file, sentinelConfig(primaryPort, dir));
      started.push(await startNode([file, '--sentinel', ...listen(port)], port, probeTls(SENTINEL_PASSWORD)));
      sentinelPorts.push(port);
    }
    await waitForSentinels(sentinelPorts, primaryPort, askNode);
  } catch (error) {
    await Promise.all(started.map((node) => kill(node.child)));
    throw error;
  }
  const primaryNamedBy = (port: number): Promise<number> =>
    askNode(port, SENTINEL_PASSWORD, async (client) => Number(((await client.call('SENTINEL', 'get-master-addr-by-name', SENTINEL_GROUP)) as string[])[1]));
  const primary = (): Promise<number> => primaryNamedBy(sentinelPorts[0] as number);
  return {
    sentinels: sentinelPorts.map((port) => `127.0.0.1:${port}`),
    primary,
    async failover() {
      const from = await primary();
      await askNode(sentinelPorts[0] as number, SENTINEL_PASSWORD, (client) => client.call('SENTINEL', 'FAILOVER', SENTINEL_GROUP));
      let to = from;
      await waitUntil('every sentinel to name the promoted replica', async () => {
        const named = await Promise.all(sentinelPorts.map((port) => primaryNamedBy(port)));
        to = named[0] as number;
        return to !== from && named.every((port) => port === to);
      });
      await waitUntil('the promoted replica to act as primary', async () => {
        const replication = await askNode(to, DATA_PASSWORD, (client) => client.info('replication'));
        return field(replication, 'role') === 'master';
      });
      return { from, to };
    },
    commandCalls: () => commandCalls(dataPorts, askNode),
    async close() {
      await Promise.all(started.map((node) => kill(node.child)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The port (or TLS port) is given on the command line, after the file. */
function sentinelConfig(primaryPort: number, dir: string): string {
  return [
    'bind 127.0.0.1',
    `dir ${dir}`,
    'sentinel resolve-hostnames yes',
    'sentinel announce-ip 127.0.0.1',
    `requirepass ${SENTINEL_PASSWORD}`,
    `sentinel sentinel-pass ${SENTINEL_PASSWORD}`,
    `sentinel monitor ${SENTINEL_GROUP} 127.0.0.1 ${primaryPort} 2`,
    `sentinel auth-pass ${SENTINEL_GROUP} ${DATA_PASSWORD}`,
    `sentinel down-after-milliseconds ${SENTINEL_GROUP} ${NODE_TIMEOUT_MS}`,
    `sentinel failover-timeout ${SENTINEL_GROUP} 10000`,
    `sentinel parallel-syncs ${SENTINEL_GROUP} 1`,
    '',
  ].join('\n');
}

type Ask = <T>(port: number, password: string, command: (client: Redis) => Promise<T>) => Promise<T>;

/** Every sentinel names `primaryPort`, sees it as a healthy primary with one replica, and knows the two other sentinels; the replica is in sync. */
async function waitForSentinels(sentinelPorts: readonly number[], primaryPort: number, ask: Ask): Promise<void> {
  await waitUntil('the sentinels to agree on the primary and its replica', async () => {
    for (const port of sentinelPorts) {
      const flat = (await ask(port, SENTINEL_PASSWORD, (client) => client.call('SENTINEL', 'MASTER', SENTINEL_GROUP))) as string[];
      const master = new Map<string, string>();
      for (let i = 0; i + 1 < flat.length; i += 2) master.set(flat[i] as string, flat[i + 1] as string);
      if (master.get('port') !== String(primaryPort) || master.get('flags') !== 'master') return false;
      if (master.get('num-slaves') !== '1' || master.get('num-other-sentinels') !== '2') return false;
      const replicas = (await ask(port, SENTINEL_PASSWORD, (client) => client.call('SENTINEL', 'REPLICAS', SENTINEL_GROUP))) as string[][];
      const replica = new Map<string, string>();
      const first = replicas[0] ?? [];
      for (let i = 0; i + 1 < first.length; i += 2) replica.set(first[i] as string, first[i + 1] as string);
      if (replica.get('flags') !== 'slave' || replica.get('master-link-status') !== 'ok') return false;
    }
    const replication = await ask(primaryPort, DATA_PASSWORD, (client) => client.info('replication'));
    return field(replication, 'role') === 'master' && field(replication, 'connected_slaves') === '1';
  });
}
