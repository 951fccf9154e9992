import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

/**
 * The average a request body must keep up while it streams: Kestrel's default floor. A pause-only timeout never
 * fires for a body trickled a byte at a time, and such a body holds the upstream connection it streams to for as
 * long as the client likes (slow POST); at this floor a client pays for every connection it holds.
 */
const MIN_BODY_BYTES_PER_SECOND = 240;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `tooSlow` when, over a whole `windowMs`, the client sent less than the floor while the gateway was reading
 * its body: a window in which the body was held back (the upstream not taking it) is not the client's doing.
 * Returns the function that stops watching; the watch ends by itself with the body.
 */
export function watchBodyRate(req: IncomingMessage, socket: Socket, windowMs: number, tooSlow: () => void): () => void {
  // Timers take at most 2^31-1 ms; a longer window would fire at once (and every millisecond).
  const window = Math.min(windowMs, MAX_TIMER_MS);
  const floor = (MIN_BODY_BYTES_PER_SECOND * window) / 1000;
  let mark = socket.bytesRead;
  let heldBack = false;
  const onPause = (): void => {
    heldBack = true;
  };
  const timer = setInterval(() => {
    const read = socket.bytesRead;
    if (!heldBack && req.readableFlowing === true && read - mark < floor) tooSlow();
    mark = read;
    heldBack = req.readableFlowing !== true;
  }, window);
  timer.unref();
  const stop = (): void => {
    clearInterval(timer);
    req.off('pause', onPause);
  };
  req.on('pause', onPause);
  req.once('end', stop);
  return stop;
}
