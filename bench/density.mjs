// The density run of the memory benchmark (issue 13): idle sandboxes started one after another on one root, and at
// 1, 2, 4, … and N of them the host's memory in use (MemTotal − MemAvailable, against the figure before the first)
// and the PSS of every sandbox process (the monitors, QEMUs and helpers: file pages shared between the VMs, such as
// vmlinux and the QEMU binary, are divided among them). The marginal cost of the last doubling projects 100.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { processTree, pss } from './processes.mjs';

const MiB = 1024;
/** After the newest sandbox's guest has dropped its page cache (guest-image/init, 10 s of uptime) and reported it. */
const SETTLE_MS = 12_000;
const PROJECT_TO = 100;
const TARGET_GIB_FOR_100 = 16;

/** Host memory in use, MiB: what the kernel could not hand out without reclaim or swap. */
function hostUsedMiB() {
  const info = Object.fromEntries(
    readFileSync('/proc/meminfo', 'utf8').split('\n').filter(Boolean).map((l) => {
      const [k, v] = l.split(/:\s+/);
      return [k, Number.parseInt(v, 10)];
    }),
  );
  return (info.MemTotal - info.MemAvailable) / MiB;
}

/** 1, 2, 4, … below n, then n. */
export function checkpoints(n) {
  const at = [];
  for (let k = 1; k < n; k *= 2) at.push(k);
  if (n > 0) at.push(n);
  return at;
}

/**
 * Starts `n` idle sandboxes (`sleep` in `bundle`) on `root` one after another and measures at each checkpoint.
 * The sandboxes are deleted at the end; on a failure the caller's clean-up deletes what the root still lists.
 */
export async function densityRun({ hull, root, bundle, n, env, checkInterrupted }) {
  const ids = [];
  const rows = [];
  const before = hostUsedMiB();
  const marks = new Set(checkpoints(n));
  try {
    for (let k = 1; k <= n; k++) {
      const id = `density-${k}`;
      const started = Date.now();
      execFileSync(hull, ['--root', root, 'create', '--bundle', bundle, id], { stdio: 'ignore', env });
      ids.push(id);
      execFileSync(hull, ['--root', root, 'start', id], { stdio: 'ignore', env });
      const startMs = Date.now() - started;
      await checkInterrupted();
      if (!marks.has(k)) continue;
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const monitors = ids.map((i) => JSON.parse(readFileSync(path.join(root, i, 'state.json'), 'utf8')).pid);
      const pssTotal = monitors.flatMap((m) => processTree(m)).reduce((sum, p) => sum + pss(p.pid), 0);
      rows.push({ sandboxes: k, hostUsedMiB: hostUsedMiB() - before, pssPerSandboxMiB: pssTotal / k, lastStartMs: startMs });
    }
  } finally {
    // Not execFileSync: a failed delete must not hide the error that got us here (the bench's clean-up retries it).
    for (const id of ids.reverse()) spawnSync(hull, ['--root', root, 'delete', '--force', id], { stdio: 'ignore' });
  }
  const last = rows.at(-1);
  const prev = rows.at(-2);
  const marginal = last && prev ? (last.hostUsedMiB - prev.hostUsedMiB) / (last.sandboxes - prev.sandboxes) : undefined;
  const projected = marginal === undefined ? undefined : last.hostUsedMiB + (PROJECT_TO - last.sandboxes) * marginal;
  return { rows, marginalMiB: marginal, projectedMiB: projected };
}

export function printDensity(result, out) {
  out(`\ndensity: idle sandboxes started one after another (${SETTLE_MS / 1000} s settle at each checkpoint)`);
  out('  sandboxes   host memory in use (MiB, over the start)   PSS per sandbox (MiB)');
  for (const r of result.rows) {
    out(`  ${String(r.sandboxes).padStart(9)}   ${r.hostUsedMiB.toFixed(0).padStart(40)}   ${r.pssPerSandboxMiB.toFixed(1).padStart(21)}`);
  }
  if (result.marginalMiB === undefined) return;
  const gib = result.projectedMiB / 1024;
  out(`  marginal ${result.marginalMiB.toFixed(0)} MiB per sandbox (last doubling) → ${PROJECT_TO} sandboxes ≈ ${gib.toFixed(1)} GiB ` +
    `(target ≤ ${TARGET_GIB_FOR_100} GiB: ${gib <= TARGET_GIB_FOR_100 ? 'met' : 'MISS'})`);
}
