// ttrpc client over any Duplex: odd stream ids, many calls in flight, per-call deadline (sent as timeout_nano and
// enforced locally), metadata. Every pending call is rejected with ConnectionClosedError when the connection ends.
// Replies are untrusted: an oversize or undecodable frame is a connection error, never a large allocation.
import type { Duplex } from 'node:stream';
import type protobuf from 'protobufjs';
import { ConnectionClosedError, TtrpcError } from '../errors.js';
import { Code } from './codes.js';
import { decodeResponse, encodeRequest, type KeyValue } from './envelope.js';
import { encodeFrame, FrameReader, MESSAGE_LENGTH_MAX, MessageType } from './frame.js';
import { decodeMessage, encodeMessage } from './messages.js';

export interface CallOptions {
  /** Local deadline, also sent to the server as timeout_nano. 0 or absent: the client default (none unless set). */
  timeoutMs?: number;
  /** Sent as Request.metadata; keys are lower-cased on the server. */
  metadata?: Record<string, string | string[]>;
  /** Abandons the call locally (rejects with Canceled); the server is not told. */
  signal?: AbortSignal;
}

export interface ClientOptions {
  defaultTimeoutMs?: number;
  maxFrameLength?: number;
}

interface Pending {
  label: string;
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
  cleanup: () => void;
}

const MAX_STREAM_ID = 0xffffffff;

export class TtrpcClient {
  private readonly reader: FrameReader;
  private readonly pending = new Map<number, Pending>();
  private nextStreamId = 1;
  private closeError: ConnectionClosedError | null = null;
  private readonly closeListeners: Array<(err: ConnectionClosedError) => void> = [];

  constructor(
    private readonly stream: Duplex,
    private readonly options: ClientOptions = {},
  ) {
    this.reader = new FrameReader(options.maxFrameLength ?? MESSAGE_LENGTH_MAX);
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.fail(new ConnectionClosedError('ttrpc connection closed by peer')));
    stream.on('close', () => this.fail(new ConnectionClosedError('ttrpc connection closed')));
    stream.on('error', (err) => this.fail(new ConnectionClosedError(`ttrpc connection failed: ${err.message}`, { cause: err })));
  }

  get closed(): boolean {
    return this.closeError !== null;
  }

  get pendingCalls(): number {
    return this.pending.size;
  }

  /** Called once, with the error pending calls were rejected with. */
  onClose(listener: (err: ConnectionClosedError) => void): void {
    if (this.closeError) queueMicrotask(() => listener(this.closeError!));
    else this.closeListeners.push(listener);
  }

  /** Rejects pending calls and closes the stream. */
  close(): void {
    this.fail(new ConnectionClosedError('ttrpc client closed'));
  }

  /** Typed call: encodes `request` with `requestType`, decodes the reply with `responseType` (longs as numbers). */
  async call<Res = Record<string, unknown>>(
    service: string,
    method: string,
    requestType: protobuf.Type,
    responseType: protobuf.Type,
    request: object,
    opts: CallOptions = {},
  ): Promise<Res> {
    let payload: Buffer;
    try {
      payload = encodeMessage(requestType, request);
    } catch (err) {
      throw new TtrpcError(Code.InvalidArgument, `${service}/${method}: cannot encode request: ${(err as Error).message}`, { cause: err });
    }
    const reply = await this.callRaw(service, method, payload, opts);
    try {
      return decodeMessage(responseType, reply) as Res;
    } catch (err) {
      throw new TtrpcError(Code.DataLoss, `${service}/${method}: undecodable response: ${(err as Error).message}`, { cause: err });
    }
  }

  callRaw(service: string, method: string, payload: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    const label = `${service}/${method}`;
    if (this.closeError) return Promise.reject(new ConnectionClosedError(`${label}: ${this.closeError.message}`));
    if (opts.signal?.aborted) return Promise.reject(new TtrpcError(Code.Canceled, `${label}: canceled`));
    if (this.nextStreamId > MAX_STREAM_ID) return Promise.reject(new TtrpcError(Code.ResourceExhausted, `${label}: stream ids exhausted`));
    const streamId = this.nextStreamId;
    this.nextStreamId += 2;

    const timeoutMs = opts.timeoutMs || this.options.defaultTimeoutMs || 0;
    let frame: Buffer;
    try {
      const data = encodeRequest({
        service,
        method,
        payload,
        timeoutNano: timeoutMs > 0 ? timeoutMs * 1_000_000 : 0,
        metadata: toKeyValues(opts.metadata),
      });
      frame = encodeFrame({ streamId, type: MessageType.Request, flags: 0, data }, this.reader.maxLength);
    } catch (err) {
      return Promise.reject(new TtrpcError(Code.ResourceExhausted, `${label}: ${(err as Error).message}`, { cause: err }));
    }

    return new Promise<Buffer>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => {
        this.settle(streamId)?.reject(new TtrpcError(Code.Canceled, `${label}: canceled`));
      };
      const cleanup = (): void => {
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      this.pending.set(streamId, { label, resolve, reject, cleanup });
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          this.settle(streamId)?.reject(new TtrpcError(Code.DeadlineExceeded, `${label}: no reply within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.stream.write(frame);
    });
  }

  private settle(streamId: number): Pending | undefined {
    const p = this.pending.get(streamId);
    if (!p) return undefined;
    this.pending.delete(streamId);
    p.cleanup();
    return p;
  }

  private onData(chunk: Buffer): void {
    if (this.closeError) return;
    for (const ev of this.reader.push(chunk)) {
      if (ev.kind === 'oversize') {
        this.fail(new ConnectionClosedError(`ttrpc reply frame of ${ev.header.length} bytes exceeds the ${this.reader.maxLength}-byte limit`));
        return;
      }
      const { frame } = ev;
      // Only Response frames answer unary calls; anything else (Data from a newer peer) is ignored.
      if (frame.type !== MessageType.Response) continue;
      const p = this.settle(frame.streamId);
      if (!p) continue; // a late reply to a call that already timed out or was canceled
      let res;
      try {
        res = decodeResponse(frame.data);
      } catch (err) {
        p.reject(new TtrpcError(Code.DataLoss, `${p.label}: ${(err as Error).message}`, { cause: err }));
        continue;
      }
      if (res.status && res.status.code !== Code.OK) p.reject(new TtrpcError(res.status.code, res.status.message));
      else p.resolve(res.payload);
    }
  }

  private fail(err: ConnectionClosedError): void {
    if (this.closeError) return;
    this.closeError = err;
    for (const [id, p] of [...this.pending]) {
      this.pending.delete(id);
      p.cleanup();
      p.reject(new ConnectionClosedError(`${p.label}: ${err.message}`, { cause: err.cause }));
    }
    this.stream.destroy();
    for (const l of this.closeListeners.splice(0)) l(err);
  }
}

function toKeyValues(md: CallOptions['metadata']): KeyValue[] {
  if (!md) return [];
  const out: KeyValue[] = [];
  for (const [key, v] of Object.entries(md)) {
    for (const value of Array.isArray(v) ? v : [v]) out.push({ key, value });
  }
  return out;
}
