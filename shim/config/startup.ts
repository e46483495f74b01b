// What a hull process does with its config file before anything else: read and check it (a bad file fails the
// command here, in one line, before anything exists), and hand the VMM layer the settings it takes only from its
// environment. hypervisor/ knows nothing of the config file, so a key the file sets and the environment does not is
// put into this process's environment, which the processes it starts inherit. Today that is vmm.uid_range →
// $HULL_VMM_UID_RANGE (hypervisor/vmm-uid.ts); the environment variable, when set, still wins.
import { VMM_UID_RANGE_ENV } from '../../hypervisor/vmm-uid.js';
import { hullConfig, type LoadedConfig } from './load.js';

/** The environment variables this process took from the config file, and the value each got (for `hull env`). */
const fromFile = new Map<string, string>();

export function applyConfig(): LoadedConfig {
  const config = hullConfig();
  const range = config.values.vmm.uid_range;
  const current = process.env[VMM_UID_RANGE_ENV];
  if (range !== undefined && (!current || current === fromFile.get(VMM_UID_RANGE_ENV))) {
    process.env[VMM_UID_RANGE_ENV] = range;
    fromFile.set(VMM_UID_RANGE_ENV, range);
  }
  return config;
}

/** True when `name` was set from the config file by applyConfig, not by whoever started this process. */
export const envFromConfigFile = (name: string): boolean => process.env[name] !== undefined && process.env[name] === fromFile.get(name);
