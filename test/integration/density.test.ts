// Density (docs/density.md): memory the guest frees goes back to the host through virtio-balloon free page reporting.
// A real microVM: the guest fills and frees ~96 MiB of page cache, and QEMU's guest RAM (the memfd mapping) must shrink
// back; then the guest fills the same amount again (reported pages are usable again). Nothing here is mocked.
// The same sandbox checks that its monitor was started with the idle-process settings.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectNoLeaksThenRemove, hull, hullDetached, makeBundle, tempDir } from '../helpers/hull.js';

const work = tempDir('hull-density-');
const root = path.join(work, 'root');
const FILL_MIB = 96;

afterAll(() => {
  expectNoLeaksThenRemove(root, work, (a, e) => expect(a).toEqual(e));
});

/** Resident MiB of QEMU's guest RAM mapping (the memory-backend-memfd). */
function guestRamMiB(qemuPid: number): number {
  let inRam = false;
  let kb = 0;
  for (const line of readFileSync(`/proc/${qemuPid}/smaps`, 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inRam = line.includes('/memfd:memory-backend-memfd');
    else if (inRam && line.startsWith('Rss:')) kb += Number(line.split(/\s+/)[1]);
  }
  return kb / 1024;
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 500))) if (cond()) return true;
  return cond();
}

describe('free page reporting', () => {
  it('returns the pages a guest frees to the host, and the guest can use them again', async () => {
    const bundle = makeBundle(path.join(work, 'idle'), ['sleep', '1000']);
    // create leaves the monitor holding its stdio: wait for the CLI itself (hullDetached).
    const stdio = { stdout: path.join(work, 'create.out'), stderr: path.join(work, 'create.err') };
    const created = await hullDetached(['create', '--bundle', bundle, 'fpr'], { root, ...stdio });
    expect(created.code, created.stderr).toBe(0);
    try {
      expect((await hull(['start', 'fpr'], { root })).code).toBe(0);
      const state = JSON.parse(readFileSync(path.join(root, 'fpr', 'state.json'), 'utf8')) as { pid: number; vm: { vmm: { pid: number } } };
      const qemu = state.vm.vmm.pid;
      // The monitor starts lean (shim/idle-node.ts); its malloc limit is not passed on to QEMU and the helpers.
      expect(readFileSync(`/proc/${state.pid}/cmdline`, 'utf8').split('\0')).toContain('--v8-pool-size=1');
      expect(readFileSync(`/proc/${state.pid}/cmdline`, 'utf8').split('\0')).toContain('--max-semi-space-size=1');
      for (const child of readFileSync(`/proc/${state.pid}/task/${state.pid}/children`, 'utf8').trim().split(/\s+/)) {
        let env: string[];
        try {
          env = readFileSync(`/proc/${child}/environ`, 'utf8').split('\0');
        } catch {
          continue; // a short-lived child that has exited since
        }
        const ours = process.env.MALLOC_ARENA_MAX; // a caller's own setting is passed on, as any variable is
        expect(env.filter((e) => e.startsWith('MALLOC_ARENA_MAX=')), `pid ${child}`).toEqual(ours === undefined ? [] : [`MALLOC_ARENA_MAX=${ours}`]);
      }
      const fill = `dd if=/dev/zero of=/fill bs=1M count=${FILL_MIB} 2>/dev/null && sync && rm /fill && echo filled`;
      for (const round of [1, 2]) {
        const before = guestRamMiB(qemu);
        const r = await hull(['exec', 'fpr', 'sh', '-c', fill], { root });
        expect(r.stdout.trim(), `round ${round}: ${r.stderr}`).toBe('filled');
        const peak = guestRamMiB(qemu);
        expect(peak, `round ${round}: the fill touched guest RAM`).toBeGreaterThan(before + FILL_MIB / 2);
        // The guest reports freed pages ~2 s after they are freed; under TCG on a busy host give it longer.
        const returned = await waitFor(() => guestRamMiB(qemu) < peak - FILL_MIB / 2, 30_000);
        expect(returned, `round ${round}: guest RAM ${before.toFixed(0)} → ${peak.toFixed(0)} → ${guestRamMiB(qemu).toFixed(0)} MiB`).toBe(true);
      }
    } finally {
      await hull(['delete', '--force', 'fpr'], { root });
    }
  }, 180_000);
});
