// A QMP client over QEMU's Unix control socket: greeting, capability negotiation, commands matched to replies by
// `id`, and asynchronous events. QEMU runs the guest, so every line it sends is treated as untrusted input: lines are
// capped in length and anything that is not a JSON object ends the connection with a QmpProtocolError.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { QmpClosedError, QmpCommandError, QmpProtocolError, QmpTimeoutError } from './errors.js';

export const QMP_MAX_LINE = 1024 * 1024;

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpStatus {
  running: boolean;
  status: string;
  singlestep?: boolean;
}

export interface QmpConnectOptions {
  /** Bound on connect + greeting + qmp_capabilities. */
  timeoutMs?: number;
  /** Default bound for each command. */
  commandTimeoutMs?: number;
  maxLineBytes?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

type Message = Record<string, unknown>;

/**
 * Events: 'event' (QmpEvent) for every event, plus one named after the event ('SHUTDOWN', 'STOP', 'RESUME',
 * 'POWERDOWN', …) with the same object; 'close' (Error | undefined) once, when the connection ends.
 */
export class QmpClient extends EventEmitter {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closedWith: Error | undefined;
  private closed = false;
  private greetingWaiter: ((msg: Message) => void) | undefined;
  readonly closedPromise: Promise<Error | undefined>;
  private resolveClosed!: (err: Error | undefined) => void;

  private constructor(
    private readonly socket: net.Socket,
    private readonly commandTimeoutMs: number,
    private readonly maxLine: number,
  ) {
    super();
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.shutdown(new QmpClosedError(`QMP socket error: ${err.message}`, { cause: err })));
    socket.on('close', () => this.shutdown(undefined));
  }

  /** Connects, reads the greeting and leaves capability negotiation mode. */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const socket = await connectUnix(socketPath, timeoutMs);
    const client = new QmpClient(socket, options.commandTimeoutMs ?? 10_000, options.maxLineBytes ?? QMP_MAX_LINE);
    try {
      await client.readGreeting(timeoutMs);
      await client.execute('qmp_capabilities', undefined, timeoutMs);
      return client;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends one command; resolves with its `return` value, rejects with QmpCommandError on an `error` reply. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = this.commandTimeoutMs): Promise<T> {
    if (this.closed) {
      return Promise.reject(this.closedWith ?? new QmpClosedError(`QMP connection closed before ${command}`));
    }
    const id = `hull-${this.nextId++}`;
    const message: Message = { execute: command, id };
    if (args) message['arguments'] = args;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpTimeoutError(`QMP ${command} got no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  queryStatus(): Promise<QmpStatus> {
    return this.execute<QmpStatus>('query-status');
  }

  systemPowerdown(): Promise<void> {
    return this.execute<void>('system_powerdown');
  }

  stop(): Promise<void> {
    return this.execute<void>('stop');
  }

  cont(): Promise<void> {
    return this.execute<void>('cont');
  }

  /** Asks QEMU to exit. QEMU may close the socket before or after replying; both count as success. */
  async quit(timeoutMs = this.commandTimeoutMs): Promise<void> {
    try {
      await this.execute('quit', undefined, timeoutMs);
    } catch (err) {
      if (!(err instanceof QmpClosedError)) throw err;
    }
  }

  close(): void {
    this.socket.destroy();
    this.shutdown(undefined);
  }

  /** Lets the process exit while the connection is open (detached sandboxes). */
  unref(): void {
    this.socket.unref();
  }

  private readGreeting(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.greetingWaiter = undefined;
        reject(new QmpTimeoutError(`no QMP greeting within ${timeoutMs} ms`));
      }, timeoutMs);
      const onClose = (err: Error | undefined): void => {
        clearTimeout(timer);
        reject(err ?? new QmpClosedError('QMP connection closed before the greeting'));
      };
      this.once('close', onClose);
      this.greetingWaiter = (msg) => {
        clearTimeout(timer);
        this.off('close', onClose);
        if (typeof msg['QMP'] !== 'object' || msg['QMP'] === null) {
          const err = new QmpProtocolError(`expected a QMP greeting, got ${preview(JSON.stringify(msg))}`);
          this.fail(err);
          reject(err);
          return;
        }
        resolve();
      };
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while (!this.closed && (nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (Buffer.byteLength(line) > this.maxLine) {
        this.fail(new QmpProtocolError(`QMP line of ${Buffer.byteLength(line)} bytes exceeds the ${this.maxLine}-byte cap`));
        return;
      }
      if (line) this.onLine(line);
    }
    if (!this.closed && Buffer.byteLength(this.buffer) > this.maxLine) {
      this.fail(new QmpProtocolError(`QMP line longer than the ${this.maxLine}-byte cap`));
    }
  }

  private onLine(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.fail(new QmpProtocolError(`QMP sent a line that is not JSON: ${preview(line)}`));
      return;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      this.fail(new QmpProtocolError(`QMP sent JSON that is not an object: ${preview(line)}`));
      return;
    }
    const m = msg as Message;
    if (this.greetingWaiter) {
      const waiter = this.greetingWaiter;
      this.greetingWaiter = undefined;
      waiter(m);
      return;
    }
    if (typeof m['event'] === 'string') {
      const event = m as unknown as QmpEvent;
      this.emit('event', event);
      // Only QEMU-style names: an event called "error" or "close" must not reach our own listeners.
      if (/^[A-Z][A-Z0-9_]*$/.test(event.event)) this.emit(event.event, event);
      return;
    }
    if ('return' in m || 'error' in m) {
      const id = typeof m['id'] === 'string' ? m['id'] : undefined;
      const pending = id === undefined ? undefined : this.pending.get(id);
      if (!pending || id === undefined) return; // a reply to a command that already timed out
      this.pending.delete(id);
      clearTimeout(pending.timer);
      if ('error' in m) {
        const e = (typeof m['error'] === 'object' && m['error'] !== null ? m['error'] : {}) as Message;
        pending.reject(
          new QmpCommandError(pending.command, String(e['class'] ?? 'GenericError'), String(e['desc'] ?? 'unknown error')),
        );
      } else {
        pending.resolve(m['return']);
      }
      return;
    }
    this.fail(new QmpProtocolError(`QMP sent an object that is neither reply nor event: ${preview(line)}`));
  }

  /** Ends the connection because QEMU broke the protocol. */
  private fail(err: Error): void {
    this.socket.destroy();
    this.shutdown(err);
  }

  private shutdown(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closedWith = err;
    this.buffer = '';
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err ?? new QmpClosedError(`QMP connection closed before ${p.command} was answered`));
      this.pending.delete(id);
    }
    this.emit('close', err);
    this.resolveClosed(err);
  }
}

function preview(text: string): string {
  const cut = text.length > 120 ? `${text.slice(0, 120)}…` : text;
  // eslint-disable-next-line no-control-regex
  return JSON.stringify(cut.replace(/[\u0000-\u001f\u007f]/g, '?'));
}

function connectUnix(socketPath: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: socketPath });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new QmpTimeoutError(`could not connect to QMP at ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new QmpClosedError(`could not connect to QMP at ${socketPath}: ${err.message}`, { cause: err }));
    });
  });
}
