// DestroySandbox's sync (agent/power.ts): skipped when the guest's page cache holds nothing dirty, since a sync then
// only costs a host syncfs through virtio-fs; done when anything is dirty or the counters cannot be read.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dirtyKiB, syncFilesystems } from '../../agent/power.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-power-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function meminfo(dirty: number, writeback: number): string {
  const file = path.join(tmp, `meminfo-${dirty}-${writeback}`);
  writeFileSync(file, `MemTotal:         500000 kB\nDirty:          ${String(dirty).padStart(8)} kB\nWriteback:      ${String(writeback).padStart(8)} kB\nWritebackTmp:          0 kB\n`);
  return file;
}

describe('the sync before power-off', () => {
  it('reads Dirty + Writeback, and nothing from a file without them', () => {
    expect(dirtyKiB(meminfo(0, 0))).toBe(0);
    expect(dirtyKiB(meminfo(12, 4))).toBe(16);
    const partial = path.join(tmp, 'partial');
    writeFileSync(partial, 'MemTotal: 1 kB\nDirty: 0 kB\n');
    expect(dirtyKiB(partial)).toBeUndefined();
    expect(dirtyKiB(path.join(tmp, 'missing'))).toBeUndefined();
  });

  it('is skipped when nothing is dirty, and made otherwise', () => {
    expect(syncFilesystems(meminfo(0, 0))).toBe(false);
    expect(syncFilesystems(meminfo(8, 0))).toBe(true);
    expect(syncFilesystems(path.join(tmp, 'missing'))).toBe(true);
  });
});
