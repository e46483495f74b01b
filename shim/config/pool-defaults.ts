// The shape of `hull pool serve`'s VMs when its flags leave something out: flag > environment variable > [pool] in the
// config file > what a container whose spec sets no limits gets (so a plain `hull run` finds a VM that fits).
import { vmSizeFor } from '../sandbox/vm-sizing.js';
import { hullConfig } from './load.js';
import { resolve, type Resolved } from './values.js';

/** One NIC: a pod (CNI, podman, Docker) has one interface; a sandbox without any leaves it unused and down. */
export const DEFAULT_POOL_NICS = 1;

export interface PoolFlags {
  size?: number;
  vcpus?: number;
  memoryMiB?: number;
  nics?: number;
}

export interface PoolSettings {
  /** undefined: no --size and no pool.size, which `hull pool serve` refuses. */
  size: Resolved<number | undefined>;
  vcpus: Resolved<number>;
  memoryMiB: Resolved<number>;
  nics: Resolved<number>;
}

export function poolSettings(flags: PoolFlags = {}): PoolSettings {
  const file = hullConfig().values.pool;
  // HULL_VCPUS / HULL_MEMORY_MIB size every VM hull boots; a pooled VM of another size would never be claimed.
  const unlimited = vmSizeFor({ ociVersion: '1.0.2', root: { path: 'rootfs' } });
  const env = (name: string, value: number): number | undefined => (process.env[name] ? value : undefined);
  return {
    size: resolve<number | undefined>({ flag: flags.size, file: file.size, fallback: undefined }),
    vcpus: resolve({ flag: flags.vcpus, env: env('HULL_VCPUS', unlimited.vcpus), file: file.vcpus, fallback: unlimited.vcpus }),
    memoryMiB: resolve({ flag: flags.memoryMiB, env: env('HULL_MEMORY_MIB', unlimited.memoryMiB), file: file.memory_mib, fallback: unlimited.memoryMiB }),
    nics: resolve({ flag: flags.nics, file: file.nics, fallback: DEFAULT_POOL_NICS }),
  };
}
