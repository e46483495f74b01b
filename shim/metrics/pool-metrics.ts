// The pool of a root (shim/pool/status.ts poolStatus, what `hull pool status --format json` prints): whether it serves,
// its target size, its VMs by state, and each VM's shape and host memory. The counts are gauges: VMs leave every state.
import { poolStatus, type PoolVmState } from '../pool/status.js';
import type { Families } from './families.js';

const STATES: readonly PoolVmState[] = ['booting', 'ready', 'claimed', 'orphaned', 'stale', 'unknown'];

export function addPoolMetrics(f: Families, root: string): void {
  const s = poolStatus(root);
  const serving = f.declare('hull_pool_serving', 'gauge', '1 while a `hull pool serve` process serves the root, else 0.');
  const size = f.declare('hull_pool_target_size', 'gauge', 'How many ready VMs the serving pool keeps (its --size).');
  const vms = f.declare('hull_pool_vms', 'gauge', 'VMs in the pool directory by state (booting, ready, claimed, orphaned, stale, unknown: docs/pool.md).');
  const vcpus = f.declare('hull_pool_vm_vcpus', 'gauge', 'vCPUs of a pooled VM.');
  const memory = f.declare('hull_pool_vm_memory_bytes', 'gauge', 'RAM of a pooled VM.');
  const pss = f.declare('hull_pool_vm_host_pss_bytes', 'gauge', "Host PSS summed over a pooled VM's processes (smaps_rollup).");
  const rss = f.declare('hull_pool_vm_host_rss_bytes', 'gauge', "Host RSS summed over a pooled VM's processes.");
  serving({ root }, s.serving ? 1 : 0);
  if (s.size !== undefined) size({ root }, s.size);
  for (const state of STATES) vms({ root, state }, s.vms.filter((vm) => vm.state === state).length);
  for (const vm of s.vms) {
    const labels = { root, vm: vm.id, state: vm.state };
    if (vm.shape) {
      vcpus(labels, vm.shape.vcpus);
      memory(labels, vm.shape.memoryMiB * 2 ** 20);
    }
    if (vm.pssBytes !== undefined) pss(labels, vm.pssBytes);
    if (vm.rssBytes !== undefined) rss(labels, vm.rssBytes);
  }
}
