// containerd-shim-hull-v2: the containerd runtime v2 shim of hull (runtime type io.containerd.hull.v2).
//   start  — find or spawn the pod's shim daemon, print its address
//   delete — clean up after a dead shim, print a DeleteResponse
//   (none) — the daemon: serve containerd.task.v2.Task over ttrpc
// `start` runs on every pod start (and containerd waits for it), so it loads only flags and start.ts: the daemon's
// modules (ttrpc, protobufjs, pino, the OCI schema compiled by ajv) are imported by the actions that use them.
import { hullContainerdRoot } from './address.js';
import { FlagError, parseShimFlags } from './flags.js';
import { startShim } from './start.js';

function usage(): string {
  return 'usage: containerd-shim-hull-v2 -namespace NS -address ADDR -publish-binary BIN -id ID [-bundle DIR] [-debug] [start|delete]';
}

async function main(argv: string[]): Promise<void> {
  let flags;
  try {
    flags = parseShimFlags(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage()}\n`);
    process.exit(2);
  }
  if (flags.version) {
    const { SHIM_VERSION } = await import('./service.js');
    process.stdout.write(`containerd-shim-hull-v2:\n  Version: ${SHIM_VERSION}\n  Revision: \n  Go version: node ${process.version}\n`);
    return;
  }
  if (!flags.namespace) {
    process.stderr.write(`shim namespace cannot be empty\n${usage()}\n`);
    process.exit(1);
  }
  switch (flags.action) {
    case 'start': {
      try {
        // The config file (docs/config.md) is read first: a bad one fails the pod here, in one line, before anything.
        (await import('../config/startup.js')).applyConfig();
        const address = await startShim(flags, process.argv[1]!);
        process.stdout.write(address);
        process.exit(0);
      } catch (err) {
        process.stderr.write(`hull shim start: ${(err as Error).message}\n`);
        process.exit(1);
      }
      break;
    }
    case 'delete': {
      try {
        const { deleteShim } = await import('./delete.js');
        const { response, warnings } = await deleteShim(flags, hullContainerdRoot());
        for (const w of warnings) process.stderr.write(`hull shim delete: ${w}\n`);
        process.stdout.write(response, () => process.exit(0));
      } catch (err) {
        process.stderr.write(`hull shim delete: ${(err as Error).message}\n`);
        process.exit(1);
      }
      break;
    }
    case '':
      try {
        (await import('../config/startup.js')).applyConfig();
      } catch (err) {
        process.stderr.write(`hull shim: ${(err as Error).message}\n`);
        process.exit(1);
      }
      await (await import('./daemon.js')).runDaemon(flags);
      break;
    default:
      process.stderr.write(`unknown action "${flags.action}"\n${usage()}\n`);
      process.exit(2);
  }
}

void main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`containerd-shim-hull-v2: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});

export { FlagError };
