// Typed errors of the VMM control layer. Each message is meant for a person and says what to do next where there is
// something to do; the fields carry the context a caller may want to log or act on.

export class HypervisorError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The caller asked for KVM but this host cannot run a real kernel under it. */
export class KvmUnavailableError extends HypervisorError {
  constructor(readonly why: string) {
    super(`KVM was requested but is not usable here: ${why}; use --accel auto or tcg`);
  }
}

/** A helper binary (QEMU, virtiofsd, the vsock backend) is missing or not executable. */
export class BinaryNotFoundError extends HypervisorError {
  constructor(
    readonly binary: string,
    readonly path: string,
    readonly remedy: string,
  ) {
    super(`${binary} not found at ${path}: ${remedy}`);
  }
}

/** A helper process did not come up: exited early, or did not get ready in time. */
export class HelperStartError extends HypervisorError {
  constructor(
    readonly helper: string,
    message: string,
    readonly logTail: string,
    options?: { cause?: unknown },
  ) {
    super(logTail ? `${helper}: ${message}\n--- last lines of its log ---\n${logTail}` : `${helper}: ${message}`, options);
  }
}

/** QEMU exited or never answered QMP while the VM was starting. */
export class VmStartError extends HypervisorError {
  constructor(
    message: string,
    readonly stderrTail: string,
    readonly consoleTail: string,
    options?: { cause?: unknown },
  ) {
    const parts = [message];
    if (stderrTail) parts.push(`--- last lines of QEMU's stderr ---\n${stderrTail}`);
    if (consoleTail) parts.push(`--- last lines of the guest console ---\n${consoleTail}`);
    super(parts.join('\n'), options);
  }
}

/** A Unix socket path would not fit in sockaddr_un (108 bytes); the sandbox root is too deep. */
export class SocketPathTooLongError extends HypervisorError {
  constructor(readonly path: string) {
    super(
      `socket path is ${Buffer.byteLength(path)} bytes, more than the 107 a Unix socket allows: ${path}; ` +
        'set HULL_SOCKET_DIR to a shorter directory',
    );
  }
}

/** QEMU sent something that is not QMP: not JSON, not an object, or a line over the cap. */
export class QmpProtocolError extends HypervisorError {}

/** QEMU answered a command with an error object. */
export class QmpCommandError extends HypervisorError {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
  }
}

/** The QMP connection closed (QEMU exited, or we closed it) before a reply came. */
export class QmpClosedError extends HypervisorError {}

/** A QMP command or the greeting did not arrive in time. */
export class QmpTimeoutError extends HypervisorError {}

/** The VM is not in a state that allows the operation (e.g. pause after exit). */
export class VmStateError extends HypervisorError {}

/** Nothing in the guest accepted a vsock connection on the port before the deadline. */
export class AgentUnreachableError extends HypervisorError {
  constructor(
    readonly target: string,
    readonly port: number,
    readonly timeoutMs: number,
    readonly attempts: number,
    readonly lastError: string,
  ) {
    super(
      `guest vsock port ${port} did not accept a connection via ${target} within ${timeoutMs} ms ` +
        `(${attempts} attempts; last: ${lastError}); check that the VM is running and that the agent started ` +
        `(see the sandbox's console.log)`,
    );
  }
}

/** The hybrid vsock backend broke its line protocol (answer too long, or not `OK `). */
export class HybridVsockProtocolError extends HypervisorError {}

/** The AF_VSOCK path was chosen but the native addon could not be loaded. */
export class VsockAddonError extends HypervisorError {}

/** No free guest CID could be reserved for kernel vhost-vsock. */
export class CidAllocationError extends HypervisorError {}

/** A recorded VM (vmm.json) could not be read back. */
export class VmRecordError extends HypervisorError {}
