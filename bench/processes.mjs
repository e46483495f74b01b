// The host processes of one sandbox for the memory figures: a process and everything it started (QEMU and the helpers
// are children of the hull monitor or of the containerd shim; their command lines name the socket directory under
// /run/hull/s, not the sandbox's own).
import { readdirSync, readFileSync } from 'node:fs';

/** `root` and its descendants, each with its command line. */
export function processTree(root) {
  const procs = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).flatMap((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return [{ pid: Number(pid), ppid, cmd: readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ') }];
    } catch {
      return [];
    }
  });
  const ours = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs) {
      if (!ours.has(p.pid) && ours.has(p.ppid)) {
        ours.add(p.pid);
        grew = true;
      }
    }
  }
  return procs.filter((p) => ours.has(p.pid));
}

/** A process's proportional set size, MiB (0 once it is gone). */
export function pss(pid) {
  try {
    const line = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').split('\n').find((l) => l.startsWith('Pss:'));
    return Number(line.split(/\s+/)[1]) / 1024;
  } catch {
    return 0;
  }
}
