import type { Server as HttpServer } from 'node:http';
import type { AddressInfo, Server } from 'node:net';

/** `host:port` as URLs and logs write it: an IPv6 address in brackets (`[::1]:8080`). */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export interface ListenOptions {
  /** A cluster worker's private listener: never one shared through the primary. */
  readonly exclusive?: boolean;
  readonly scheme?: 'http' | 'https';
  /** The config key the address comes from, named when binding fails (`server.listen`, `admin.listen`). */
  readonly setting?: string;
}

const BIND_FAILURES: Readonly<Record<string, string>> = {
  EADDRINUSE: 'the address is already in use (by another authgate, or another program)',
  EACCES: 'binding it is not permitted (a port under 1024 needs privileges)',
  EADDRNOTAVAIL: 'no interface of this machine has that address',
};

/**
 * Binds `server` to `address` (port 0 = a free port the OS picks) and resolves to the URL it really answers on;
 * rejects with the bind error (EADDRINUSE, EACCES) instead of leaving it to an unhandled 'error' event.
 */
export function listen(server: Server, address: { readonly host: string; readonly port: number }, options: ListenOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException): void => reject(bindError(error, address, options.setting));
    server.once('error', failed);
    server.listen({ port: address.port, host: address.host, exclusive: options.exclusive ?? false }, () => {
      server.off('error', failed);
      const bound = server.address() as AddressInfo;
      resolve(`${options.scheme ?? 'http'}://${formatHostPort(bound.address, bound.port)}`);
    });
  });
}

/** A bind failure that says which address, from which setting, and why in words. */
function bindError(error: NodeJS.ErrnoException, address: { readonly host: string; readonly port: number }, setting: string | undefined): Error {
  const why = BIND_FAILURES[error.code ?? ''];
  if (why === undefined) return error;
  const message = `${setting === undefined ? '' : `${setting}: `}cannot listen on ${formatHostPort(address.host, address.port)}: ${why}`;
  // code and port stay where Node puts them, for callers that tell one listener's failure from another's.
  return Object.assign(new Error(message, { cause: error }), { code: error.code, port: address.port });
}

/** Stops accepting and ends every open connection, idle or not; resolves once the server has closed. */
export function closeServer(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
