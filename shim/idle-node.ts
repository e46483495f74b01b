// How hull starts its long-lived, mostly idle Node processes: the monitor `hull create` leaves (and a detached
// `hull exec`) and the containerd shim daemon. There is one per sandbox, so their idle memory counts per sandbox
// (docs/density.md has the measurements behind each setting).

/** Node flags placed before the script. One V8 platform worker instead of Node's default 4: each worker is a thread
 * with its own stack and malloc arena, and an idle process has no background compile or GC work to spread.
 * Semi-spaces of at most 1 MiB instead of 16: V8 grows its young generation toward 2×16 MiB under a steady stream of
 * short-lived objects (a pod serving exec probes) and keeps it committed, so the shim's RSS rose by ~30 MiB over 1000
 * execs while its live heap stayed at ~11 MiB; with small semi-spaces scavenges come more often and cost less each. */
export const IDLE_NODE_FLAGS: readonly string[] = ['--v8-pool-size=1', '--max-semi-space-size=1'];

/** Set next to the MALLOC_ARENA_MAX that idleNodeEnv adds. The launchers (bin/) remove both at once: glibc has read
 * the limit by then, and what the process spawns (virtiofsd, the vsock backend) keeps the caller's environment. */
export const ARENA_MARK_ENV = 'HULL_MALLOC_ARENA_MAX_SET';

/** The environment for such a process: at most two glibc malloc arenas (each thread that mallocs otherwise gets its
 * own arena, up to 8 per core, and touches its pages). A MALLOC_ARENA_MAX the caller set is left as it is. */
export function idleNodeEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (env.MALLOC_ARENA_MAX !== undefined) return { ...env };
  return { ...env, MALLOC_ARENA_MAX: '2', [ARENA_MARK_ENV]: '1' };
}
