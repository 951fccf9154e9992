import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

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
  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      reject(
        error.code === 'EADDRINUSE' || error.code === 'EACCES'
          ? new DemoListenError(
              `${what}: cannot listen on ${address.host}:${address.port} (${error.code}); ` +
                `set ${envVar} to use another port, e.g. ${envVar}=${exampleUrl(address)}`,
            )
          : error,
      );
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(address.port, address.host);
  });
  return (server.address() as AddressInfo).port;
}

function exampleUrl(address: DemoAddress): string {
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `http://${host}:${address.port + 100}${address.basePath}`;
}

/** The URL the server really answers on (differs from the requested one only when port 0 was asked for). */
export function boundUrl(requested: string, address: DemoAddress, port: number): string {
  if (address.port === port) return requested;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `http://${host}:${port}${address.basePath}`;
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
