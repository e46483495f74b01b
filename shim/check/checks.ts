// `hull check`'s findings, one per thing hull needs or uses on this host: ok (there and used), warn (hull runs, with
// less: TCG instead of KVM, no vhost-net, no tap device), fail (hull cannot run a container here until it is fixed).
// Each check reads the host the way the code that uses it does (the same probe, the same path lookup), so what check
// says is what a `hull run` would do.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { chooseAcceleration, probeKvm, type RequestedAccel } from '../../hypervisor/acceleration.js';
import { KvmUnavailableError } from '../../hypervisor/errors.js';
import { qemuPath, repoRoot, virtiofsdPath, vmmLauncherPath, vsockBackendPath } from '../../hypervisor/paths.js';
import { vhostVsockUsable } from '../../hypervisor/transport.js';
import { vmmUidRange } from '../../hypervisor/vmm-uid.js';
import { addonPath, closeFd, socketpair } from '../../native/addon/index.js';
import { ConfigError } from '../config/errors.js';
import { hullConfig } from '../config/load.js';
import { configuredAccel } from '../config/values.js';
import { oneLine } from '../errors.js';
import { detectHierarchies, layoutOf } from '../sandbox/cgroups/hierarchies.js';
import { findGuestAssets } from '../sandbox/guest-assets.js';
import { toolVersion } from './versions.js';

export type Status = 'ok' | 'warn' | 'fail';

export interface Finding {
  status: Status;
  what: string;
  detail: string;
}

const ok = (what: string, detail: string): Finding => ({ status: 'ok', what, detail });
const warn = (what: string, detail: string): Finding => ({ status: 'warn', what, detail });
const fail = (what: string, detail: string): Finding => ({ status: 'fail', what, detail });

const isExecutable = (p: string): boolean => {
  try {
    const st = statSync(p);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
};

function checkConfig(): Finding {
  try {
    const c = hullConfig();
    return ok('config', c.found ? `${c.file} (read${c.chosenBy === 'env' ? ', named by $HULL_CONFIG' : ''})` : `${c.file} absent: built-in defaults`);
  } catch (err) {
    return fail('config', oneLine(err));
  }
}

function checkPrivileges(): Finding {
  const uid = process.geteuid?.();
  return uid === 0
    ? ok('privileges', 'running as root')
    : fail('privileges', `running as uid ${uid}: hull needs root (mounts, network namespaces, taps, cgroups)`);
}

/** What a VM gets here: the accelerator asked for (the config file or $HULL_ACCEL; auto if the file is bad) and why. */
function checkKvm(): Finding {
  let requested: RequestedAccel = 'auto';
  try {
    requested = configuredAccel().value;
  } catch {
    // the config line says what is wrong with the file; the host is still worth describing
  }
  try {
    const choice = chooseAcceleration(requested);
    if (choice.accel === 'kvm') return ok('kvm', choice.reason);
    if (requested === 'tcg') return ok('kvm', `not used: TCG requested (vm.accel or $HULL_ACCEL); KVM here: ${probeKvm().why}`);
    return warn('kvm', `not usable: ${probeKvm().why}; VMs run under TCG software emulation (slower boots and CPU)`);
  } catch (err) {
    if (err instanceof KvmUnavailableError) return fail('kvm', `requested (vm.accel or $HULL_ACCEL = kvm) but not usable: ${err.why}`);
    throw err;
  }
}

function checkVsock(): Finding[] {
  const kernel = vhostVsockUsable();
  const backend = vsockBackendPath();
  const built = isExecutable(backend);
  const vsock = kernel
    ? ok('vhost-vsock', '/dev/vhost-vsock usable: the agent channel is the kernel\'s AF_VSOCK')
    : ok('vhost-vsock', `${existsSync('/dev/vhost-vsock') ? '/dev/vhost-vsock cannot be opened' : '/dev/vhost-vsock absent'}: the agent channel is hull's vhost-user vsock backend`);
  const backendLine = built
    ? ok('vsock backend', backend)
    : (kernel ? warn : fail)('vsock backend', `${backend} is not built: run \`make -C native\` (or set HULL_VSOCK_BACKEND)`);
  return [vsock, backendLine];
}

function checkNet(): Finding[] {
  return [
    existsSync('/dev/net/tun')
      ? ok('tun', '/dev/net/tun present: a pod\'s interfaces reach the VM through taps')
      : warn('tun', '/dev/net/tun absent: containers whose network namespace has interfaces cannot run (modprobe tun)'),
    existsSync('/dev/vhost-net')
      ? ok('vhost-net', '/dev/vhost-net present: virtio-net uses the kernel data path')
      : warn('vhost-net', '/dev/vhost-net absent: virtio-net runs in QEMU\'s user space (slower networking)'),
  ];
}

function checkTool(what: string, p: string, install: string): Finding {
  const v = toolVersion(p);
  return 'version' in v ? ok(what, `${v.version} (${p})`) : fail(what, `${v.problem}: ${install}`);
}

function checkBinary(what: string, p: string, missing: (detail: string) => Finding): Finding {
  return isExecutable(p) ? ok(what, p) : missing(`${p} is not built: run \`make -C native\``);
}

function checkAddon(): Finding {
  try {
    const [a, b] = socketpair(); // loads the addon and calls into it
    closeFd(a);
    closeFd(b);
    return ok('native addon', addonPath());
  } catch (err) {
    return fail('native addon', oneLine(err));
  }
}

function checkCgroups(): Finding {
  try {
    const layout = layoutOf(detectHierarchies());
    const what = { v1: 'v1', hybrid: 'hybrid (v1 controllers and an empty v2 unified mount)', v2: 'v2 (unified)' }[layout];
    return ok('cgroups', `${what}: the VM's host cgroup is made there`);
  } catch (err) {
    return warn('cgroups', `${oneLine(err)}: linux.cgroupsPath cannot be honoured`);
  }
}

function checkGuestImage(): Finding {
  try {
    const g = findGuestAssets();
    const files = [g.kernelPath, g.initrdPath, ...(g.rootImagePath ? [g.rootImagePath] : [])];
    const absent = files.filter((f) => !existsSync(f));
    if (absent.length > 0) return fail('guest image', `${g.dir} lacks ${absent.map((f) => path.basename(f)).join(', ')}: rebuild it with "npm run build"`);
    return ok('guest image', `${g.hash}, kernel ${g.kernelRelease}, ${g.rootImagePath ? 'erofs root' : 'initramfs'} (${g.dir})`);
  } catch (err) {
    // a bad config file is the config line's failure; where the image is depends on it
    if (err instanceof ConfigError) return warn('guest image', 'not checked: paths.guest_dir cannot be read from the bad config file');
    return fail('guest image', oneLine(err));
  }
}

/** Every finding, in the order `hull check` prints them. */
export function runChecks(): Finding[] {
  const guard = (what: string, f: () => Finding | Finding[]): Finding[] => {
    try {
      return [f()].flat();
    } catch (err) {
      return [fail(what, oneLine(err))];
    }
  };
  return [
    ...guard('config', checkConfig),
    ...guard('privileges', checkPrivileges),
    ...guard('kvm', checkKvm),
    ...guard('vhost-vsock', checkVsock),
    ...guard('tun', checkNet),
    ...guard('qemu', () => checkTool('qemu', qemuPath(), 'apt-get install qemu-system-x86 (or set HULL_QEMU)')),
    ...guard('virtiofsd', () => checkTool('virtiofsd', virtiofsdPath(), 'apt-get install qemu-system-common (or set HULL_VIRTIOFSD)')),
    ...guard('vmm launcher', () => checkBinary('vmm launcher', vmmLauncherPath(), (d) => fail('vmm launcher', d))),
    ...guard('container init', () =>
      checkBinary('container init', containerInitPath(), (d) => warn('container init', `${d} (the guest image holds its own copy; a rebuild needs it)`)),
    ),
    ...guard('vmm uids', () => {
      const r = vmmUidRange(); // $HULL_VMM_UID_RANGE, which applyConfig fills from vmm.uid_range
      return ok('vmm uids', `${r.first}-${r.last} (${r.last - r.first + 1} sandboxes at once, one uid each)`);
    }),
    ...guard('native addon', checkAddon),
    ...guard('cgroups', checkCgroups),
    ...guard('guest image', checkGuestImage),
  ];
}

/** The static container init helper guest-image/build.sh puts into the image. */
export const containerInitPath = (): string => path.join(repoRoot(), 'build', 'native', 'hull-container-init');
