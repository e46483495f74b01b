// A missing or broken hull_native.node: every use says so at once, in one line naming the file and how to rebuild it
// (native/addon/index.ts NativeAddonError), and the AF_VSOCK transport fails at once instead of retrying the connect
// until the agent deadline. The addon is pointed at with HULL_NATIVE_ADDON; this file never loads the real one, so
// each case starts from an addon that has not been loaded.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VsockAddonError } from '../../hypervisor/errors.js';
import { KernelVsockTransport } from '../../hypervisor/transport.js';
import { kvmProbe, NativeAddonError, socketpair } from '../../native/addon/index.js';

let tmp: string;
const saved = process.env['HULL_NATIVE_ADDON'];
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-addon-'));
});
afterEach(() => {
  if (saved === undefined) delete process.env['HULL_NATIVE_ADDON'];
  else process.env['HULL_NATIVE_ADDON'] = saved;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const REBUILD = 'rebuild it with `npm run build:addon` (or set HULL_NATIVE_ADDON)';

describe('a native addon that is not there or not loadable', () => {
  it('is named, with the way to rebuild it, in one line', () => {
    const missing = path.join(tmp, 'missing.node');
    process.env['HULL_NATIVE_ADDON'] = missing;
    expect(() => socketpair()).toThrow(NativeAddonError);
    expect(() => kvmProbe()).toThrow(`hull native addon ${missing} is missing: ${REBUILD}`);

    const broken = path.join(tmp, 'broken.node');
    writeFileSync(broken, 'not an ELF file\n');
    process.env['HULL_NATIVE_ADDON'] = broken;
    let err: NativeAddonError | undefined;
    try {
      socketpair();
    } catch (e) {
      err = e as NativeAddonError;
    }
    expect(err).toBeInstanceOf(NativeAddonError);
    expect(err?.code).toBe('ERR_HULL_ADDON');
    expect(err?.path).toBe(broken);
    expect(err?.message).toMatch(new RegExp(`^hull native addon ${broken} cannot be loaded \\(.*\\): rebuild it with`));
    expect(err?.message).not.toMatch(/\n/);
  });

  it('fails an AF_VSOCK connect at once, not after the connect deadline', async () => {
    const missing = path.join(tmp, 'gone.node');
    process.env['HULL_NATIVE_ADDON'] = missing;
    const started = Date.now();
    const err = await new KernelVsockTransport(3).connect(1024, 90_000).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err).toBeInstanceOf(VsockAddonError);
    expect((err as Error).message).toBe(`hull native addon ${missing} is missing: ${REBUILD}`);
  });
});
