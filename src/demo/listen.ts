import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatHostPort, listen } from '../lib/listen.js';

/** A demo listener could not bind; the message says which one and which variable moves it. */
export class DemoListenError extends Error {
  override readonly name = 'DemoListenError';
}

/** Where a demo server listens, read from an `http://host:port[/path]` URL (port 0 = any free port). */
export interface DemoAddress {
  readonly host: string;
  readonly port: number;
  /** No trailing slash; '' for the root. */
  readonly basePath: string;
}

export function demoAddress(url: string, envVar: string): DemoAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DemoListenError(`${envVar}=${url} is not a URL; expected e.g. http://127.0.0.1:9400`);
  }
  if (parsed.protocol !== 'http:') throw new DemoListenError(`${envVar}=${url} must be an http:// URL (the demo runs on loopback)`);
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: parsed.port === '' ? 80 : Number(parsed.port),
    basePath: parsed.pathname.replace(/\/+$/, ''),
  };
}

/** Listen, turning "address in use" into a message that names the server and the variable to change. */
export async function listenForDemo(server: Server, address: DemoAddress, what: string, envVar: string): Promise<number> {
  try {
    await listen(server, address);
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
    if (code !== 'EADDRINUSE' && code !== 'EACCES') throw error;
    throw new DemoListenError(
      `${what}: cannot listen on ${address.host}:${address.port} (${code}); ` +
        `set ${envVar} to use another port, e.g. ${envVar}=${demoUrl(address, address.port + 100)}`,
    );
  }
  return (server.address() as AddressInfo).port;
}

function demoUrl(address: DemoAddress, port: number): string {
  return `http://${formatHostPort(address.host, port)}${address.basePath}`;
}

/** The URL the server really answers on (differs from the requested one only when port 0 was asked for). */
export function boundUrl(requested: string, address: DemoAddress, port: number): string {
  return address.port === port ? requested : demoUrl(address, port);
}
