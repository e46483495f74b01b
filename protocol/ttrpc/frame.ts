// ttrpc framing: a 10-byte big-endian header `u32 length | u32 streamID | u8 type | u8 flags`, then `length` bytes.
// The reader is incremental (chunks may split or coalesce frames) and never trusts the declared length: it buffers
// at most one frame of at most `maxLength` bytes, and skips the body of an oversize frame without storing it.

export const HEADER_LENGTH = 10;
/** ttrpc's messageLengthMax (4 MiB): the largest frame body either side accepts. */
export const MESSAGE_LENGTH_MAX = 4 << 20;

export const MessageType = { Request: 0x01, Response: 0x02, Data: 0x03 } as const;
export const Flag = { RemoteClosed: 0x1, RemoteOpen: 0x2, NoData: 0x4 } as const;

export interface FrameHeader {
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export interface Frame {
  streamId: number;
  type: number;
  flags: number;
  data: Buffer;
}

export type FrameEvent =
  | { kind: 'frame'; frame: Frame }
  /** A frame whose declared length exceeds the cap; its body is being discarded as it arrives. */
  | { kind: 'oversize'; header: FrameHeader };

export class FrameTooLargeError extends Error {
  constructor(
    readonly length: number,
    readonly max: number,
  ) {
    super(`ttrpc frame of ${length} bytes exceeds the ${max}-byte limit`);
    this.name = 'FrameTooLargeError';
  }
}

export function encodeFrame(frame: Frame, maxLength = MESSAGE_LENGTH_MAX): Buffer {
  const { data } = frame;
  if (data.length > maxLength) throw new FrameTooLargeError(data.length, maxLength);
  const out = Buffer.allocUnsafe(HEADER_LENGTH + data.length);
  out.writeUInt32BE(data.length, 0);
  out.writeUInt32BE(frame.streamId >>> 0, 4);
  out.writeUInt8(frame.type & 0xff, 8);
  out.writeUInt8(frame.flags & 0xff, 9);
  data.copy(out, HEADER_LENGTH);
  return out;
}

export function decodeHeader(buf: Buffer): FrameHeader {
  if (buf.length < HEADER_LENGTH) throw new RangeError(`ttrpc header needs ${HEADER_LENGTH} bytes, got ${buf.length}`);
  return {
    length: buf.readUInt32BE(0),
    streamId: buf.readUInt32BE(4),
    type: buf.readUInt8(8),
    flags: buf.readUInt8(9),
  };
}

/** Incremental decoder: feed it chunks in order, get back the complete frames (and oversize notices) they finish. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | null = null;
  private discardRemaining = 0;

  constructor(readonly maxLength = MESSAGE_LENGTH_MAX) {}

  /** Bytes held while waiting for the rest of a frame (bounded by HEADER_LENGTH + maxLength + one chunk). */
  get pendingBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): FrameEvent[] {
    const events: FrameEvent[] = [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      if (this.discardRemaining > 0) {
        const n = Math.min(this.discardRemaining, this.buffered);
        this.skip(n);
        this.discardRemaining -= n;
        if (this.discardRemaining > 0) break;
      }
      if (this.header === null) {
        if (this.buffered < HEADER_LENGTH) break;
        const header = decodeHeader(this.take(HEADER_LENGTH));
        if (header.length > this.maxLength) {
          events.push({ kind: 'oversize', header });
          this.discardRemaining = header.length;
          continue;
        }
        this.header = header;
      }
      if (this.buffered < this.header.length) break;
      const { streamId, type, flags, length } = this.header;
      this.header = null;
      events.push({ kind: 'frame', frame: { streamId, type, flags, data: this.take(length) } });
    }
    return events;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (first.length >= n) {
      // Fast path: the bytes sit in one chunk; hand out a view, not a copy.
      const out = first.subarray(0, n);
      this.dropFront(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      this.dropFront(k);
    }
    return out;
  }

  private skip(n: number): void {
    let left = n;
    while (left > 0) {
      const k = Math.min(this.chunks[0]!.length, left);
      this.dropFront(k);
      left -= k;
    }
  }

  private dropFront(n: number): void {
    const c = this.chunks[0]!;
    if (c.length === n) this.chunks.shift();
    else this.chunks[0] = c.subarray(n);
    this.buffered -= n;
  }
}
