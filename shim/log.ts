// Host-side logging. pino writes JSON; `--log-format text` turns each record into one `time level msg` line, the
// shape runc users read. go-runc reads the last `"level":"error"` line's msg from a JSON log, so errors are always
// logged before the CLI exits.
import { openSync, writeSync } from 'node:fs';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';

export type LogFormat = 'text' | 'json';

export interface LogOptions {
  file?: string;
  format: LogFormat;
  debug: boolean;
  /** The level without --debug (log.level of the config file); default info. */
  level?: string;
}

/** Writes each chunk to a file descriptor synchronously: the CLI exits right after its last line. */
class FdSink extends Writable {
  constructor(private readonly fd: number) {
    super();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    try {
      writeSync(this.fd, chunk);
      done();
    } catch (err) {
      done(err as Error);
    }
  }
}

class TextFormatter extends Writable {
  constructor(private readonly out: Writable) {
    super();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      try {
        const record = JSON.parse(line) as { time?: string; level?: string; msg?: string; [k: string]: unknown };
        const { time, level, msg, pid: _pid, hostname: _host, ...rest } = record;
        const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
        this.out.write(`time="${time}" level=${level} msg="${msg ?? ''}"${extra}\n`);
      } catch {
        this.out.write(`${line}\n`);
      }
    }
    done();
  }
}

export function createLogger(options: LogOptions): Logger {
  const level = options.debug ? 'debug' : (options.level ?? 'info');
  const base = {
    level,
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (!options.file && !options.debug) return pino({ ...base, enabled: false });
  // pino's own sync destination for JSON; a synchronous fd sink under the text formatter.
  const fd = options.file ? openSync(options.file, 'a', 0o600) : 2;
  return options.format === 'json'
    ? pino(base, pino.destination({ fd, sync: true }))
    : pino(base, new TextFormatter(new FdSink(fd)));
}
