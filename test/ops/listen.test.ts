import { createServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { closeServer, formatHostPort, listen } from '../../src/lib/listen.js';

describe('formatHostPort', () => {
  it.each([
    ['127.0.0.1', 8080, '127.0.0.1:8080'],
    ['localhost', 9090, 'localhost:9090'],
    ['::1', 8080, '[::1]:8080'],
    ['::', 443, '[::]:443'],
  ])('%s and %i → %s', (host, port, expected) => {
    expect(formatHostPort(host, port)).toBe(expected);
  });
});

describe('listen', () => {
  const servers = new Set<ReturnType<typeof createServer>>();
  afterEach(async () => {
    await Promise.all([...servers].map((server) => closeServer(server)));
    servers.clear();
  });
  const server = (): ReturnType<typeof createServer> => {
    const created = createServer((_req, res) => res.end('up'));
    servers.add(created);
    return created;
  };

  it('resolves to the URL of the port the OS picked, which answers', async () => {
    const url = await listen(server(), { host: '127.0.0.1', port: 0 });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
    expect(await (await fetch(url)).text()).toBe('up');
  });

  it('rejects with the bind error when the port is taken', async () => {
    const url = await listen(server(), { host: '127.0.0.1', port: 0 });
    const port = Number(new URL(url).port);
    await expect(listen(server(), { host: '127.0.0.1', port }, { exclusive: true })).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});
