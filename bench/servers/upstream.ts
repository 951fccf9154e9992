/**
 * The bench upstream: a canned HTTP/1.1 response for every request head it reads, straight on the TCP socket. It
 * shares a core with the load generator, so it must cost next to nothing: a Node `http` server at ~30 µs per
 * request would leave the proxies under test idle. Only body-less requests are supported (the bench sends GETs).
 * Prints `{"port":N}` once listening.
 */
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

const BODY = '{"ok":true}\n';
const RESPONSE = Buffer.from(
  `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length}\r\nkeep-alive: timeout=65\r\n\r\n${BODY}`,
);
const END_OF_HEAD = Buffer.from('\r\n\r\n');

const server = createServer((socket) => {
  // The last bytes of the previous chunk, so a head split across reads is still found once.
  let carry: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    const data = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
    let heads = 0;
    let from = 0;
    for (let at = data.indexOf(END_OF_HEAD, from); at !== -1; at = data.indexOf(END_OF_HEAD, from)) {
      heads += 1;
      from = at + END_OF_HEAD.length;
    }
    carry = data.subarray(Math.max(from, data.length - (END_OF_HEAD.length - 1)));
    if (heads === 1) socket.write(RESPONSE);
    else if (heads > 1) socket.write(Buffer.concat(Array.from({ length: heads }, () => RESPONSE)));
  });
  socket.on('error', () => socket.destroy());
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
