// What `state` and `list` report. The state file says what the monitor last recorded; a monitor that is gone
// without recording an exit means the container is stopped (it died with its VM or was killed).
import { isAlive } from '../../hypervisor/process.js';
import { monitorOf, type ContainerState, type ContainerStatus } from './state.js';

export function currentStatus(state: ContainerState): ContainerStatus {
  if (state.status === 'stopped') return 'stopped';
  return isAlive(monitorOf(state)) ? state.status : 'stopped';
}

export interface OciState {
  ociVersion: string;
  id: string;
  pid: number;
  status: ContainerStatus;
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations?: Record<string, string>;
}

export function ociState(state: ContainerState): OciState {
  const status = currentStatus(state);
  const annotations = Object.keys(state.annotations).length ? state.annotations : undefined;
  return {
    ociVersion: state.ociVersion,
    id: state.id,
    // runc reports pid 0 once the container has stopped.
    pid: status === 'stopped' ? 0 : state.pid,
    status,
    bundle: state.bundle,
    rootfs: state.rootfs,
    created: state.created,
    owner: state.owner,
    ...(annotations ? { annotations } : {}),
  };
}
