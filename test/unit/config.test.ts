// The config file (shim/config/): a good file read into its settings, every kind of bad file refused in one line naming
// the file, the key and the problem, and the precedence flag > environment variable > file > built-in default at each
// place that reads a setting.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../shim/config/errors.js';
import { CONFIG_PATH_DEFAULT, configPath, hullConfig, readConfig, resetHullConfig } from '../../shim/config/load.js';
import { poolSettings } from '../../shim/config/pool-defaults.js';
import { applyConfig, envFromConfigFile } from '../../shim/config/startup.js';
import { configuredAccel, configuredLogLevel, configuredMaxConcurrentBoots, configuredMaxMemoryMiB, configuredRoot } from '../../shim/config/values.js';
import { guestAssetsDir } from '../../shim/sandbox/guest-assets.js';
import { beyondVm, DEFAULT_MEMORY_MIB, memoryToGrowTo, vmSizeFor, withHeadroom } from '../../shim/sandbox/vm-sizing.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-config-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let seq = 0;
function file(text: string): string {
  const f = path.join(tmp, `c${seq++}.toml`);
  writeFileSync(f, text);
  return f;
}

const GOOD = `# every key
[vm]
vcpus = 2
memory_mib = 768
max_memory_mib = 2048
accel = "tcg"
max_concurrent_boots = 3

[pool]
size = 3
vcpus = 1
memory_mib = 640
nics = 0

[log]
level = "warn"

[paths]
root = "/run/hull-test"
guest_dir = "/opt/hull/guest"

[vmm]
uid_range = "300000-300099"
`;

const ENV_KEYS = ['HULL_CONFIG', 'HULL_VCPUS', 'HULL_MEMORY_MIB', 'HULL_ACCEL', 'HULL_GUEST_DIR', 'HULL_VMM_UID_RANGE', 'HULL_MAX_CONCURRENT_BOOTS', 'HULL_MAX_MEMORY_MIB'];
let saved: Record<string, string | undefined>;
beforeEach(() => {
  saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const k of ENV_KEYS) delete process.env[k];
  resetHullConfig();
});
afterEach(() => {
  for (const k of ENV_KEYS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  resetHullConfig();
});

/** Points $HULL_CONFIG at a file holding `text`. */
function useConfig(text: string): string {
  const f = file(text);
  process.env['HULL_CONFIG'] = f;
  resetHullConfig();
  return f;
}

describe('reading the config file', () => {
  it('reads every key of a good file', () => {
    const f = file(GOOD);
    expect(readConfig(f, 'env')).toEqual({
      file: f,
      found: true,
      chosenBy: 'env',
      values: {
        vm: { vcpus: 2, memory_mib: 768, max_memory_mib: 2048, accel: 'tcg', max_concurrent_boots: 3 },
        pool: { size: 3, vcpus: 1, memory_mib: 640, nics: 0 },
        log: { level: 'warn' },
        paths: { root: '/run/hull-test', guest_dir: '/opt/hull/guest' },
        vmm: { uid_range: '300000-300099' },
      },
    });
  });

  it('takes $HULL_CONFIG (resolved) over /etc/hull/config.toml; an empty file and an empty section are defaults', () => {
    expect(configPath({})).toEqual({ file: CONFIG_PATH_DEFAULT, chosenBy: 'default' });
    expect(configPath({ HULL_CONFIG: '' })).toEqual({ file: CONFIG_PATH_DEFAULT, chosenBy: 'default' });
    expect(configPath({ HULL_CONFIG: 'rel/c.toml' }).file).toBe(path.resolve('rel/c.toml'));
    expect(readConfig(file(''), 'env').values).toEqual({ vm: {}, pool: {}, log: {}, paths: {}, vmm: {} });
    expect(readConfig(file('[vm]\n'), 'env').values.vm).toEqual({});
  });

  it('is absent at the default path: built-in defaults; absent where $HULL_CONFIG points: an error', () => {
    const missing = path.join(tmp, 'nope.toml');
    expect(readConfig(missing, 'default')).toMatchObject({ found: false, values: { vm: {} } });
    expect(() => readConfig(missing, 'env')).toThrow(`${missing}: does not exist (named by $HULL_CONFIG)`);
  });

  const bad: [string, string, string][] = [
    ['TOML syntax', '[vm]\nvcpus = \n', 'not valid TOML at line 2, column 9: invalid value'],
    ['a key twice', '[vm]\nvcpus = 1\nvcpus = 2\n', 'not valid TOML at line 3, column 1'],
    ['an unknown section', '[vms]\nvcpus = 2\n', '[vms]: unknown section; the sections are [vm], [pool], [log], [paths], [vmm]'],
    ['a key outside any section', 'vcpus = 2\n', 'vcpus: unknown top-level key'],
    ['a section that is not a table', 'vm = 2\n', 'vm: must be a section ([vm]), got 2'],
    ['an unknown key', '[vm]\ncpus = 2\n', 'vm.cpus: unknown key; [vm] has vcpus, memory_mib, max_memory_mib, accel, max_concurrent_boots'],
    ['no boot slots', '[vm]\nmax_concurrent_boots = 0\n', 'vm.max_concurrent_boots: must be a whole number from 1 to 1024, got 0'],
    ['a string for a number', '[vm]\nmemory_mib = "lots"\n', 'vm.memory_mib: must be a whole number from 128 to 1048576, got "lots"'],
    ['a fraction', '[vm]\nvcpus = 1.5\n', 'vm.vcpus: must be a whole number from 1 to 64, got 1.5'],
    ['too small', '[vm]\nmemory_mib = 64\n', 'vm.memory_mib: must be a whole number from 128 to 1048576, got 64'],
    ['too big', '[pool]\nnics = 9\n', 'pool.nics: must be a whole number from 0 to 4, got 9'],
    ['negative', '[pool]\nsize = -1\n', 'pool.size: must be a whole number from 0 to 1024, got -1'],
    ['an unknown choice', '[vm]\naccel = "xen"\n', 'vm.accel: must be one of "auto", "kvm", "tcg", got "xen"'],
    ['a number for a choice', '[log]\nlevel = 3\n', 'log.level: must be one of "trace", "debug", "info", "warn", "error", "fatal", got 3'],
    ['a relative path', '[paths]\nroot = "run/hull"\n', 'paths.root: must be an absolute path (a string starting with /), got "run/hull"'],
    ['an array', '[paths]\nguest_dir = ["/a"]\n', 'paths.guest_dir: must be an absolute path (a string starting with /), got an array'],
    ['a malformed uid range', '[vmm]\nuid_range = "lots"\n', 'vmm.uid_range is "lots": expected FIRST-LAST'],
    ['a uid range over the host users', '[vmm]\nuid_range = "1000-2000"\n', 'vmm.uid_range is 1000-2000: VMM uids must lie within 65536..'],
    ['a number for the uid range', '[vmm]\nuid_range = 5\n', 'vmm.uid_range: must be a string "FIRST-LAST", got 5'],
  ];
  for (const [what, text, problem] of bad) {
    it(`refuses ${what} in one line naming the file and the key`, () => {
      const f = file(text);
      let err: unknown;
      try {
        readConfig(f, 'env');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      const message = (err as Error).message;
      expect(message.startsWith(`${f}: ${problem}`), message).toBe(true);
      expect(message).not.toContain('\n');
      expect((err as ConfigError).kind).toBe('invalid-argument');
    });
  }

  it('refuses a file it cannot read', () => {
    const dir = path.join(tmp, 'a-dir.toml');
    mkdirSync(dir);
    expect(() => readConfig(dir, 'default')).toThrow(`${dir}: cannot be read (EISDIR)`);
  });

  it('keeps the error: every later lookup throws the same one line', () => {
    useConfig('[vm]\nvcpus = 0\n');
    expect(() => hullConfig()).toThrow(/vm\.vcpus: must be a whole number from 1 to 64, got 0/);
    expect(() => vmSizeFor({ ociVersion: '1.0.2', root: { path: 'r' } })).toThrow(/vm\.vcpus/);
  });
});

describe('precedence: flag > environment variable > config file > built-in default', () => {
  const unlimited = { ociVersion: '1.0.2', root: { path: 'r' } };

  it('VM size: [vm] replaces the defaults, a spec limit still grows the VM, HULL_VCPUS / HULL_MEMORY_MIB win', () => {
    expect(vmSizeFor(unlimited)).toEqual({ vcpus: 1, memoryMiB: DEFAULT_MEMORY_MIB });
    useConfig('[vm]\nvcpus = 2\nmemory_mib = 768\n');
    expect(vmSizeFor(unlimited)).toEqual({ vcpus: 2, memoryMiB: 768 });
    const limited = { ...unlimited, linux: { resources: { memory: { limit: 1024 * 2 ** 20 }, cpu: { quota: 300000, period: 100000 } } } };
    expect(vmSizeFor(limited)).toEqual({ vcpus: 3, memoryMiB: 1024 + 256 });
    process.env['HULL_VCPUS'] = '4';
    process.env['HULL_MEMORY_MIB'] = '600';
    expect(vmSizeFor(unlimited)).toEqual({ vcpus: 4, memoryMiB: 600 });
  });

  it('room to grow: HULL_MAX_MEMORY_MIB > vm.max_memory_mib > none; a VM gets it only when it is more than its memory', () => {
    expect(configuredMaxMemoryMiB()).toEqual({ value: 0, source: 'default' });
    useConfig('[vm]\nmax_memory_mib = 1024\n');
    expect(configuredMaxMemoryMiB()).toEqual({ value: 1024, source: 'file' });
    expect(vmSizeFor(unlimited)).toEqual({ vcpus: 1, memoryMiB: DEFAULT_MEMORY_MIB }); // the CLI's: no room
    expect(withHeadroom(vmSizeFor(unlimited))).toEqual({ vcpus: 1, memoryMiB: DEFAULT_MEMORY_MIB, maxMemoryMiB: 1024 });
    // A spec limit that already needs more than the most: the VM is that big, with no room beyond.
    const big = { ...unlimited, linux: { resources: { memory: { limit: 1024 * 2 ** 20 } } } };
    expect(withHeadroom(vmSizeFor(big))).toEqual({ vcpus: 1, memoryMiB: 1024 + 256 });
    process.env['HULL_MAX_MEMORY_MIB'] = '4096';
    expect(configuredMaxMemoryMiB()).toEqual({ value: 4096, source: 'env' });
    expect(withHeadroom(vmSizeFor(big))).toEqual({ vcpus: 1, memoryMiB: 1024 + 256, maxMemoryMiB: 4096 });
    process.env['HULL_MAX_MEMORY_MIB'] = '64';
    expect(() => configuredMaxMemoryMiB()).toThrow('HULL_MAX_MEMORY_MIB="64" must be a whole number from 128 to 1048576');
  });

  it('growing a running VM: how far for a container limit, and which limits it cannot honour', () => {
    const fixed = { vcpus: 1, memoryMiB: 512 };
    const growable = { ...fixed, maxMemoryMiB: 2048 };
    expect(memoryToGrowTo(undefined, growable)).toBeUndefined();
    expect(memoryToGrowTo(200 * 2 ** 20, growable)).toBeUndefined(); // 200 + 256 fit
    expect(memoryToGrowTo(800 * 2 ** 20, growable)).toBe(800 + 256);
    expect(memoryToGrowTo(1900 * 2 ** 20, growable)).toBe(2048); // capped at the most
    expect(memoryToGrowTo(800 * 2 ** 20, fixed)).toBeUndefined();
    expect(beyondVm({ memory: { limit: 2048 * 2 ** 20 } }, growable)).toBeUndefined();
    expect(beyondVm({ memory: { limit: 2049 * 2 ** 20 } }, growable)).toBe('memory limit 2049 MiB is more than the 2048 MiB the pod VM can grow to (vm.max_memory_mib)');
    expect(beyondVm({ memory: { limit: 513 * 2 ** 20 } }, fixed)).toMatch(/^memory limit 513 MiB is more than the pod VM's 512 MiB, and it was booted without room to grow/);
  });

  it('accelerator: HULL_ACCEL > vm.accel > auto', () => {
    expect(configuredAccel()).toEqual({ value: 'auto', source: 'default' });
    useConfig('[vm]\naccel = "tcg"\n');
    expect(configuredAccel()).toEqual({ value: 'tcg', source: 'file' });
    process.env['HULL_ACCEL'] = 'auto';
    expect(configuredAccel()).toEqual({ value: 'auto', source: 'env' });
    process.env['HULL_ACCEL'] = 'xen';
    expect(() => configuredAccel()).toThrow(/HULL_ACCEL="xen" is not an accelerator hull knows/);
  });

  it('boot slots: HULL_MAX_CONCURRENT_BOOTS > vm.max_concurrent_boots > the host\'s CPU count', () => {
    expect(configuredMaxConcurrentBoots()).toEqual({ value: os.availableParallelism(), source: 'default' });
    useConfig('[vm]\nmax_concurrent_boots = 5\n');
    expect(configuredMaxConcurrentBoots()).toEqual({ value: 5, source: 'file' });
    process.env['HULL_MAX_CONCURRENT_BOOTS'] = '20';
    expect(configuredMaxConcurrentBoots()).toEqual({ value: 20, source: 'env' });
    process.env['HULL_MAX_CONCURRENT_BOOTS'] = '0';
    expect(() => configuredMaxConcurrentBoots()).toThrow('HULL_MAX_CONCURRENT_BOOTS="0" must be a whole number from 1 to 1024');
  });

  it('root and log level: flag > file > default', () => {
    expect(configuredRoot()).toEqual({ value: '/run/hull', source: 'default' });
    expect(configuredLogLevel()).toEqual({ value: 'info', source: 'default' });
    useConfig('[paths]\nroot = "/run/hull-x"\n[log]\nlevel = "error"\n');
    expect(configuredRoot()).toEqual({ value: '/run/hull-x', source: 'file' });
    expect(configuredRoot('/tmp/r')).toEqual({ value: '/tmp/r', source: 'flag' });
    expect(configuredLogLevel()).toEqual({ value: 'error', source: 'file' });
    expect(configuredLogLevel(true)).toEqual({ value: 'debug', source: 'flag' });
  });

  it('guest image: HULL_GUEST_DIR > paths.guest_dir > the build output', () => {
    expect(guestAssetsDir()).toMatch(/build\/guest\/current$/);
    useConfig('[paths]\nguest_dir = "/opt/guest"\n');
    expect(guestAssetsDir()).toBe('/opt/guest');
    process.env['HULL_GUEST_DIR'] = '/elsewhere';
    expect(guestAssetsDir()).toBe('/elsewhere');
  });

  it('pool serve: flags > HULL_VCPUS / HULL_MEMORY_MIB > [pool] > what an unlimited container gets', () => {
    expect(poolSettings()).toEqual({
      size: { value: undefined, source: 'default' },
      vcpus: { value: 1, source: 'default' },
      memoryMiB: { value: DEFAULT_MEMORY_MIB, source: 'default' },
      nics: { value: 1, source: 'default' },
    });
    useConfig('[vm]\nmemory_mib = 700\n[pool]\nsize = 2\nvcpus = 2\nnics = 0\n');
    expect(poolSettings()).toEqual({
      size: { value: 2, source: 'file' },
      vcpus: { value: 2, source: 'file' },
      memoryMiB: { value: 700, source: 'default' }, // vm.memory_mib: what an unlimited container gets
      nics: { value: 0, source: 'file' },
    });
    process.env['HULL_VCPUS'] = '3';
    expect(poolSettings().vcpus).toEqual({ value: 3, source: 'env' });
    expect(poolSettings({ size: 5, vcpus: 1, memoryMiB: 256, nics: 1 })).toEqual({
      size: { value: 5, source: 'flag' },
      vcpus: { value: 1, source: 'flag' },
      memoryMiB: { value: 256, source: 'flag' },
      nics: { value: 1, source: 'flag' },
    });
  });

  it('VMM uid range: the file fills $HULL_VMM_UID_RANGE for hypervisor/ unless the environment set it', () => {
    useConfig('[vmm]\nuid_range = "300000-300099"\n');
    applyConfig();
    expect(process.env['HULL_VMM_UID_RANGE']).toBe('300000-300099');
    expect(envFromConfigFile('HULL_VMM_UID_RANGE')).toBe(true);
    useConfig('[vmm]\nuid_range = "400000-400009"\n');
    applyConfig(); // a value the file put there is the file's to change
    expect(process.env['HULL_VMM_UID_RANGE']).toBe('400000-400009');
    process.env['HULL_VMM_UID_RANGE'] = '500000-500009'; // set by whoever started hull: it wins
    applyConfig();
    expect(process.env['HULL_VMM_UID_RANGE']).toBe('500000-500009');
    expect(envFromConfigFile('HULL_VMM_UID_RANGE')).toBe(false);
  });
});
