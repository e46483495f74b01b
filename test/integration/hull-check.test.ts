// `hull check` and `hull env` on this host, through the real CLI (no VM is booted): one readable line per finding,
// exit 0 when hull can run — no usable KVM is a warning that says why (these machines' /dev/kvm is a nested PVM) —
// and 1 with the reasons when it cannot; env's TOML and JSON with the settings in force and where each came from.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'smol-toml';
import { afterAll, describe, expect, it } from 'vitest';
import { probeKvm } from '../../hypervisor/acceleration.js';
import { hull, repo, tempDir } from '../helpers/hull.js';

const work = tempDir('hull-check-');
const root = path.join(work, 'root');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const LINE = /^(ok|warn|fail) +[a-z][a-z -]*: \S.*$/;
const kvm = probeKvm();
const nestedPvm = existsSync('/sys/module/kvm_pvm');
const manifest = (): { hash: string; kernelRelease: string } => JSON.parse(readFileSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json'), 'utf8'));

function config(name: string, text: string): string {
  const f = path.join(work, name);
  writeFileSync(f, text);
  return f;
}

describe('hull check', () => {
  it('says what this host offers, one `status what: detail` line each, and exits 0: hull runs here', async () => {
    const r = await hull(['check'], { root });
    const lines = r.stdout.trimEnd().split('\n');
    const verdict = lines.pop();
    for (const l of lines) expect(l).toMatch(LINE);
    const what = lines.map((l) => l.replace(/^\S+\s+/, '').split(':')[0]);
    expect(what).toEqual(expect.arrayContaining(['config', 'kvm', 'vhost-vsock', 'tun', 'vhost-net', 'qemu', 'virtiofsd', 'cgroups', 'guest image', 'native addon', 'vsock backend', 'container init']));
    expect(lines.filter((l) => l.startsWith('fail')), r.stdout).toEqual([]);
    expect(r.code).toBe(0);
    expect(verdict).toMatch(/^hull can run containers here/);
    const kvmLine = lines.find((l) => / kvm: /.test(l));
    if (kvm.usable) expect(kvmLine).toMatch(/^ok +kvm: using KVM/);
    else expect(kvmLine).toBe(`warn  kvm: not usable: ${kvm.why}; VMs run under TCG software emulation (slower boots and CPU)`);
    if (nestedPvm) expect(kvmLine).toContain('/dev/kvm is a nested PVM');
    expect(lines.find((l) => / guest image: /.test(l))).toContain(manifest().hash);
    expect(lines.find((l) => / qemu: /.test(l))).toMatch(/^ok +qemu: \d+\.\d+/);
    expect(lines.find((l) => / cgroups: /.test(l))).toMatch(/^ok +cgroups: (v1|hybrid|v2)/);
  });

  it('--format json: canRun and the same findings', async () => {
    const r = await hull(['check', '--format', 'json'], { root });
    const report = JSON.parse(r.stdout) as { canRun: boolean; findings: { status: string; what: string; detail: string }[] };
    expect(report.canRun).toBe(true);
    expect(report.findings.find((f) => f.what === 'kvm')?.status).toBe(kvm.usable ? 'ok' : 'warn');
    expect(r.code).toBe(0);
  });

  it('exits 1 with a fail line naming the problem for a bad config file (and still describes the host)', async () => {
    const f = config('bad.toml', '[vm]\nvcpus = 0\n');
    const r = await hull(['check'], { root, env: { HULL_CONFIG: f } });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`fail  config: ${f}: vm.vcpus: must be a whole number from 1 to 64, got 0\n`);
    expect(r.stdout).toMatch(/\n(ok|warn) +kvm: /);
    expect(r.stdout.trimEnd().split('\n').pop()).toBe('hull cannot run containers here: 1 failure');
  });

  it.runIf(!kvm.usable)('exits 1 when the config file asks for KVM that this host cannot give', async () => {
    const r = await hull(['check'], { root, env: { HULL_CONFIG: config('kvm.toml', '[vm]\naccel = "kvm"\n') } });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`fail  kvm: requested (vm.accel or $HULL_ACCEL = kvm) but not usable: ${kvm.why}\n`);
  });
});

describe('containerd-shim-hull-v2', () => {
  it('refuses a bad config file in one line when containerd starts it, before anything exists', () => {
    const f = config('bad-shim.toml', '[log]\nlevel = "loud"\n');
    const shim = path.join(repo, 'dist', 'containerd-shim-hull-v2.mjs');
    const args = ['-namespace', 'hull-check', '-address', path.join(work, 'containerd.sock'), '-publish-binary', '/bin/true', '-id', 'cfg', 'start'];
    const r = spawnSync(process.execPath, [shim, ...args], { cwd: work, env: { ...process.env, HULL_CONFIG: f }, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`hull shim start: ${f}: log.level: must be one of "trace", "debug", "info", "warn", "error", "fatal", got "loud"\n`);
  });
});

describe('hull env', () => {
  it('prints TOML: settings, where each came from, paths and versions', async () => {
    const r = await hull(['env'], { root });
    expect(r.code, r.stderr).toBe(0);
    const env = parse(r.stdout) as Record<string, Record<string, unknown>>;
    expect(env['vm']).toMatchObject({ vcpus: 1, memory_mib: 512, accel: 'auto', accel_used: kvm.usable ? 'kvm' : 'tcg' });
    expect(env['paths']).toMatchObject({ root, guest_dir: path.join(repo, 'build', 'guest', 'current'), hull: repo });
    expect(env['source']).toMatchObject({ 'vm.vcpus': 'default', 'vm.memory_mib': 'default', 'paths.root': 'flag', 'log.level': 'default' });
    expect(env['versions']).toMatchObject({ guest_image: manifest().hash, guest_kernel: manifest().kernelRelease, node: process.version });
    expect(env['versions']!['qemu']).toMatch(/^\d+\.\d+/);
    expect(env['versions']!['virtiofsd']).toMatch(/^\d+\.\d+/);
    expect(env['host']).toMatchObject({ kvm_usable: kvm.usable, kvm: kvm.why });
  });

  it('--format json, after a config file and an environment variable, says which set what', async () => {
    const f = config('good.toml', '[vm]\nvcpus = 2\nmemory_mib = 700\n[pool]\nsize = 3\n[vmm]\nuid_range = "300000-300099"\n');
    const r = await hull(['env', '--format', 'json'], { root, env: { HULL_CONFIG: f, HULL_MEMORY_MIB: '600' } });
    expect(r.code, r.stderr).toBe(0);
    const env = JSON.parse(r.stdout) as Record<string, Record<string, unknown>>;
    expect(env['config']).toEqual({ file: f, found: true, chosen_by: '$HULL_CONFIG' });
    expect(env['vm']).toMatchObject({ vcpus: 2, memory_mib: 600 });
    expect(env['pool']).toMatchObject({ size: 3, vcpus: 2, memory_mib: 600 });
    expect(env['vmm']).toEqual({ uid_range: '300000-300099' });
    expect(env['source']).toMatchObject({ 'vm.vcpus': 'file', 'vm.memory_mib': 'env', 'pool.size': 'file', 'vmm.uid_range': 'file' });
  });

  it('fails in one line for a bad config file', async () => {
    const f = config('bad-env.toml', '[paths]\nroot = "relative"\n');
    const r = await hull(['env'], { root, env: { HULL_CONFIG: f } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`hull: ${f}: paths.root: must be an absolute path (a string starting with /), got "relative"\n`);
  });
});
