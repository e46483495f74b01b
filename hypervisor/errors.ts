// Typed errors of the VMM control layer. Each message is meant for a person and says what to do next where there is
// something to do; the fields carry the context a caller may want to log or act on. Each error carries a kind, chosen
// where it is raised, which the front ends turn into their own codes (a ttrpc code for containerd, the CLI's log).

/** What went wrong, in the words both front ends map to their codes; shim/errors.ts HullErrorKind is this type. */
export type ErrorKind =
  | 'invalid-argument'
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'unavailable'
  | 'internal';

export class HypervisorError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An error that has the same kind wherever it is raised: the class's `static kind` (internal unless it says). */
class FixedKindError extends HypervisorError {
  static readonly kind: ErrorKind = 'internal';
  constructor(message: string, options?: { cause?: unknown }) {
    super((new.target as typeof FixedKindError).kind, message, options);
  }
}

/** The caller asked for KVM but this host cannot run a real kernel under it. */
export class KvmUnavailableError extends HypervisorError {
  constructor(readonly why: string) {
    super('failed-precondition', `KVM was requested but is not usable here: ${why}; set HULL_ACCEL=auto or tcg`);
  }
}

/** An accelerator name hull does not know (HULL_ACCEL, or a driver option), refused before anything is started. */
export class UnknownAccelError extends HypervisorError {
  constructor(
    readonly value: string,
    readonly source: string,
    readonly allowed: readonly string[],
  ) {
    super('invalid-argument', `${source}=${JSON.stringify(value)} is not an accelerator hull knows; use one of: ${allowed.join(', ')}`);
  }
}

/** A helper binary (QEMU, virtiofsd, the vsock backend) is missing or not executable. */
export class BinaryNotFoundError extends HypervisorError {
  constructor(
    readonly binary: string,
    readonly path: string,
    readonly remedy: string,
  ) {
    super('failed-precondition', `${binary} not found at ${path}: ${remedy}`);
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
    super('unavailable', logTail ? `${helper}: ${message}\n--- last lines of its log ---\n${logTail}` : `${helper}: ${message}`, options);
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
    super('unavailable', parts.join('\n'), options);
  }
}

/** A Unix socket path would not fit in sockaddr_un (108 bytes); the sandbox root is too deep. */
export class SocketPathTooLongError extends HypervisorError {
  constructor(readonly path: string) {
    super(
      'invalid-argument',
      `socket path is ${Buffer.byteLength(path)} bytes, more than the 107 a Unix socket allows: ${path}; ` +
        'set HULL_SOCKET_DIR to a shorter directory',
    );
  }
}

/** QEMU sent something that is not QMP: not JSON, not an object, or a line over the cap. */
export class QmpProtocolError extends FixedKindError {}

/**
 * The kind of a QMP error reply, by QEMU's error class (qapi/error.json). GenericError is QEMU's word for most
 * failures, of commands hull composes itself: hull did not expect it, so it is internal.
 */
export function qmpErrorKind(errorClass: string): ErrorKind {
  switch (errorClass) {
    case 'DeviceNotFound':
      return 'not-found';
    case 'DeviceNotActive': // the device is there but not in a state that allows the command
    case 'KVMMissingCap': // the host's KVM lacks a capability the command needs
      return 'failed-precondition';
    default: // GenericError, CommandNotFound (a QEMU older than hull expects), classes added later
      return 'internal';
  }
}

/** QEMU answered a command with an error object. */
export class QmpCommandError extends HypervisorError {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(qmpErrorKind(errorClass), `QMP ${command} failed: ${errorClass}: ${desc}`);
  }
}

/** The QMP connection closed (QEMU exited, or we closed it) before a reply came. */
export class QmpClosedError extends FixedKindError {
  static override readonly kind: ErrorKind = 'unavailable';
}

/** A QMP command or the greeting did not arrive in time. */
export class QmpTimeoutError extends FixedKindError {
  static override readonly kind: ErrorKind = 'unavailable';
}

/** The VM is not in a state that allows the operation (e.g. pause after exit). */
export class VmStateError extends FixedKindError {
  static override readonly kind: ErrorKind = 'failed-precondition';
}

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
      'unavailable',
      `guest vsock port ${port} did not accept a connection via ${target} within ${timeoutMs} ms ` +
        `(${attempts} attempts; last: ${lastError}); check that the VM is running and that the agent started ` +
        `(see the sandbox's console.log)`,
    );
  }
}

/** The hybrid vsock backend broke its line protocol (answer too long, or not `OK `). */
export class HybridVsockProtocolError extends FixedKindError {}

/** The AF_VSOCK path was chosen but the native addon could not be loaded or used. */
export class VsockAddonError extends FixedKindError {
  static override readonly kind: ErrorKind = 'failed-precondition';
}

/** No free guest CID could be reserved for kernel vhost-vsock. */
export class CidAllocationError extends FixedKindError {
  static override readonly kind: ErrorKind = 'unavailable';
}

/** No free uid for a VMM could be reserved in the configured range (hypervisor/vmm-uid.ts). */
export class VmmUidAllocationError extends FixedKindError {
  static override readonly kind: ErrorKind = 'unavailable';
}

/** $HULL_VMM_UID_RANGE is not a range hull can hand out (hypervisor/vmm-uid.ts). */
export class VmmUidRangeError extends FixedKindError {
  static override readonly kind: ErrorKind = 'failed-precondition';
}

/** The kernel refused every guest CID tried (each held by something outside hull: the host itself, another VMM). */
export class GuestCidInUseError extends HypervisorError {
  constructor(
    readonly cids: readonly number[],
    readonly stderrTail: string,
  ) {
    super(
      'unavailable',
      `the host kernel refused guest CID${cids.length > 1 ? 's' : ''} ${cids.join(', ')} for vhost-vsock (EADDRINUSE: ` +
        `held by another VM or by the host itself), and hull tries no more than ${cids.length} in one start` +
        (stderrTail ? `\n--- last lines of QEMU's stderr ---\n${stderrTail}` : ''),
    );
  }
}

/**
 * A recorded VM (vmm.json, or the VM's processes in state.json and pod.json) could not be read back: missing
 * (not-found) or not a record this hull can read (internal).
 */
export class VmRecordError extends HypervisorError {}

/**
 * A VMM driver name that this hull does not have: asked for by a caller (invalid-argument), or named by a record that
 * another version of hull wrote (failed-precondition).
 */
export class UnknownDriverError extends HypervisorError {
  constructor(
    readonly driver: string,
    readonly known: readonly string[],
    /** The record that named it; undefined when a caller asked for it. */
    readonly recordFile?: string,
  ) {
    super(
      recordFile === undefined ? 'invalid-argument' : 'failed-precondition',
      `unknown VMM driver ${JSON.stringify(driver)}` +
        (recordFile === undefined ? '' : ` in ${recordFile} (was the sandbox started by another version of hull?)`) +
        `; this hull has: ${known.join(', ')}`,
    );
  }
}
