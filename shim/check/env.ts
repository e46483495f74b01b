// `hull env`: the configuration in force (after flags, environment variables and the config file), the paths hull
// uses and the versions of everything a VM is made of, for bug reports — as TOML (the default, like
// `kata-runtime env`) or JSON. The settings sections have the config file's shape, so a value can be copied back into
// the file; [source] says where each came from.
import { release } from 'node:os';
import path from 'node:path';
import { stringify } from 'smol-toml';
import { chooseAcceleration, probeKvm } from '../../hypervisor/acceleration.js';
import { qemuPath, repoRoot, socketBase, virtiofsdPath, vmmLauncherPath, vsockBackendPath } from '../../hypervisor/paths.js';
import { vhostVsockUsable } from '../../hypervisor/transport.js';
import { VMM_UID_RANGE_DEFAULT, VMM_UID_RANGE_ENV } from '../../hypervisor/vmm-uid.js';
import { addonPath } from '../../native/addon/index.js';
import { hullConfig } from '../config/load.js';
import { CONFIG_SCHEMA } from '../config/schema.js';
import { poolSettings } from '../config/pool-defaults.js';
import { envFromConfigFile } from '../config/startup.js';
import {
  configuredAccel,
  configuredLogLevel,
  configuredMaxConcurrentBoots,
  configuredMaxMemoryMiB,
  configuredRoot,
  resolve,
  type Resolved,
} from '../config/values.js';
import { oneLine } from '../errors.js';
import { poolDir } from '../pool/layout.js';
import { detectHierarchies, layoutOf } from '../sandbox/cgroups/hierarchies.js';
import { findGuestAssets, guestAssetsDir } from '../sandbox/guest-assets.js';
import { DEFAULT_MEMORY_MIB, DEFAULT_VCPUS, vmSizeFor } from '../sandbox/vm-sizing.js';
import { containerInitPath } from './checks.js';
import { HULL_VERSION, toolVersion } from './versions.js';

export interface EnvFlags {
  /** --root when given on the command line. */
  root?: string;
  debug: boolean;
}

const versionOf = (p: string): string => {
  const v = toolVersion(p);
  return 'version' in v ? v.version : `unknown (${v.problem})`;
};

/** A value the environment set, unless applyConfig put it there from the file. */
const fromEnv = (name: string): string | undefined => (process.env[name] && !envFromConfigFile(name) ? process.env[name] : undefined);

/** Everything `hull env` reports, as a plain object (TOML- and JSON-ready). */
export function collectEnv(flags: EnvFlags): Record<string, Record<string, unknown>> {
  const config = hullConfig();
  const file = config.values;
  const sources: Record<string, string> = {};
  const take = <T>(key: string, r: Resolved<T>): T => {
    sources[key] = r.source;
    return r.value;
  };

  const unlimited = vmSizeFor({ ociVersion: '1.0.2', root: { path: 'rootfs' } });
  const vcpus = take('vm.vcpus', resolve({ env: fromEnv('HULL_VCPUS') === undefined ? undefined : unlimited.vcpus, file: file.vm.vcpus, fallback: DEFAULT_VCPUS }));
  const memory = take('vm.memory_mib', resolve({ env: fromEnv('HULL_MEMORY_MIB') === undefined ? undefined : unlimited.memoryMiB, file: file.vm.memory_mib, fallback: DEFAULT_MEMORY_MIB }));
  const accel = take('vm.accel', configuredAccel());
  const maxBoots = take('vm.max_concurrent_boots', configuredMaxConcurrentBoots());
  const maxMemory = take('vm.max_memory_mib', configuredMaxMemoryMiB());
  let accelUsed: Record<string, string>;
  try {
    const choice = chooseAcceleration(accel);
    accelUsed = { accel_used: choice.accel, accel_reason: choice.reason };
  } catch (err) {
    accelUsed = { accel_used: 'none', accel_reason: oneLine(err) };
  }

  const pool = poolSettings();
  const poolSize = take('pool.size', pool.size);
  if (poolSize === undefined) sources['pool.size'] = 'unset (hull pool serve needs --size)';
  const root = path.resolve(take('paths.root', configuredRoot(flags.root)));
  const guestDir = guestAssetsDir();
  sources['paths.guest_dir'] = fromEnv('HULL_GUEST_DIR') ? 'env' : file.paths.guest_dir ? 'file' : 'default';
  const uidRange = take(
    'vmm.uid_range',
    resolve({ env: fromEnv(VMM_UID_RANGE_ENV), file: file.vmm.uid_range, fallback: `${VMM_UID_RANGE_DEFAULT.first}-${VMM_UID_RANGE_DEFAULT.last}` }),
  );

  let guest: Record<string, string>;
  try {
    const g = findGuestAssets();
    guest = { guest_kernel: g.kernelRelease, guest_image: g.hash };
  } catch (err) {
    guest = { guest_kernel: 'unknown', guest_image: `unknown (${oneLine(err)})` };
  }
  let cgroups: string;
  try {
    cgroups = layoutOf(detectHierarchies());
  } catch (err) {
    cgroups = `unknown (${oneLine(err)})`;
  }
  const kvm = probeKvm();

  return {
    config: { file: config.file, found: config.found, chosen_by: config.chosenBy === 'env' ? '$HULL_CONFIG' : 'default path' },
    vm: { vcpus, memory_mib: memory, max_memory_mib: maxMemory, accel, max_concurrent_boots: maxBoots, ...accelUsed },
    pool: {
      ...(poolSize === undefined ? {} : { size: poolSize }),
      vcpus: take('pool.vcpus', pool.vcpus),
      memory_mib: take('pool.memory_mib', pool.memoryMiB),
      nics: take('pool.nics', pool.nics),
    },
    log: { level: take('log.level', configuredLogLevel(flags.debug)) },
    paths: {
      root,
      guest_dir: guestDir,
      pool_dir: poolDir(root),
      socket_dir: socketBase(),
      hull: repoRoot(),
      qemu: qemuPath(),
      virtiofsd: virtiofsdPath(),
      vmm_launcher: vmmLauncherPath(),
      vsock_backend: vsockBackendPath(),
      container_init: containerInitPath(),
      native_addon: addonPath(),
    },
    vmm: { uid_range: uidRange },
    source: Object.fromEntries(configKeys().filter((k) => k in sources).map((k) => [k, sources[k]])),
    versions: {
      hull: HULL_VERSION,
      node: process.version,
      qemu: versionOf(qemuPath()),
      virtiofsd: versionOf(virtiofsdPath()),
      ...guest,
    },
    host: {
      kernel: release(),
      cgroups,
      kvm_usable: kvm.usable,
      kvm: kvm.why,
      vsock: vhostVsockUsable() ? 'vhost-vsock (kernel)' : 'hybrid (hull-vsock-backend)',
    },
  };
}

/** `section.key` of every config key, in the schema's order. */
const configKeys = (): string[] => Object.entries(CONFIG_SCHEMA).flatMap(([section, keys]) => Object.keys(keys).map((k) => `${section}.${k}`));

export function formatEnv(env: Record<string, Record<string, unknown>>, format: string): string {
  return format === 'json' ? `${JSON.stringify(env, null, 2)}\n` : stringify(env);
}
