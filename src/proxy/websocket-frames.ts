import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';

/**
 * Frame-level knowledge of a proxied WebSocket (RFC 6455 §5.2), just enough to end one cleanly: where each frame
 * ends, and how to write a close frame. Payloads are never buffered, parsed or unmasked.
 */

/** 2 bytes, up to 8 of extended length, 4 of masking key. */
const MAX_HEADER_BYTES = 14;
const OPCODE_CLOSE = 0x8;
const FIN = 0x80;
const MASKED = 0x80;
/** A control frame's payload is at most 125 bytes: 2 of status, the rest reason. */
const MAX_REASON_BYTES = 123;

/** The length of the frame header starting at `at` in `bytes`, which must hold its first two bytes. */
function headerLength(bytes: Buffer, at: number): number {
  const length7 = (bytes[at + 1] as number) & 0x7f;
  const extended = length7 === 126 ? 2 : length7 === 127 ? 8 : 0;
  return 2 + extended + ((bytes[at + 1] as number) & MASKED ? 4 : 0);
}

/** The payload length of the complete frame header starting at `at` in `bytes`. */
function payloadLength(bytes: Buffer, at: number): number {
  const length7 = (bytes[at + 1] as number) & 0x7f;
  if (length7 < 126) return length7;
  if (length7 === 126) return bytes.readUInt16BE(at + 2);
  // Two 32-bit reads instead of a BigInt: exact up to 2^53, and a longer frame never ends in practice anyway.
  return bytes.readUInt32BE(at + 2) * 2 ** 32 + bytes.readUInt32BE(at + 6);
}

/**
 * Follows one direction of a WebSocket by reading only frame headers, so it knows whether the bytes relayed so
 * far end exactly between two frames. A header split across chunks is collected in a fixed buffer.
 */
export class FrameBoundaries {
  private readonly header = Buffer.alloc(MAX_HEADER_BYTES);
  private headerFill = 0;
  private payloadLeft = 0;

  get atBoundary(): boolean {
    return this.headerFill === 0 && this.payloadLeft === 0;
  }

  /** Follows `chunk` to its end, or with `stopAtBoundary` to the first frame end in it; returns the offset reached. */
  advance(chunk: Buffer, stopAtBoundary: boolean): number {
    let offset = 0;
    while (offset < chunk.length && !(stopAtBoundary && this.atBoundary)) {
      if (this.payloadLeft > 0) {
        const taken = Math.min(this.payloadLeft, chunk.length - offset);
        this.payloadLeft -= taken;
        offset += taken;
      } else {
        offset = this.readHeader(chunk, offset);
      }
    }
    return offset;
  }

  private readHeader(chunk: Buffer, offset: number): number {
    // Usually the whole header is in the chunk: read it in place.
    if (this.headerFill === 0 && chunk.length - offset >= 2 && chunk.length - offset >= headerLength(chunk, offset)) {
      this.payloadLeft = payloadLength(chunk, offset);
      return offset + headerLength(chunk, offset);
    }
    const wanted = this.headerFill < 2 ? 2 : headerLength(this.header, 0);
    const taken = Math.min(wanted - this.headerFill, chunk.length - offset);
    chunk.copy(this.header, this.headerFill, offset, offset + taken);
    this.headerFill += taken;
    if (this.headerFill >= 2 && this.headerFill === headerLength(this.header, 0)) {
      this.payloadLeft = payloadLength(this.header, 0);
      this.headerFill = 0;
    }
    return offset + taken;
  }
}

/** A close frame with `status` and `reason`; `masked` as a client must send it (RFC 6455 §5.3). */
export function closeFrame(status: number, reason: string, masked: boolean): Buffer {
  const reasonBytes = Buffer.from(reason, 'utf8').subarray(0, MAX_REASON_BYTES);
  const payload = Buffer.alloc(2 + reasonBytes.length);
  payload.writeUInt16BE(status, 0);
  reasonBytes.copy(payload, 2);
  if (!masked) return Buffer.concat([Buffer.from([FIN | OPCODE_CLOSE, payload.length]), payload]);
  const mask = randomBytes(4);
  for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (mask[i % 4] as number);
  return Buffer.concat([Buffer.from([FIN | OPCODE_CLOSE, MASKED | payload.length]), mask, payload]);
}

/**
 * Relays one direction of a WebSocket with backpressure. Asked to end, it lets the frame in progress through,
 * then writes its close frame instead of anything further and half-closes the receiving side.
 */
export class FrameRelay {
  private readonly frames = new FrameBoundaries();
  private pendingClose: Buffer | undefined;
  /** Nothing more is relayed: our close frame went out, or the sender hung up. */
  ended = false;

  constructor(
    private readonly from: Duplex,
    private readonly to: Duplex,
  ) {}

  /** Relays `head` (bytes that came with the handshake), then everything `from` sends. */
  start(head: Buffer): void {
    if (head.length > 0) this.relay(head);
    this.from.on('data', (chunk: Buffer) => this.relay(chunk));
    this.to.on('drain', () => this.from.resume());
    // The sender hung up: so do we, as pipe() would (mid-frame or not, nothing more can come).
    this.from.once('end', () => {
      if (this.ended) return;
      this.ended = true;
      this.to.end();
    });
  }

  endWith(close: Buffer): void {
    if (this.ended || this.pendingClose || this.to.destroyed) return;
    this.pendingClose = close;
    if (this.frames.atBoundary) this.finish(close);
  }

  private relay(chunk: Buffer): void {
    if (this.ended) return;
    const close = this.pendingClose;
    const relayed = this.frames.advance(chunk, close !== undefined);
    if (relayed > 0 && !this.to.write(relayed === chunk.length ? chunk : chunk.subarray(0, relayed))) this.from.pause();
    if (close && this.frames.atBoundary) this.finish(close);
  }

  private finish(close: Buffer): void {
    this.ended = true;
    this.to.end(close);
    // What `from` still sends is dropped, but read: a paused socket would never see its peer's end.
    this.from.resume();
  }
}
