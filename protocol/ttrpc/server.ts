// ttrpc server over any Duplex. Routes each Request by its exact service and method name, runs requests of one
// connection concurrently, and answers every request on its own stream id. Requests are untrusted: oversize frames
// are skipped without buffering and answered ResourceExhausted, bad envelopes InvalidArgument.
import type { Duplex } from 'node:stream';
import type protobuf from 'protobufjs';
import { ConnectionClosedError, TtrpcError } from '../errors.js';
import { Code } from './codes.js';
import { decodeRequest, encodeResponse, type RequestMessage, type StatusMessage } from './envelope.js';
import { encodeFrame, FrameReader, MESSAGE_LENGTH_MAX, MessageType } from './frame.js';
import { decodeMessage, encodeMessage } from './messages.js';

export interface CallContext {
  service: string;
  method: string;
  /** Request metadata; keys lower-cased, values in arrival order. */
  metadata: Record<string, string[]>;
  /** Absolute deadline (ms since epoch) from timeout_nano, if the client sent one. */
  deadline?: number;
  /** Aborts when the connection closes (reason: ConnectionClosedError) or the deadline passes (DeadlineExceeded). */
  signal: AbortSignal;
}

// Handlers take and return plain objects (protobufjs toObject/fromObject shapes); `any` keeps registration simple
// while each service module types its own handlers.
export type Handler = (request: any, ctx: CallContext) => unknown;

export interface MethodDef {
  requestType: protobuf.Type;
  responseType: protobuf.Type;
  handler: Handler;
}

export interface ServerOptions {
  maxFrameLength?: number;
  /** Requests in flight per connection; more are refused with ResourceExhausted instead of queueing without bound. */
  maxConcurrentCalls?: number;
  /** Handler failures that were not TtrpcErrors (bugs, surprises): for logging. */
  onHandlerError?: (err: unknown, service: string, method: string) => void;
}

export interface ServerConnection {
  close(): void;
  readonly closed: Promise<void>;
}

export class TtrpcServer {
  private readonly services = new Map<string, Map<string, MethodDef>>();
  private readonly connections = new Set<ServerConnection>();

  constructor(private readonly options: ServerOptions = {}) {}

  register(service: string, methods: Record<string, MethodDef>): void {
    const table = this.services.get(service) ?? new Map<string, MethodDef>();
    for (const [name, def] of Object.entries(methods)) table.set(name, def);
    this.services.set(service, table);
  }

  /**
   * Registers handlers for a protobufjs Service; request/response types come from the service definition.
   * Methods without a handler stay unregistered and answer Unimplemented.
   */
  registerService(service: protobuf.Service, handlers: Record<string, Handler>): void {
    service.resolveAll();
    const methods: Record<string, MethodDef> = {};
    for (const [name, handler] of Object.entries(handlers)) {
      const m = service.methods[name];
      if (!m) throw new Error(`${service.fullName.replace(/^\./, '')} has no method ${name}`);
      methods[name] = { requestType: m.resolvedRequestType!, responseType: m.resolvedResponseType!, handler };
    }
    this.register(service.fullName.replace(/^\./, ''), methods);
  }

  /** Serves one connection until it closes. */
  serve(stream: Duplex): ServerConnection {
    const conn = new Connection(stream, this.services, this.options);
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
    return conn;
  }

  close(): void {
    for (const c of [...this.connections]) c.close();
  }
}

class Connection implements ServerConnection {
  private readonly reader: FrameReader;
  private readonly abort = new AbortController();
  private inFlight = 0;
  private done = false;
  private resolveClosed!: () => void;
  readonly closed = new Promise<void>((r) => (this.resolveClosed = r));

  constructor(
    private readonly stream: Duplex,
    private readonly services: Map<string, Map<string, MethodDef>>,
    private readonly options: ServerOptions,
  ) {
    this.reader = new FrameReader(options.maxFrameLength ?? MESSAGE_LENGTH_MAX);
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.close());
    stream.on('close', () => this.close());
    stream.on('error', () => this.close());
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    this.abort.abort(new ConnectionClosedError('ttrpc connection closed'));
    this.stream.destroy();
    this.resolveClosed();
  }

  private onData(chunk: Buffer): void {
    if (this.done) return;
    for (const ev of this.reader.push(chunk)) {
      if (ev.kind === 'oversize') {
        if (ev.header.type === MessageType.Request) {
          this.sendStatus(ev.header.streamId, {
            code: Code.ResourceExhausted,
            message: `message length ${ev.header.length} exceed maximum message size of ${this.reader.maxLength}`,
          });
        }
        continue;
      }
      const { frame } = ev;
      // ttrpc 1.1 servers ignore other message types "for future compat".
      if (frame.type !== MessageType.Request) continue;
      if (frame.streamId % 2 === 0) {
        this.sendStatus(frame.streamId, { code: Code.InvalidArgument, message: 'StreamID must be odd' });
        continue;
      }
      let req: RequestMessage;
      try {
        req = decodeRequest(frame.data);
      } catch {
        this.sendStatus(frame.streamId, { code: Code.InvalidArgument, message: 'unmarshal request error' });
        continue;
      }
      const max = this.options.maxConcurrentCalls ?? 1024;
      if (this.inFlight >= max) {
        this.sendStatus(frame.streamId, { code: Code.ResourceExhausted, message: `more than ${max} calls in flight` });
        continue;
      }
      this.inFlight++;
      void this.dispatch(frame.streamId, req).finally(() => this.inFlight--);
    }
  }

  private async dispatch(streamId: number, req: RequestMessage): Promise<void> {
    const methods = this.services.get(req.service);
    if (!methods) return this.sendStatus(streamId, { code: Code.Unimplemented, message: `service ${req.service}` });
    const def = methods.get(req.method);
    if (!def) return this.sendStatus(streamId, { code: Code.Unimplemented, message: `method ${req.method}` });

    let request: Record<string, unknown>;
    try {
      request = decodeMessage(def.requestType, req.payload);
    } catch (err) {
      return this.sendStatus(streamId, { code: Code.InvalidArgument, message: `unmarshal request payload: ${(err as Error).message}` });
    }

    const ctx = this.makeContext(req);
    try {
      const result = await def.handler(request, ctx.ctx);
      let payload: Buffer;
      try {
        payload = encodeMessage(def.responseType, (result ?? {}) as object);
      } catch (err) {
        throw new TtrpcError(Code.Internal, `${req.method}: cannot encode response: ${(err as Error).message}`);
      }
      this.send(streamId, encodeResponse({ status: { code: Code.OK, message: '' }, payload }));
    } catch (err) {
      if (!(err instanceof TtrpcError)) this.options.onHandlerError?.(err, req.service, req.method);
      const status =
        err instanceof TtrpcError
          ? { code: err.code, message: err.message }
          : { code: Code.Unknown, message: err instanceof Error ? err.message : String(err) };
      this.sendStatus(streamId, status);
    } finally {
      ctx.dispose();
    }
  }

  private makeContext(req: RequestMessage): { ctx: CallContext; dispose: () => void } {
    const metadata: Record<string, string[]> = {};
    for (const { key, value } of req.metadata) (metadata[key.toLowerCase()] ??= []).push(value);

    const controller = new AbortController();
    const onClose = (): void => controller.abort(this.abort.signal.reason);
    this.abort.signal.addEventListener('abort', onClose, { once: true });
    let timer: NodeJS.Timeout | undefined;
    let deadline: number | undefined;
    if (req.timeoutNano > 0) {
      const ms = req.timeoutNano / 1e6;
      deadline = Date.now() + ms;
      // setTimeout cannot wait longer than 2^31-1 ms; such deadlines are effectively none.
      if (ms < 0x7fffffff) {
        timer = setTimeout(() => controller.abort(new TtrpcError(Code.DeadlineExceeded, `${req.method}: deadline exceeded`)), ms);
      }
    }
    if (this.abort.signal.aborted) onClose();
    return {
      ctx: { service: req.service, method: req.method, metadata, deadline, signal: controller.signal },
      dispose: () => {
        if (timer) clearTimeout(timer);
        this.abort.signal.removeEventListener('abort', onClose);
      },
    };
  }

  private sendStatus(streamId: number, status: StatusMessage): void {
    this.send(streamId, encodeResponse({ status, payload: Buffer.alloc(0) }));
  }

  private send(streamId: number, data: Buffer): void {
    if (this.done) return;
    let frame: Buffer;
    try {
      frame = encodeFrame({ streamId, type: MessageType.Response, flags: 0, data }, this.reader.maxLength);
    } catch {
      frame = encodeFrame({
        streamId,
        type: MessageType.Response,
        flags: 0,
        data: encodeResponse({ status: { code: Code.ResourceExhausted, message: `response of ${data.length} bytes exceeds the frame limit` }, payload: Buffer.alloc(0) }),
      });
    }
    this.stream.write(frame);
  }
}
