import { describe, expect, it } from 'vitest';
import { closeFrame, FrameBoundaries } from '../../src/proxy/websocket-frames.js';
import { closeOf, encodeFrame, FrameReader, OPCODE } from '../helpers/websocket.js';

/**
 * Frame boundaries found from headers alone, wherever the stream is cut: the close frame that ends a WebSocket
 * for an ended credential goes out exactly where one of these says a frame ended.
 */

/** One frame of each length encoding (7-bit, 16-bit, 64-bit), masked and not, and an empty one. */
const FRAMES = [
  encodeFrame(OPCODE.text, 'short', false),
  encodeFrame(OPCODE.binary, Buffer.alloc(126, 1), true),
  encodeFrame(OPCODE.binary, Buffer.alloc(0x10000, 2), false),
  encodeFrame(OPCODE.text, '', true),
  encodeFrame(OPCODE.binary, Buffer.alloc(300, 3), false),
];
const STREAM = Buffer.concat(FRAMES);
const FRAME_ENDS = FRAMES.reduce<number[]>((ends, frame) => [...ends, (ends.at(-1) ?? 0) + frame.length], []);

/** Offsets within a few bytes of each frame end: inside headers, inside payloads, exactly at the end. */
const CUTS = [...new Set(FRAME_ENDS.flatMap((end) => Array.from({ length: 21 }, (_, i) => end - 10 + i)))].filter(
  (cut) => cut > 0 && cut <= STREAM.length,
);

/** A tracker that has followed STREAM up to `cut`, fed in pieces of `size`. */
function followedTo(cut: number, size: number): FrameBoundaries {
  const frames = new FrameBoundaries();
  for (let start = 0; start < cut; start += size) frames.advance(STREAM.subarray(start, Math.min(start + size, cut)), false);
  return frames;
}

describe('FrameBoundaries', () => {
  it.each([1, 2, 3, 13, 14, 1000])('is at a boundary exactly at frame ends when the stream comes in pieces of %i bytes', (size) => {
    const atBoundary = CUTS.filter((cut) => followedTo(cut, size).atBoundary);
    expect(atBoundary).toEqual(CUTS.filter((cut) => FRAME_ENDS.includes(cut)));
  });

  // Every frame here is at least 6 bytes long, so a cut 5 bytes before an end lies inside that frame.
  it('asked to stop, stops at the first frame end in a chunk, and at once when already at one', () => {
    const stops = FRAME_ENDS.slice(0, -1).flatMap((end) =>
      [1, 3, 5].map((before) => followedTo(end - before, 7).advance(STREAM.subarray(end - before, end + 40), true)),
    );
    expect(stops).toEqual(FRAME_ENDS.slice(0, -1).flatMap(() => [1, 3, 5]));
    expect(followedTo(FRAME_ENDS[0] as number, 7).advance(STREAM.subarray(FRAME_ENDS[0] as number), true)).toBe(0);
  });
});

describe('closeFrame', () => {
  it('writes status and reason, masked for an upstream and plain for a client, and cuts a reason to 123 bytes', () => {
    const reader = new FrameReader();
    reader.push(closeFrame(1008, 'The access token expired', false));
    reader.push(closeFrame(1008, 'The access token expired', true));
    reader.push(closeFrame(1008, 'x'.repeat(200), false));
    expect(reader.frames.map((frame) => ({ ...closeOf(frame), fin: frame.fin, masked: frame.masked }))).toEqual([
      { opcode: OPCODE.close, status: 1008, reason: 'The access token expired', fin: true, masked: false },
      { opcode: OPCODE.close, status: 1008, reason: 'The access token expired', fin: true, masked: true },
      { opcode: OPCODE.close, status: 1008, reason: 'x'.repeat(123), fin: true, masked: false },
    ]);
  });
});
