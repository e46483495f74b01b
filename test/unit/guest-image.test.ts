// guest-image/build.sh: content hashing, caching, publishing and pruning — no QEMU, no real kernel.
// A fake kernel dir (a stub vmlinux and text "modules" holding only a `depends=` string, which is all the script
// reads from them) and tiny stand-ins for node, the agent, the addon and the helper keep every build to a second.
// Needs bash, cpio, xz, strings, mkfs.erofs and a static busybox (`/bin/busybox`, Debian busybox-static)
// (test/helpers/prerequisites.ts says what happens without them).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prerequisitesMet } from '../helpers/prerequisites.js';

const repo = path.resolve(__dirname, '../..');
const script = path.join(repo, 'guest-image/build.sh');
const release = '6.1.0-test-cloud-amd64';

function have(cmd: string): boolean {
  return spawnSync('bash', ['-c', `command -v ${cmd}`]).status === 0;
}
/** Each tool with the Debian package that has it. */
const tools: Record<string, string> = { cpio: 'cpio', xz: 'xz-utils', strings: 'binutils', 'mkfs.erofs': 'erofs-utils' };
const missing = Object.entries(tools)
  .filter(([tool]) => !have(tool))
  .map(([tool, pkg]) => `${tool} (apt-get install ${pkg})`);
if (!existsSync('/bin/busybox')) missing.push('/bin/busybox (apt-get install busybox-static)');

// name → depends (the real Debian 6.1 cloud kernel's graph, for the modules build.sh asks for).
const fakeModules: Record<string, string> = {
  virtio_ring: '', virtio: 'virtio_ring', virtio_mmio: 'virtio,virtio_ring', virtio_rng: 'virtio,virtio_ring',
  fuse: '', virtiofs: 'fuse,virtio,virtio_ring', vsock: '', vmw_vsock_virtio_transport_common: 'vsock',
  vmw_vsock_virtio_transport: 'virtio,vmw_vsock_virtio_transport_common,virtio_ring,vsock', overlay: '', qemu_fw_cfg: '',
  virtio_balloon: 'virtio,virtio_ring',
  virtio_blk: 'virtio,virtio_ring', libcrc32c: '', erofs: 'libcrc32c',
  failover: '', net_failover: 'failover', virtio_net: 'virtio_ring,virtio,net_failover',
};

let tmp: string;
let env: NodeJS.ProcessEnv;

function run(args: string[] = [], extraEnv: NodeJS.ProcessEnv = {}) {
  const r = spawnSync('bash', [script, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, last: r.stdout.trim().split('\n').pop() ?? '' };
}
function printHash(extraEnv: NodeJS.ProcessEnv = {}): string {
  const r = run(['--print-hash'], extraEnv);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.last;
}
function builds(): string[] {
  return readdirSync(path.join(tmp, 'out')).filter((n) => /^[0-9a-f]{16}$/.test(n)).sort();
}
function cpioFile(archive: string, member: string): string {
  return execFileSync('cpio', ['-i', '--quiet', '--to-stdout', member], { input: readFileSync(archive) }).toString();
}

describe.runIf(prerequisitesMet('guest-image/build.sh', missing))('guest-image/build.sh', () => {
  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-guest-image-'));
    const k = path.join(tmp, 'kernel');
    mkdirSync(path.join(k, 'modules/kernel'), { recursive: true });
    writeFileSync(path.join(k, 'vmlinux'), '\x7fELF fake kernel\n');
    writeFileSync(path.join(k, 'release'), `${release}\n`);
    writeFileSync(path.join(k, 'modules/modules.builtin'), '');
    for (const [name, deps] of Object.entries(fakeModules)) {
      writeFileSync(path.join(k, 'modules/kernel', `${name}.ko`), `\0\0name=${name}\0depends=${deps}\0vermagic=${release}\0`);
    }
    // One compressed module, as some kernels ship them: build.sh must decompress it.
    execFileSync('xz', [path.join(k, 'modules/kernel/overlay.ko')]);
    const inputs = path.join(tmp, 'inputs');
    mkdirSync(inputs);
    writeFileSync(path.join(inputs, 'agent.mjs'), 'console.log("agent v1");\n');
    writeFileSync(path.join(inputs, 'hull_native.node'), 'fake addon\n');
    writeFileSync(path.join(inputs, 'hull-container-init'), 'fake helper\n');
    env = {
      ...process.env,
      HULL_KERNEL_DIR: k,
      HULL_NODE_BIN: '/bin/true', // a small dynamic ELF: exercises the ldd library copy without 100 MB of Node
      HULL_AGENT_BUNDLE: path.join(inputs, 'agent.mjs'),
      HULL_NATIVE_ADDON_PATH: path.join(inputs, 'hull_native.node'),
      HULL_CONTAINER_INIT_PATH: path.join(inputs, 'hull-container-init'),
      HULL_GUEST_OUT: path.join(tmp, 'out'),
      HULL_GUEST_FORMAT: 'initramfs',
      HULL_INITRD_COMPRESS: 'none',
    };
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('builds once, then reports the cached hash without rebuilding', () => {
    const hash = printHash();
    expect(hash).toMatch(/^[0-9a-f]{16}$/);
    expect(printHash()).toBe(hash);

    const first = run();
    expect(first.status, first.stderr).toBe(0);
    expect(first.last).toBe(`hull-guest: built ${hash} ${path.join(tmp, 'out', hash)}`);
    const dir = path.join(tmp, 'out', hash);
    expect(readlinkSync(path.join(tmp, 'out/current'))).toBe(hash);
    expect(JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'))).toEqual({
      hash,
      kernelRelease: release,
      format: 'initramfs',
      kernelCmdline: 'console=ttyS0 tsc=reliable no_timer_check quiet panic=-1 cryptomgr.notests',
    });
    const initrd = path.join(dir, 'initrd.img');
    expect(cpioFile(initrd, 'hull/agent.mjs')).toBe('console.log("agent v1");\n');
    expect(cpioFile(initrd, 'init')).toBe(readFileSync(path.join(repo, 'guest-image/init'), 'utf8'));
    // Dependencies come before their users; the .ko.xz was decompressed.
    const order = cpioFile(initrd, `usr/lib/modules/${release}/hull.list`).trim().split('\n');
    expect(order).toEqual([
      'virtio_ring.ko', 'virtio.ko', 'virtio_mmio.ko', 'virtio_rng.ko', 'fuse.ko', 'virtiofs.ko', 'vsock.ko',
      'vmw_vsock_virtio_transport_common.ko', 'vmw_vsock_virtio_transport.ko', 'overlay.ko', 'qemu_fw_cfg.ko',
      'virtio_balloon.ko',
    ]);
    // The NIC driver is loaded only when the VM has a virtio-net device: a list of its own.
    expect(cpioFile(initrd, `usr/lib/modules/${release}/hull-net.list`).trim().split('\n')).toEqual([
      'virtio_ring.ko', 'virtio.ko', 'failover.ko', 'net_failover.ko', 'virtio_net.ko',
    ]);
    expect(cpioFile(initrd, `usr/lib/modules/${release}/overlay.ko`)).toContain('name=overlay');

    const second = run();
    expect(second.status, second.stderr).toBe(0);
    expect(second.last).toBe(`hull-guest: cached ${hash} ${dir}`);
    expect(builds()).toEqual([hash]);
  });

  it('changes the hash when an input, the init script or an option changes', () => {
    const base = printHash();
    const agent2 = path.join(tmp, 'inputs/agent2.mjs');
    writeFileSync(agent2, 'console.log("agent v2");\n');
    expect(printHash({ HULL_AGENT_BUNDLE: agent2 })).not.toBe(base);
    expect(printHash({ HULL_INITRD_COMPRESS: 'gzip' })).not.toBe(base);
    expect(printHash({ HULL_GUEST_FORMAT: 'erofs' })).not.toBe(base);
    // A copy of guest-image/ with a different init: the script hashes the init next to it.
    const copy = path.join(tmp, 'guest-image-copy');
    mkdirSync(copy);
    for (const f of ['build.sh', 'kernel.sh', 'init']) writeFileSync(path.join(copy, f), readFileSync(path.join(repo, 'guest-image', f)));
    const same = spawnSync('bash', [path.join(copy, 'build.sh'), '--print-hash'], { env, encoding: 'utf8' });
    expect(same.stdout.trim()).toBe(base);
    writeFileSync(path.join(copy, 'init'), readFileSync(path.join(copy, 'init'), 'utf8') + '# changed\n');
    const changed = spawnSync('bash', [path.join(copy, 'build.sh'), '--print-hash'], { env, encoding: 'utf8' });
    expect(changed.stdout.trim()).toMatch(/^[0-9a-f]{16}$/);
    expect(changed.stdout.trim()).not.toBe(base);
  });

  it('publishes a new build as current and keeps only the newest two', () => {
    const made: string[] = [];
    for (const v of ['a', 'b', 'c']) {
      const agent = path.join(tmp, `inputs/agent-${v}.mjs`);
      writeFileSync(agent, `console.log("${v}");\n`);
      const r = run([], { HULL_AGENT_BUNDLE: agent });
      expect(r.status, r.stderr).toBe(0);
      const hash = r.last.split(' ')[2];
      made.push(hash);
      expect(readlinkSync(path.join(tmp, 'out/current'))).toBe(hash);
    }
    expect(builds()).toEqual(made.slice(1).sort());
    expect(readdirSync(path.join(tmp, 'out')).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('builds the erofs format: a stage-1 initramfs and a root found by UUID', () => {
    const r = run([], { HULL_GUEST_FORMAT: 'erofs', HULL_GUEST_OUT: path.join(tmp, 'out-erofs') });
    expect(r.status, r.stderr).toBe(0);
    const dir = r.last.split(' ')[3];
    const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.format).toBe('erofs');
    const uuid = /hull\.rootuuid=([0-9a-f-]{36})$/.exec(manifest.kernelCmdline)?.[1];
    expect(uuid).toBeDefined();
    const initrd = path.join(dir, 'initrd.img');
    expect(cpioFile(initrd, 'etc/hull-stage1')).toBe('');
    expect(cpioFile(initrd, `usr/lib/modules/${release}/hull-stage1.list`).trim().split('\n')).toEqual([
      'virtio_ring.ko', 'virtio.ko', 'virtio_mmio.ko', 'virtio_blk.ko', 'libcrc32c.ko', 'erofs.ko',
    ]);
    // erofs superblock at 1024: magic, and the UUID at +48 that stage 1 matches against hull.rootuuid.
    const sb = readFileSync(path.join(dir, 'rootfs.erofs')).subarray(1024, 1024 + 64);
    expect(sb.readUInt32LE(0)).toBe(0xe0f5e1e2);
    expect(sb.subarray(48, 64).toString('hex')).toBe(uuid!.replace(/-/g, ''));
  });

  it('fails with one clear line when a built input is missing', () => {
    const r = run([], { HULL_AGENT_BUNDLE: path.join(tmp, 'nope/agent.mjs') });
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim()).toMatch(/^guest-image: error: agent bundle .* missing: run `npm run build:ts`/);
    const h = run([], { HULL_CONTAINER_INIT_PATH: path.join(tmp, 'nope/helper') });
    expect(h.status).not.toBe(0);
    expect(h.stderr).toContain('make -C native');
  });
});
