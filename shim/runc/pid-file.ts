// The --pid-file of create, run and exec: what conmon, podman and Docker read to find the process that stands for the
// container (or the exec). Written atomically, so a reader never sees a half-written pid.
import { writeFileAtomic } from '../../hypervisor/atomic-write.js';

/** runc's format: the decimal pid with no newline. */
export function writePidFile(file: string, pid: number): void {
  writeFileAtomic(file, String(pid), 0o644);
}
