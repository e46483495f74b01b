// The long-lived shim: serves containerd.task.v2.Task on the socket `start` created (fd 3), logs to <bundle>/log
// (the FIFO containerd reads) and to <pod dir>/shim.log, publishes events to TTRPC_ADDRESS, and exits on Shutdown.
import { chmodSync, closeSync, constants, writeSync, createWriteStream, mkdirSync, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { mountPointsUnder } from '../sandbox/host-mounts.js';
import { removeSandboxDirectory } from '../sandbox/teardown.js';
import { procStartTime } from '../../hypervisor/process.js';
import { TtrpcServer } from '../../protocol/ttrpc/server.js';
import { configuredLogLevel } from '../config/values.js';
import { oneLine } from '../errors.js';
import { READY_FD_ENV, groupIdForBundle, hullContainerdRoot, sandboxDirFor, socketAddress, socketPath } from './address.js';
import { TtrpcEventPublisher } from './events.js';
import type { ShimFlags } from './flags.js';
import { checkSameUser, peerCredentialsAvailable } from '../peercred.js';
import { taskService } from './protos.js';
import { readPodRecord, updatePodRecord } from './record.js';
import { hostRootfsMounter } from './rootfs-mount.js';
import { TaskService } from './service.js';
import { openProcessIo } from './stdio.js';
import { EXIT_ADDRESS_IN_USE, socketInUse } from './start.js';
import { VmPodFactory } from './vm-pod.js';

/** Listens on sockPath (mode 0600); false when a live shim already serves it. A stale socket is replaced. */
async function bindSocket(server: net.Server, sockPath: string): Promise<boolean> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      server.once('error', resolve);
      server.listen(sockPath, () => {
        server.off('error', resolve);
        resolve(undefined);
      });
    });
    if (!err) {
      chmodSync(sockPath, 0o600);
      return true;
    }
    if (err.code !== 'EADDRINUSE') throw err;
    if (await socketInUse(sockPath)) return false;
    rmSync(sockPath, { force: true });
  }
  throw new Error(`cannot listen on ${sockPath}`);
}

/** Removes the pod directory of this shim, unless something is still mounted under it or another shim owns it. */
function removePodDir(podDir: string, log: Logger): void {
  try {
    if (readPodRecord(podDir)?.shimPid !== process.pid) return;
    const busy = mountPointsUnder(podDir);
    if (busy.length > 0) {
      log.warn({ mounts: busy }, 'pod directory kept: mounts remain under it');
      return;
    }
    removeSandboxDirectory(podDir);
  } catch (err) {
    log.warn({ err: oneLine(err) }, 'cannot remove the pod directory');
  }
}

/** Writes each log line to every sink that still works; a reader that went away never stops the shim. */
class FanOut extends Writable {
  constructor(private readonly sinks: Writable[]) {
    super();
    for (const s of sinks) s.on('error', () => this.sinks.splice(this.sinks.indexOf(s) >>> 0, 1));
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const s of this.sinks) if (!s.destroyed) s.write(chunk);
    done();
  }
}

/** <bundle>/log, kept open for the shim's whole life as containerd's own shims keep theirs: a containerd that restarts
 *  opens the FIFO again and gets the lines from then on. A line that cannot be written at once (no reader: EPIPE; a
 *  reader that is behind: EAGAIN) is dropped, never queued, so containerd can never stall or stop the shim. */
class LogFifo extends Writable {
  constructor(private readonly fd: number) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    try {
      for (let off = 0; off < chunk.length; ) off += writeSync(this.fd, chunk, off);
    } catch {
      // dropped, as above
    }
    done();
  }
}

function openLogSinks(bundle: string, podDir: string): Writable[] {
  const sinks: Writable[] = [];
  try {
    // containerd opened the FIFO O_RDWR|O_NONBLOCK before `start`, so this open does not block.
    sinks.push(new LogFifo(openSync(path.join(bundle, 'log'), constants.O_WRONLY | constants.O_NONBLOCK)));
  } catch {
    // no log FIFO (run by hand)
  }
  mkdirSync(podDir, { recursive: true, mode: 0o700 });
  sinks.push(createWriteStream(path.join(podDir, 'shim.log'), { flags: 'a' }));
  return sinks;
}

export async function runDaemon(flags: ShimFlags): Promise<void> {
  const bundle = flags.bundle || process.cwd();
  const groupId = groupIdForBundle(bundle, flags.id);
  const podDir = sandboxDirFor(hullContainerdRoot(), flags.namespace, groupId);
  const log: Logger = pino(
    {
      level: configuredLogLevel(flags.debug).value,
      base: { pid: process.pid, pod: groupId },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label: string) => ({ level: label }) },
    },
    new FanOut(openLogSinks(bundle, podDir)),
  );

  updatePodRecord(podDir, (r) => {
    r.shimPid = process.pid;
    const st = procStartTime(process.pid);
    if (st !== undefined) r.shimStartTime = st;
    r.namespace = flags.namespace;
    r.groupId = groupId;
  });

  const address = socketAddress(flags.address, flags.namespace, groupId);
  const sockPath = socketPath(address);
  const ttrpcAddress = process.env.TTRPC_ADDRESS || `${flags.address}.ttrpc`;
  const events = new TtrpcEventPublisher(ttrpcAddress, flags.namespace, log);
  const server = new TtrpcServer({
    onHandlerError: (err, _service, method) => log.error({ method, err: oneLine(err) }, 'handler failed'),
  });
  const netServer = net.createServer();

  let exiting = false;
  const exit = async (code: number): Promise<void> => {
    if (exiting) return;
    exiting = true;
    log.info({ code }, 'shim exiting');
    server.close();
    netServer.close();
    rmSync(sockPath, { force: true });
    // An orderly exit (Shutdown with no container left, the VM already stopped) leaves nothing behind by itself,
    // instead of relying on containerd's `delete` run finding this process already gone.
    if (code === 0 && service.containerCount === 0) removePodDir(podDir, log);
    await events.flush().catch(() => undefined);
    events.close();
    // Give pino's sinks a moment to take the last lines.
    setTimeout(() => process.exit(code), 50);
  };

  const service = new TaskService({
    namespace: flags.namespace,
    log,
    events,
    vms: new VmPodFactory(podDir, groupId, log),
    mounter: hostRootfsMounter,
    openIo: openProcessIo,
    onShutdown: () => void exit(0),
    onContainersChanged: (containers) => updatePodRecord(podDir, (r) => void (r.containers = containers)),
  });
  server.registerService(taskService(), service.handlers());

  if (!peerCredentialsAvailable()) log.warn('hull addon without peerCredentials: relying on the socket mode (0600) alone');
  netServer.on('connection', (sock) => {
    const check = checkSameUser(sock);
    if (!check.ok) {
      log.warn({ reason: check.reason }, 'refused a connection from another user');
      sock.destroy();
      return;
    }
    sock.on('error', () => undefined);
    server.serve(sock);
  });

  mkdirSync(path.dirname(sockPath), { recursive: true, mode: 0o711 });
  if (!(await bindSocket(netServer, sockPath))) {
    log.info({ address }, 'another shim already serves this pod');
    process.exit(EXIT_ADDRESS_IN_USE);
  }
  log.info({ address, namespace: flags.namespace, id: flags.id, podDir }, 'shim serving');
  const readyFd = process.env[READY_FD_ENV];
  if (readyFd) {
    try {
      writeSync(Number(readyFd), 'ready\n');
      closeSync(Number(readyFd));
    } catch {
      // `start` is gone already; nothing to tell
    }
  }
  delete process.env[READY_FD_ENV];

  const onSignal = (sig: NodeJS.Signals): void => {
    log.warn({ signal: sig }, 'signal: stopping the pod VM and exiting');
    void service.emergencyStop().finally(() => void exit(1));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGPIPE', () => undefined);
  process.on('uncaughtException', (err) => log.error({ err: oneLine(err), stack: err.stack }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err: oneLine(err) }, 'unhandled rejection'));
}
