// Where a root's pool of pre-booted VMs lives, and the names inside it: the contract between `hull pool serve` (the
// pool manager, serve.ts) and whoever claims a VM from it (claim.ts, used by the sandbox core's VmFactory). docs/pool.md
// describes it for people.
//
//   <poolDir>/                 mode 0700; $HULL_POOL_DIR, else /run/hull/pool/<16 hex of sha256(resolved root)>/:
//                              outside the root, so it never collides with a container id (like the socket dirs of
//                              hypervisor/paths.ts), and derived from the root alone, so every hull process finds it
//   <poolDir>/serve.lock       the serving process: ServeLock (records.ts). Created exclusively; a dead holder's lock
//                              is taken over (serve-lock.ts). No live holder: no pool serves the root, nothing is
//                              claimed
//   <poolDir>/vms/<vmid>/      one pooled VM's sandbox directory: the VM was booted with dir = this, so its share is
//                              <vmdir>/shared and its console.log, vmm.json and logs live here; its sockets live in the
//                              socket dir hypervisor/paths.ts derives from this path. vmid: `p-<12 hex>`
//   <vmdir>/pool-vm.json       PoolVmRecord (records.ts), written atomically: before any process starts ('booting'),
//                              again as each process starts (`vm`), and once the agent answered ('ready')
//   <vmdir>/claim              Claim (records.ts): whoever takes the VM — a claimer, or the pool itself before it
//                              powers a VM off. Created exclusively (claim.ts takeVm); its existence means claimed,
//                              for good: a VM serves one sandbox once and never goes back
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { PooledNic } from './records.js';

/** The pool directory's base when $HULL_POOL_DIR is not set. */
export const POOL_BASE_DEFAULT = '/run/hull/pool';

/** Mode of the pool directory and of every VM directory in it: only root reaches the VMs' shares and logs. */
export const POOL_DIR_MODE = 0o700;

/** The pool directory of `root` (see above). */
export function poolDir(root: string): string {
  const override = process.env['HULL_POOL_DIR'];
  if (override) return path.resolve(override);
  const digest = createHash('sha256').update(path.resolve(root)).digest('hex').slice(0, 16);
  return path.join(POOL_BASE_DEFAULT, digest);
}

export const serveLockPath = (pool: string): string => path.join(pool, 'serve.lock');
export const vmsDir = (pool: string): string => path.join(pool, 'vms');
export const pooledVmDir = (pool: string, id: string): string => path.join(vmsDir(pool), id);
export const poolVmPath = (vmDir: string): string => path.join(vmDir, 'pool-vm.json');
export const claimPath = (vmDir: string): string => path.join(vmDir, 'claim');

/** The directory a pooled VM shares with its guest over virtio-fs. */
export const vmSharedDir = (vmDir: string): string => path.join(vmDir, 'shared');

const VM_ID = /^p-[0-9a-f]{12}$/;

/** A new VM id: `p-` and 12 random hex digits. */
export const newVmId = (): string => `p-${randomBytes(6).toString('hex')}`;

/** A pooled VM's NICs: taps its VMM creates in its own namespace, and random locally administered unicast MACs. */
export function newPooledNics(count: number): PooledNic[] {
  return Array.from({ length: count }, (_, i) => {
    const bytes = randomBytes(6);
    bytes[0] = (bytes[0]! & 0xfc) | 0x02;
    return { tap: `hullpool${i}`, mac: [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':') };
  });
}

/** True for a name the pool gives a VM directory; anything else in vms/ is not the pool's and is left alone. */
export const isVmId = (name: string): boolean => VM_ID.test(name);
