import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { RedisConfig } from '../../src/config/types.js';

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** Kills the server (SIGKILL: clients see the connection drop, as in a crash). */
  stop(): Promise<void>;
  /** Starts it again on the same port: empty, or with its data when it was started with `persist`. */
  restart(): Promise<void>;
  /** Stops it and removes its data directory, if any. */
  close(): Promise<void>;
}

const START_DEADLINE_MS = 10_000;

/** `store.redis` as a URL reads. */
export function redisUrlConfig(url: string): RedisConfig {
  return { topology: { kind: 'url', url }, password: undefined, tls: undefined };
}
const PING_RETRY_MS = 20;

export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** One PING over a raw socket: true on +PONG (or -NOAUTH: it is up, and wants a password), false when nothing listens yet. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.setTimeout(1000, () => socket.destroy());
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(/^(\+PONG|-NOAUTH)/.test(data.toString()));
    });
    socket.once('close', () => resolve(false));
    socket.once('error', () => resolve(false));
  });
}

/** `aofDir` set: every write is fsynced to an append-only file there, so a SIGKILL loses nothing. */
function spawnRedis(port: number, aofDir: string | undefined): Promise<ChildProcess> {
  const persistence = aofDir === undefined ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', aofDir];
  return spawnRedisServer(['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence]);
}

/** redis-server with these arguments (a config file first, or `--sentinel`, as redis-server takes them). */
export function spawnRedisServer(args: readonly string[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'ENOENT'
          ? new Error('redis-server is not installed; run `apt-get install redis-server` to run the store tests')
          : error,
      ),
    );
    child.once('spawn', () => resolve(child));
  });
}

/** Waits until the server on `port` answers PING (a password-protected one answers -NOAUTH, which counts). */
export async function waitForPong(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + START_DEADLINE_MS;
  while (!(await ping(port))) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode} on port ${port}`);
    if (Date.now() > deadline) throw new Error(`redis-server did not answer PING on port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, PING_RETRY_MS));
  }
}

/** SIGKILL, as in a crash; resolves once the process is gone. */
export function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  return exited;
}

/**
 * A real, empty redis-server on a free loopback port: without persistence (a restart comes back empty), or with
 * `persist`, an append-only file in a temp directory removed when it stops for good (`close`).
 */
export async function startRedis(options: { persist?: boolean } = {}): Promise<RedisServer> {
  const port = await freePort();
  const aofDir = options.persist ? await mkdtemp(join(tmpdir(), 'authgate-redis-')) : undefined;
  let child = await spawnRedis(port, aofDir);
  await waitForPong(port, child);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: () => kill(child),
    async restart() {
      await kill(child);
      child = await spawnRedis(port, aofDir);
      await waitForPong(port, child);
    },
    async close() {
      await kill(child);
      if (aofDir !== undefined) await rm(aofDir, { recursive: true, force: true });
    },
  };
}

export interface TcpProxy {
  readonly port: number;
  /** Drops every connection and refuses new ones until `restore`, like a network partition. */
  cut(): void;
  restore(): void;
  /** Keeps every connection open but passes nothing on until `flow`, like a Redis that hangs. */
  stall(): void;
  flow(): void;
  close(): Promise<void>;
}

/** A loopback TCP relay to `targetPort` that a test can cut, to disconnect one client while Redis stays up. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  let open = true;
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server: Server = createServer((client) => {
    track(client);
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    track(upstream);
    clients.add(client);
    client.once('close', () => clients.delete(client));
    client.pipe(upstream).pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dropAll = (): void => {
    for (const socket of sockets) socket.destroy();
  };
  return {
    port: (server.address() as AddressInfo).port,
    cut() {
      open = false;
      dropAll();
    },
    restore() {
      open = true;
    },
    stall() {
      for (const client of clients) client.pause();
    },
    flow() {
      for (const client of clients) client.resume();
    },
    close: () =>
      new Promise<void>((resolve) => {
        dropAll();
        server.close(() => resolve());
      }),
  };
}
