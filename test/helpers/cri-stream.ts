// A client for the CRI stream server, the URL a streaming Exec/Attach answers (what `kubectl exec -it` and
// `kubectl attach` reach through the kubelet). It speaks WebSocket with the `v4.channel.k8s.io` subprotocol, as
// k8s.io/apiserver's wsstream serves it in containerd 1.6 (pkg/cri/streaming): every binary message starts with a
// channel byte — 0 stdin and 4 resize (JSON {Width, Height}) from us; 1 stdout, 2 stderr and 3 error from the server,
// whose last word on 3 is a JSON metav1.Status carrying the exit code. The server opens with an empty message on the
// first output channel. v4 cannot close stdin alone (v5.channel.k8s.io added that; containerd 1.6 does not serve it):
// the process sees stdin EOF only when the socket closes, after which its output can no longer be read.
import WebSocket from 'ws';

export const V4_CHANNEL_PROTOCOL = 'v4.channel.k8s.io';

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;

/** metav1.Status as the stream server writes it on the error channel (v4). */
export interface StreamStatus {
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { causes?: Array<{ reason?: string; message?: string }> };
}

export interface StreamResult {
  stdout: string;
  stderr: string;
  status: StreamStatus;
}

/** A stream that could not be opened, broke the protocol, or did not say what a test waited for. */
export class CriStreamError extends Error {
  constructor(
    readonly url: string,
    message: string,
  ) {
    super(`CRI stream ${url}: ${message}`);
    this.name = 'CriStreamError';
  }
}

/** The exit code a v4 status carries: 0 for Success, the ExitCode cause of a NonZeroExitCode failure. */
export function exitCodeOf(status: StreamStatus): number {
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  if (status.reason !== 'NonZeroExitCode' || !cause?.message || !/^\d+$/.test(cause.message)) {
    throw new Error(`stream status is not an exit code: ${JSON.stringify(status)}`);
  }
  return Number(cause.message);
}

/** The stream server hands out http(s) URLs; the WebSocket handshake goes to the same place as ws(s). */
function webSocketUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CriStreamError(url, `unexpected scheme ${u.protocol}`);
  u.protocol = u.protocol === 'http:' ? 'ws:' : 'wss:';
  return u.toString();
}

export class CriStream {
  private readonly received: Buffer[][] = [[], [], [], [], []];
  private readonly waiters = new Set<() => void>();
  private ended = false;
  private protocolError: string | undefined;
  /** Settles when the server closes the socket: the output and the status it ended with. */
  readonly closed: Promise<StreamResult>;

  private constructor(
    readonly url: string,
    private readonly ws: WebSocket,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    this.closed = new Promise((resolve, reject) => {
      ws.on('close', () => {
        this.ended = true;
        for (const w of [...this.waiters]) w();
        try {
          resolve({ stdout: this.stdout, stderr: this.stderr, status: this.status() });
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    this.closed.catch(() => undefined); // a test that never awaits it must not get an unhandled rejection
  }

  /** Connects to a URL from `CriClient.exec`/`attach` (one use each: the server forgets the token on connect). */
  static open(url: string, timeoutMs = 30_000): Promise<CriStream> {
    const ws = new WebSocket(webSocketUrl(url), [V4_CHANNEL_PROTOCOL], { handshakeTimeout: timeoutMs });
    return new Promise((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => {
        ws.terminate();
        reject(new CriStreamError(url, `HTTP ${res.statusCode ?? '?'} instead of a WebSocket upgrade`));
      });
      ws.once('error', (err) => reject(new CriStreamError(url, err.message)));
      ws.once('open', () => {
        if (ws.protocol !== V4_CHANNEL_PROTOCOL) {
          ws.terminate();
          reject(new CriStreamError(url, `server chose subprotocol ${JSON.stringify(ws.protocol)}`));
          return;
        }
        ws.on('error', () => undefined); // after open, failures surface as 'close'
        resolve(new CriStream(url, ws));
      });
    });
  }

  get stdout(): string {
    return Buffer.concat(this.received[STDOUT]!).toString('utf8');
  }

  get stderr(): string {
    return Buffer.concat(this.received[STDERR]!).toString('utf8');
  }

  write(data: string | Buffer): void {
    this.send(STDIN, typeof data === 'string' ? Buffer.from(data) : data);
  }

  /** What kubectl sends when the local terminal changes size (and once at the start). */
  resize(width: number, height: number): void {
    this.send(RESIZE, Buffer.from(JSON.stringify({ Width: width, Height: height })));
  }

  /** Closes our side; the process's stdin sees EOF, its remaining output is lost. */
  close(): void {
    this.ws.close();
  }

  /** Resolves once `test` holds on what arrived; fails when the stream ends first or after `timeoutMs`. */
  waitFor(what: string, test: (s: CriStream) => boolean, timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        done();
        reject(new CriStreamError(this.url, `${why} waiting for ${what}; stdout ${JSON.stringify(this.stdout.slice(-300))}`));
      };
      const check = () => {
        if (this.protocolError) fail(this.protocolError);
        else if (test(this)) {
          done();
          resolve();
        } else if (this.ended) fail('the stream ended');
      };
      const timer = setTimeout(() => fail(`no answer in ${timeoutMs} ms`), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  private send(channel: number, data: Buffer): void {
    if (this.ended) throw new CriStreamError(this.url, 'write after the stream ended');
    this.ws.send(Buffer.concat([Buffer.from([channel]), data]), { binary: true });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    const channel = data[0];
    if (!isBinary || channel === undefined || channel === STDIN || channel === RESIZE || channel > RESIZE) {
      this.protocolError ??= `unexpected ${isBinary ? 'binary' : 'text'} message on channel ${channel ?? '(none)'}`;
    } else {
      this.received[channel]!.push(data.subarray(1));
    }
    for (const w of [...this.waiters]) w();
  }

  private status(): StreamStatus {
    if (this.protocolError) throw new CriStreamError(this.url, this.protocolError);
    const text = Buffer.concat(this.received[ERROR]!).toString('utf8');
    if (!text) throw new CriStreamError(this.url, 'closed without a status on the error channel');
    let status: unknown;
    try {
      status = JSON.parse(text);
    } catch {
      throw new CriStreamError(this.url, `error channel is not JSON: ${JSON.stringify(text.slice(0, 300))}`);
    }
    const s = status as Partial<StreamStatus> | null;
    if (!s || (s.status !== 'Success' && s.status !== 'Failure')) {
      throw new CriStreamError(this.url, `error channel is not a metav1.Status: ${JSON.stringify(text.slice(0, 300))}`);
    }
    return s as StreamStatus;
  }
}
