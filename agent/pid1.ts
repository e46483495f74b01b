// Guards for running as the guest's PID 1: if PID 1 exits the kernel panics and the VM is gone, so stray signals
// are logged and ignored, and an uncaught error is logged while the agent keeps serving.
import type { Logger } from 'pino';

// SIGKILL/SIGSTOP cannot be caught. SIGUSR1 would open Node's inspector (code execution as the agent) for any root
// process of the guest's root pid namespace: a listener of our own replaces Node's handler. Node 20 (the guest's) has
// no --disable-sigusr1.
const IGNORED = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGPIPE', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU'] as const;

export function installProcessGuards(log: Logger, opts: { pid1: boolean; onStop?: () => void }): void {
  for (const sig of IGNORED) {
    process.on(sig, () => {
      if (!opts.pid1 && (sig === 'SIGTERM' || sig === 'SIGINT')) {
        // Not PID 1 (a host-side test run): behave like an ordinary daemon.
        log.info({ signal: sig }, 'stopping');
        opts.onStop?.();
        process.exit(0);
      }
      log.warn({ signal: sig }, 'signal ignored');
    });
  }
  process.on('uncaughtException', (err) => {
    log.error({ err: { message: err.message, stack: err.stack } }, 'uncaught exception; still serving');
  });
  process.on('unhandledRejection', (reason) => {
    const err = reason instanceof Error ? { message: reason.message, stack: reason.stack } : { value: String(reason) };
    log.error({ err }, 'unhandled rejection; still serving');
  });
}
