import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis.js';

export interface NginxServer {
  readonly port: number;
  /** nginx's error log so far (a failing test prints it). */
  errorLog(): Promise<string>;
  close(): Promise<void>;
}

const START_DEADLINE_MS = 10_000;
const CONNECT_RETRY_MS = 20;
/** Debian installs nginx in /usr/sbin, which a non-root PATH often lacks. */
const SEARCH_PATH = `${process.env.PATH ?? ''}:/usr/sbin:/usr/local/sbin`;

/**
 * The whole nginx.conf: one foreground process (no daemon, no master), every path inside `dir`, and `server`
 * (directives of one server block, without `listen`) listening on loopback `port`.
 */
function nginxConf(dir: string, port: number, server: string): string {
  return `daemon off;
master_process off;
worker_processes 1;
error_log ${dir}/error.log info;
pid ${dir}/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
${server}
  }
}
`;
}

function spawnNginx(dir: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], {
      stdio: 'ignore',
      env: { ...process.env, PATH: SEARCH_PATH },
    });
    child.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'ENOENT' ? new Error('nginx is not installed; run `apt-get install nginx` (Debian package nginx) to run the forward-auth tests') : error),
    );
    child.once('spawn', () => resolve(child));
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitUntilListening(port: number, child: ChildProcess, errorLog: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + START_DEADLINE_MS;
  while (!(await accepts(port))) {
    if (child.exitCode !== null) throw new Error(`nginx exited with code ${child.exitCode}:\n${await errorLog()}`);
    if (Date.now() > deadline) throw new Error(`nginx did not listen on port ${port}:\n${await errorLog()}`);
    await new Promise((resolve) => setTimeout(resolve, CONNECT_RETRY_MS));
  }
}

/** A real nginx (Debian package `nginx`) in the foreground on a free loopback port, serving one server block. */
export async function startNginx(server: string): Promise<NginxServer> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-nginx-'));
  const port = await freePort();
  await writeFile(join(dir, 'nginx.conf'), nginxConf(dir, port, server));
  const errorLog = (): Promise<string> => readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
  const child = await spawnNginx(dir);
  try {
    await waitUntilListening(port, child, errorLog);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    port,
    errorLog,
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGQUIT');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
