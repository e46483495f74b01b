// `hull run` / `hull exec --tty` with process.terminal: the pty is in the guest; when hull's own stdin is a terminal,
// that terminal goes into raw mode (keys, ^C included, reach the guest pty unchanged), its size is sent as ResizePty
// now and on every SIGWINCH, and everything is restored when the process ends.
import type { Logger } from 'pino';
import { oneLine } from '../errors.js';

export type ResizeFn = (width: number, height: number) => Promise<void>;

/** Sets up the host side of a guest terminal; returns the function that restores the host terminal (idempotent). */
export function attachHostTerminal(resize: ResizeFn, logger: Logger): () => void {
  const stdin = process.stdin;
  const sizeSource = process.stdout.isTTY ? process.stdout : process.stderr.isTTY ? process.stderr : undefined;
  const sendSize = (): void => {
    if (!sizeSource?.columns || !sizeSource.rows) return;
    resize(sizeSource.columns, sizeSource.rows).catch((err: unknown) => logger.debug({ err: oneLine(err) }, 'resize'));
  };
  const raw = stdin.isTTY === true;
  if (raw) stdin.setRawMode(true);
  const restore = (): void => {
    process.off('SIGWINCH', sendSize);
    process.off('exit', restore);
    if (raw && stdin.isTTY) stdin.setRawMode(false);
  };
  process.on('SIGWINCH', sendSize);
  process.on('exit', restore);
  sendSize();
  return restore;
}
