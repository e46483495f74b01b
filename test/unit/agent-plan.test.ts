import { describe, expect, it } from 'vitest';
import { cpuWeightFor, limitsFor, swapMaxFor } from '../../agent/cgroups.js';
import { SpecError } from '../../agent/errors.js';
import { MS, parseMountOptions } from '../../agent/mount-options.js';
import { decodePlanStrings, encodePlan } from '../../agent/plan-encode.js';
import { rlimitValue } from '../../agent/rlimits.js';
import { computeCreatePlan, computeExecPlan, DEFAULT_MOUNTS, type Plan } from '../../agent/spec-plan.js';
import { warmUpContainerPaths } from '../../agent/warm-up.js';
import { Code } from '../../protocol/ttrpc/codes.js';

const ROOTFS = '/run/hull/shared/c1/rootfs';

function baseSpec(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ociVersion: '1.0.2',
    process: { args: ['sh'], env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 } },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }] },
    ...over,
  };
}

const plan = (spec: unknown, extra: Partial<Parameters<typeof computeCreatePlan>[0]> = {}) =>
  computeCreatePlan({ spec, rootfsPath: ROOTFS, ...extra });

function specError(fn: () => unknown): SpecError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SpecError);
    expect((err as SpecError).code).toBe(Code.InvalidArgument);
    return err as SpecError;
  }
  throw new Error('expected a SpecError');
}

describe('mount options', () => {
  it('maps flags, clears, propagation and data', () => {
    const p = parseMountOptions(['nosuid', 'noexec', 'nodev', 'ro', 'relatime', 'mode=755', 'size=65536k']);
    expect(p.flags).toBe(MS.NOSUID | MS.NOEXEC | MS.NODEV | MS.RDONLY | MS.RELATIME);
    expect(p.data).toBe('mode=755,size=65536k');
    expect(parseMountOptions(['ro', 'rw']).flags).toBe(0);
    expect(parseMountOptions(['rbind', 'rprivate'])).toMatchObject({ flags: MS.BIND | MS.REC, propagation: [MS.PRIVATE | MS.REC] });
    expect(parseMountOptions(['bind', 'strictatime', 'nosuid', 'suid']).flags).toBe(MS.BIND | MS.STRICTATIME);
    expect(parseMountOptions(['defaults']).flags).toBe(0);
    expect(parseMountOptions(['tmpcopyup']).ignored).toEqual(['tmpcopyup']);
  });
});

describe('create plan', () => {
  it('computes a full plan from a typical spec', () => {
    const { plan: p, warnings } = plan(
      baseSpec({
        hostname: 'box',
        root: { path: 'rootfs', readonly: true },
        process: {
          args: ['/bin/app', '--flag'],
          env: ['PATH=/usr/bin', 'A=b=c'],
          cwd: '/work',
          user: { uid: 1000, gid: 1001, additionalGids: [10, 20] },
          rlimits: [
            { type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 },
            { type: 'RLIMIT_CORE', soft: 18446744073709551615, hard: 18446744073709551615 },
          ],
        },
      }),
      { cgroupPath: '/sys/fs/cgroup/hull/c1' },
    );
    expect(warnings).toEqual([]);
    expect(p).toMatchObject({
      mode: 'create',
      namespaces: ['mount', 'pid', 'uts', 'ipc'],
      rootfs: ROOTFS,
      readonlyRoot: true,
      hostname: 'box',
      cgroup: '/sys/fs/cgroup/hull/c1',
      uid: 1000,
      gid: 1001,
      groups: [10, 20],
      cwd: '/work',
      env: ['PATH=/usr/bin', 'A=b=c'],
      args: ['/bin/app', '--flag'],
      rlimits: [
        { resource: 7, soft: '1024', hard: '4096' },
        { resource: 4, soft: '-1', hard: '-1' },
      ],
    });
    expect(p.mounts.map((m) => m.destination)).toEqual(['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys']);
    expect(p.mounts.find((m) => m.destination === '/sys')!.flags & MS.RDONLY).toBe(MS.RDONLY);
  });

  it('lets spec mounts replace defaults and keeps their order', () => {
    const { plan: p } = plan(
      baseSpec({
        mounts: [
          { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid'] },
          { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=1m'] },
          { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nodev'] },
        ],
      }),
    );
    const dests = p.mounts.map((m) => m.destination);
    // /dev/pts etc. follow the spec's own /dev so it does not hide them; /sys (no spec ancestor) comes first.
    expect(dests).toEqual(['/sys', '/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/tmp']);
    expect(p.mounts[2]).toEqual({ type: 'tmpfs', source: 'tmpfs', destination: '/dev', flags: MS.NOSUID | MS.STRICTATIME, data: 'mode=755,size=1m' });
    expect(p.mounts.filter((m) => m.destination === '/proc')).toHaveLength(1);
    expect(DEFAULT_MOUNTS).toHaveLength(6); // defaults are not mutated
  });

  it('keeps propagation options apart from the mount flags, in order; linux.rootfsPropagation as runc maps it', () => {
    const { plan: p } = plan(
      baseSpec({
        linux: { namespaces: [{ type: 'mount' }], rootfsPropagation: 'shared' },
        mounts: [
          { destination: '/data', type: 'bind', source: `${ROOTFS}/data`, options: ['bind', 'rshared'] },
          { destination: '/t', type: 'tmpfs', source: 'tmpfs', options: ['rprivate', 'nosuid', 'slave', 'size=1m'] },
        ],
      }),
    );
    const data = p.mounts.find((m) => m.destination === '/data')!;
    // "rshared" must not make a plain bind recursive.
    expect(data).toEqual({ type: 'bind', source: `${ROOTFS}/data`, destination: '/data', flags: MS.BIND, data: '', propagation: [MS.SHARED | MS.REC] });
    const t = p.mounts.find((m) => m.destination === '/t')!;
    expect(t).toEqual({ type: 'tmpfs', source: 'tmpfs', destination: '/t', flags: MS.NOSUID, data: 'size=1m', propagation: [MS.PRIVATE | MS.REC, MS.SLAVE] });
    expect(p.rootfsPropagation).toBe(MS.SHARED);
    const strings = decodePlanStrings(encodePlan(p));
    expect(strings.slice(strings.indexOf('rootfs_propagation'), strings.indexOf('rootfs_propagation') + 2)).toEqual(['rootfs_propagation', String(MS.SHARED)]);
    const at = strings.indexOf('/t');
    expect(strings.slice(at - 3, at + 7)).toEqual([
      'mount', 'tmpfs', 'tmpfs', '/t', String(MS.NOSUID), 'size=1m',
      'mount_propagation', String(MS.PRIVATE | MS.REC), 'mount_propagation', String(MS.SLAVE),
    ]);
    for (const [name, flags] of Object.entries({ rslave: MS.SLAVE | MS.REC, private: MS.PRIVATE, runbindable: MS.UNBINDABLE | MS.REC })) {
      expect(plan(baseSpec({ linux: { namespaces: [{ type: 'mount' }], rootfsPropagation: name } })).plan.rootfsPropagation).toBe(flags);
    }
    expect(plan(baseSpec()).plan.rootfsPropagation).toBeUndefined();
    expect(decodePlanStrings(encodePlan(plan(baseSpec()).plan))).not.toContain('rootfs_propagation');
    expect(specError(() => plan(baseSpec({ linux: { rootfsPropagation: 'rshare' } }))).message).toBe(
      'linux.rootfsPropagation "rshare" must be one of private, rprivate, shared, rshared, slave, rslave, unbindable, runbindable',
    );
    expect(specError(() => plan(baseSpec({ linux: { rootfsPropagation: 1 } }))).message).toBe('linux.rootfsPropagation must be a string');
    const nine = { destination: '/t', type: 'tmpfs', source: 'tmpfs', options: Array(9).fill('private') };
    expect(specError(() => plan(baseSpec({ mounts: [nine] }))).message).toBe('mounts[0].options has 9 propagation options; at most 8 are supported');
  });

  it('a user namespace: created first, with linux.uidMappings and gidMappings as uid_map and gid_map keys', () => {
    const uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    const gidMappings = [{ containerID: 0, hostID: 100000, size: 1000 }, { containerID: 1000, hostID: 300000, size: 10 }];
    const userns = (over: Record<string, unknown> = {}) =>
      plan(baseSpec({ linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'user' }], uidMappings, gidMappings, ...over } }));
    const { plan: p } = userns();
    expect(p.namespaces).toEqual(['user', 'mount', 'pid']);
    expect(p.uidMappings).toEqual(uidMappings);
    expect(p.gidMappings).toEqual(gidMappings);
    const strings = decodePlanStrings(encodePlan(p));
    expect(strings.slice(strings.indexOf('namespaces'), strings.indexOf('namespaces') + 2)).toEqual(['namespaces', 'user,mount,pid']);
    const at = strings.indexOf('uid_map');
    expect(strings.slice(at, at + 12)).toEqual(['uid_map', '0', '100000', '65536', 'gid_map', '0', '100000', '1000', 'gid_map', '1000', '300000', '10']);
    expect(decodePlanStrings(encodePlan(plan(baseSpec()).plan))).not.toContain('uid_map');

    expect(specError(() => userns({ gidMappings: [] })).message).toBe('linux.gidMappings is required with a "user" namespace');
    expect(specError(() => plan(baseSpec({ linux: { uidMappings, gidMappings } }))).message).toBe(
      'linux.uidMappings and linux.gidMappings need a "user" namespace in linux.namespaces',
    );
    expect(specError(() => userns({ uidMappings: [{ containerID: 0, hostID: 1, size: 0 }] })).message).toBe('linux.uidMappings[0].size must be an integer 1..4294967295');
    expect(specError(() => userns({ uidMappings: [{ containerID: 0, hostID: -1, size: 1 }] })).message).toBe('linux.uidMappings[0].hostID must be an integer 0..4294967295');
    expect(specError(() => userns({ gidMappings: [{ containerID: 4294967295, hostID: 0, size: 2 }] })).message).toBe('linux.gidMappings[0]: the range ends past 4294967295');
    expect(specError(() => userns({ uidMappings: Array(341).fill(uidMappings[0]) })).message).toBe('linux.uidMappings has 341 entries; at most 340 are supported');
    const long = Array.from({ length: 200 }, (_, i) => ({ containerID: 4e9 + i, hostID: 4e9 + i, size: 1 }));
    expect(specError(() => userns({ gidMappings: long })).message).toBe('linux.gidMappings: 200 mappings take 4800 bytes in /proc/<pid>/gid_map; the kernel takes at most 4095');
    expect(specError(() => userns({ devices: [{ path: '/dev/x', type: 'c', major: 1, minor: 3 }] })).message).toBe(
      'linux.devices with a "user" namespace is not supported (a user namespace cannot make device nodes)',
    );
  });

  it('allows bind sources inside the container share and harmless devices, after resolving symlinks', () => {
    const resolvePath = (p: string) => (p.endsWith('/link') ? `${ROOTFS}/data` : p);
    const { plan: p, warnings } = plan(
      baseSpec({
        mounts: [
          { destination: '/data', type: 'bind', source: `${ROOTFS}/link`, options: ['rbind', 'ro'] },
          { destination: '/etc/x', type: 'none', source: 'rootfs/etc/y', options: ['bind'] },
          { destination: '/dev/null2', source: '/dev/null', options: ['bind'] },
          { destination: '/etc/resolv.conf', type: 'bind', source: '/var/lib/containers/x/resolv.conf', options: ['bind'] },
        ],
      }),
      { resolvePath },
    );
    const binds = p.mounts.filter((m) => m.type === 'bind');
    expect(binds).toEqual([
      { type: 'bind', source: `${ROOTFS}/data`, destination: '/data', flags: MS.BIND | MS.REC | MS.RDONLY, data: '' },
      { type: 'bind', source: `${ROOTFS}/etc/y`, destination: '/etc/x', flags: MS.BIND, data: '' },
      { type: 'bind', source: '/dev/null', destination: '/dev/null2', flags: MS.BIND, data: '' },
    ]);
    expect(warnings).toEqual([expect.stringContaining('/var/lib/containers/x/resolv.conf is a host path')]);
  });

  it('refuses bind sources that resolve outside the container', () => {
    const e = specError(() =>
      plan(baseSpec({ mounts: [{ destination: '/x', type: 'bind', source: `${ROOTFS}/evil`, options: ['bind'] }] }), {
        resolvePath: () => '/hull/agent.mjs',
      }),
    );
    expect(e.message).toContain('outside the container');
    specError(() => plan(baseSpec({ mounts: [{ destination: '/x', type: 'bind', source: `${ROOTFS}/gone`, options: ['bind'] }] }), {
      resolvePath: () => {
        throw new Error('ENOENT');
      },
    }));
    specError(() => plan(baseSpec({ mounts: [{ destination: '/x', type: 'bind', options: ['bind'] }] })));
  });

  it('refuses unsafe or malformed mounts', () => {
    expect(specError(() => plan(baseSpec({ mounts: [{ destination: '/mnt', type: 'ext4', source: '/dev/vda' }] }))).message).toContain('"ext4"');
    specError(() => plan(baseSpec({ mounts: [{ destination: 'relative', type: 'tmpfs' }] })));
    specError(() => plan(baseSpec({ mounts: [{ destination: '/a/../b', type: 'tmpfs' }] })));
    specError(() => plan(baseSpec({ mounts: [{ destination: '/a', type: 'tmpfs', options: 'ro' }] })));
  });

  it('turns a cgroup v1 mount into cgroup2 with a warning', () => {
    const { plan: p, warnings } = plan(baseSpec({ mounts: [{ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro'] }] }));
    expect(p.mounts.find((m) => m.destination === '/sys/fs/cgroup')).toMatchObject({ type: 'cgroup2', flags: MS.RDONLY });
    expect(warnings[0]).toContain('cgroup2');
  });

  it('handles namespaces: network ignored, user without mappings refused, mount always, paths refused unless they name a container', () => {
    const { plan: p, warnings } = plan(baseSpec({ linux: { namespaces: [{ type: 'network' }, { type: 'pid' }, { type: 'cgroup' }] } }));
    expect(p.namespaces).toEqual(['mount', 'pid', 'cgroup']);
    expect(warnings).toEqual([expect.stringContaining('network namespace ignored'), expect.stringContaining('mount namespace added')]);
    expect(specError(() => plan(baseSpec({ linux: { namespaces: [{ type: 'user' }] } }))).message).toBe('linux.uidMappings is required with a "user" namespace');
    // Without a lookup (the default) no path names a container: the agent's pid 1 is refused like any other.
    expect(specError(() => plan(baseSpec({ linux: { namespaces: [{ type: 'ipc', path: '/proc/1/ns/ipc' }] } }))).message).toBe(
      'linux.namespaces[0]: /proc/1/ns/ipc: pid 1 is not the init of a running container in this sandbox',
    );
    specError(() => plan(baseSpec({ linux: { namespaces: [{ type: 'pid' }, { type: 'pid' }] } })));
    specError(() => plan(baseSpec({ linux: { namespaces: [{ type: 'bogus' }] } })));
    // A network namespace path (a pod's netns) is ignored like the network namespace itself.
    expect(plan(baseSpec({ linux: { namespaces: [{ type: 'network', path: '/var/run/netns/x' }, { type: 'mount' }] } })).plan.namespaces).toEqual(['mount']);
  });

  it('needs a UTS namespace for a hostname', () => {
    expect(specError(() => plan(baseSpec({ hostname: 'h', linux: { namespaces: [{ type: 'mount' }] } }))).message).toContain('UTS');
    expect(plan(baseSpec({ hostname: '', linux: { namespaces: [{ type: 'mount' }] } })).plan.hostname).toBeUndefined();
    // A joined UTS namespace counts, as in runc: the hostname is set in the shared namespace.
    const joined = plan(baseSpec({ hostname: 'h', linux: { namespaces: [{ type: 'mount' }, { type: 'uts', path: '/proc/42/ns/uts' }] } }), {
      containerNamespace: () => 7,
    });
    expect(joined.plan.hostname).toBe('h');
  });

  it("gives a container in the host's UTS namespace the node's hostname, in a UTS namespace of its own", () => {
    const hostUts = baseSpec({ linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] } });
    const p = plan(hostUts, { hostHostname: 'node-7' }).plan;
    expect([p.namespaces, p.hostname]).toEqual([['mount', 'pid', 'uts'], 'node-7']);
    // Without the host's name (an older host) the guest's stays; a private or joined UTS namespace keeps its own.
    expect(plan(hostUts).plan.hostname).toBeUndefined();
    expect(plan(baseSpec({ hostname: 'own' }), { hostHostname: 'node-7' }).plan.hostname).toBe('own');
    expect(plan(baseSpec(), { hostHostname: 'node-7' }).plan.hostname).toBeUndefined();
    const joined = plan(baseSpec({ linux: { namespaces: [{ type: 'mount' }, { type: 'uts', path: '/proc/42/ns/uts' }] } }), {
      containerNamespace: () => 7,
      hostHostname: 'node-7',
    }).plan;
    expect([joined.namespaces, joined.hostname]).toEqual([['mount'], undefined]);
    expect(specError(() => plan(hostUts, { hostHostname: 'x'.repeat(65) })).message).toContain("the host's hostname");
  });

  it('carries process.oomScoreAdj (create and exec) and refuses values outside -1000..1000', () => {
    const withAdj = (oomScoreAdj: unknown) => baseSpec({ process: { args: ['sh'], oomScoreAdj } });
    expect(plan(withAdj(-999)).plan.oomScoreAdj).toBe(-999);
    expect(plan(baseSpec()).plan.oomScoreAdj).toBeUndefined();
    expect(computeExecPlan({ process: { args: ['sh'], oomScoreAdj: 1000 }, joinPid: 9 }).plan.oomScoreAdj).toBe(1000);
    for (const bad of [1001, -1001, 1.5, '7']) expect(specError(() => plan(withAdj(bad))).message).toBe('process.oomScoreAdj must be an integer -1000..1000');
  });

  describe('linux.resources.devices (runc\'s device cgroup emulator)', () => {
    const CG = { cgroupPath: '/sys/fs/cgroup/hull/c1' };
    const filter = (rules: unknown, devices?: unknown[]) =>
      plan(baseSpec({ linux: { namespaces: [{ type: 'mount' }], resources: { devices: rules }, ...(devices ? { devices } : {}) } }), CG).plan.deviceCgroup;
    // runc's AllowedDevices, in the plan's order (major, minor, type).
    const DEFAULTS = [
      { type: 'b', major: -1, minor: -1, access: 'm' },
      { type: 'c', major: -1, minor: -1, access: 'm' },
      { type: 'c', major: 1, minor: 3, access: 'rwm' },
      { type: 'c', major: 1, minor: 5, access: 'rwm' },
      { type: 'c', major: 1, minor: 7, access: 'rwm' },
      { type: 'c', major: 1, minor: 8, access: 'rwm' },
      { type: 'c', major: 1, minor: 9, access: 'rwm' },
      { type: 'c', major: 5, minor: 0, access: 'rwm' },
      { type: 'c', major: 5, minor: 2, access: 'rwm' },
      { type: 'c', major: 10, minor: 200, access: 'rwm' },
      { type: 'c', major: 136, minor: -1, access: 'rwm' },
    ];

    it('no rules: deny all but runc\'s defaults (as runc does for every container)', () => {
      expect(filter(undefined)).toEqual({ defaultAllow: false, rules: DEFAULTS });
      expect(filter([])).toEqual({ defaultAllow: false, rules: DEFAULTS });
    });

    it("CRI's deny-all then allows: the allows are merged with the defaults; a default whose path linux.devices lists is left out", () => {
      const rules = [
        { allow: false, access: 'rwm' },
        { allow: true, type: 'c', major: 10, minor: 229, access: 'rw' },
        { allow: true, type: 'c', major: 10, minor: 229, access: 'mw' },
        { allow: true, type: 'b', major: 8, access: 'r' },
      ];
      const f = filter(rules, [{ path: '/dev/null', type: 'c', major: 1, minor: 3 }])!;
      expect(f.defaultAllow).toBe(false);
      expect(f.rules).toContainEqual({ type: 'c', major: 10, minor: 229, access: 'rwm' });
      expect(f.rules).toContainEqual({ type: 'b', major: 8, minor: -1, access: 'r' });
      expect(f.rules).not.toContainEqual({ type: 'c', major: 1, minor: 3, access: 'rwm' });
      expect(f.rules).toHaveLength(DEFAULTS.length - 1 + 2);
    });

    it('a deny after an allow takes access away (last rule wins); an "a" rule resets whatever came before', () => {
      const f = filter([{ allow: true, type: 'c', major: 4, minor: 1, access: 'rwm' }, { allow: false, type: 'c', major: 4, minor: 1, access: 'w' }])!;
      expect(f.rules).toContainEqual({ type: 'c', major: 4, minor: 1, access: 'rm' });
      const g = filter([{ allow: true, type: 'c', major: 4, minor: 1, access: 'r' }, { allow: false, type: 'c', major: 4, minor: 1, access: 'r' }])!;
      expect(g.rules.some((r) => r.major === 4)).toBe(false);
      // Allow all (docker --privileged): only denials are exceptions; runc's defaults then take nothing away.
      expect(filter([{ allow: false, type: 'c', major: 4, minor: 1, access: 'rwm' }, { allow: true, access: 'rwm' }])).toEqual({ defaultAllow: true, rules: [] });
      expect(filter([{ allow: true, type: 'a', major: 9, access: 'r' }, { allow: false, type: 'b', major: 8, minor: 0, access: 'w' }])).toEqual({
        defaultAllow: true,
        rules: [{ type: 'b', major: 8, minor: 0, access: 'w' }],
      });
    });

    it('refuses to punch a hole in a wildcard rule, and bad fields, in one line naming the field', () => {
      expect(specError(() => filter([{ allow: true, type: 'c', major: 4, access: 'rw' }, { allow: false, type: 'c', major: 4, minor: 1, access: 'r' }])).message).toBe(
        'linux.resources.devices[1] (c 4:1 r) cannot change the access of part of what the earlier rule c 4:* rw covers (runc\'s device cgroup refuses it too)',
      );
      // The same in allow-all mode, where runc's default allow rule would open part of a wildcard denial.
      expect(specError(() => filter([{ allow: true, access: 'rwm' }, { allow: false, type: 'c', major: 1, access: 'rwm' }])).message).toBe(
        'the default device rule for /dev/null (c 1:3 rwm) cannot change the access of part of what the earlier rule c 1:* rwm covers (runc\'s device cgroup refuses it too)',
      );
      const bad = (r: unknown) => specError(() => filter([r])).message;
      expect(bad({ type: 'c', access: 'r' })).toBe('linux.resources.devices[0].allow must be true or false');
      expect(bad({ allow: true, type: 'u', access: 'r' })).toBe('linux.resources.devices[0].type "u" must be a, c or b');
      expect(bad({ allow: true, type: 'c', major: -2, access: 'r' })).toBe('linux.resources.devices[0].major must be an integer 0..4294967295 (or -1 or absent: any)');
      expect(bad({ allow: true, type: 'c', minor: 2 ** 32, access: 'r' })).toContain('linux.resources.devices[0].minor must be');
      expect(bad({ allow: true, type: 'c' })).toBe('linux.resources.devices[0].access "" must be letters of "rwm"');
      expect(bad({ allow: true, type: 'c', access: 'rx' })).toBe('linux.resources.devices[0].access "rx" must be letters of "rwm"');
      expect(specError(() => filter({})).message).toBe('linux.resources.devices must be an array');
    });

    it('is encoded as devcgroup and devcgroup_rule keys (wildcards as *); an exec plan has none', () => {
      const p = plan(baseSpec({ linux: { namespaces: [{ type: 'mount' }], resources: { devices: [{ allow: true, type: 'c', major: 10, minor: 229, access: 'rw' }] } } }), CG).plan;
      const strings = decodePlanStrings(encodePlan(p));
      const at = strings.indexOf('devcgroup');
      expect(strings.slice(at, at + 12)).toEqual(['devcgroup', 'deny', 'devcgroup_rule', 'b', '*', '*', 'm', 'devcgroup_rule', 'c', '*', '*', 'm']);
      expect(strings).toContain('cgroup');
      const rule = strings.findIndex((s, i) => s === 'devcgroup_rule' && strings[i + 2] === '10' && strings[i + 3] === '229');
      expect(strings.slice(rule, rule + 5)).toEqual(['devcgroup_rule', 'c', '10', '229', 'rw']);
      expect(decodePlanStrings(encodePlan(computeExecPlan({ process: { args: ['sh'] }, joinPid: 9, cgroupPath: '/x' }).plan))).not.toContain('devcgroup');
    });
  });

  it('turns linux.devices into device nodes (runc defaults: mode 0666, owner 0:0); without a cgroup the device rules are not enforced', () => {
    const devices = [
      { path: '/dev/mydev', type: 'c', major: 1, minor: 3, fileMode: 0o20640, uid: 1000, gid: 1001 },
      { path: '/dev/sub/../blk', type: 'b', major: 7, minor: 0 },
      { path: '/dev/fifo', type: 'p' },
      { path: '/dev/unbuf', type: 'u', major: 4095, minor: 0xfffff, fileMode: 0o600 },
    ];
    const resources = { devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' }] };
    const spec = baseSpec({ linux: { namespaces: [{ type: 'mount' }], devices: devices.slice(0, 1).concat(devices.slice(2)), resources } });
    const { plan: p, warnings } = plan(spec);
    expect(p.devices).toEqual([
      { path: '/dev/mydev', type: 'c', major: 1, minor: 3, mode: 0o640, uid: 1000, gid: 1001 },
      { path: '/dev/fifo', type: 'p', major: 0, minor: 0, mode: 0o666, uid: 0, gid: 0 },
      { path: '/dev/unbuf', type: 'u', major: 4095, minor: 0xfffff, mode: 0o600, uid: 0, gid: 0 },
    ]);
    expect(warnings).toContain('linux.resources.devices (2 rules) not enforced: the guest has no cgroup for the container');
    expect(p.deviceCgroup).toBeUndefined();
    const bad = (d: unknown) => specError(() => plan(baseSpec({ linux: { namespaces: [{ type: 'mount' }], devices: [d] } }))).message;
    expect(bad(devices[1])).toContain('without ".."');
    expect(bad({ path: 'dev/x', type: 'c', major: 1, minor: 1 })).toContain('must be an absolute path');
    expect(bad({ path: '/', type: 'c', major: 1, minor: 1 })).toContain('not /');
    expect(bad({ path: '/dev/x', type: 'x', major: 1, minor: 1 })).toBe('linux.devices[0].type "x" must be c, b, u or p');
    expect(bad({ path: '/dev/x', type: 'c', major: 4096, minor: 1 })).toBe('linux.devices[0].major must be an integer 0..4095');
    expect(bad({ path: '/dev/x', type: 'b', major: 1 })).toBe('linux.devices[0].minor must be an integer 0..1048575');
    expect(bad({ path: '/dev/x', type: 'c', major: 1, minor: 1, uid: -1 })).toContain('uid');
    const twice = { path: '/dev/x', type: 'c', major: 1, minor: 1 };
    expect(specError(() => plan(baseSpec({ linux: { devices: [twice, { ...twice, path: '/dev//x' }] } }))).message).toBe('linux.devices[1]: /dev/x is listed twice');
    expect(computeExecPlan({ process: { args: ['sh'] }, joinPid: 9 }).plan.devices).toEqual([]);
  });

  describe('namespace paths (joining another container of the sandbox)', () => {
    /** Container inits 42 and 43 are running; their namespaces have inodes 4026530000 + pid. */
    const lookups: Array<[number, string]> = [];
    const containerNamespace = (pid: number, type: string): number | undefined => {
      lookups.push([pid, type]);
      return pid === 42 || pid === 43 ? 4026530000 + pid : undefined;
    };
    const withNs = (namespaces: object[]) => plan(baseSpec({ linux: { namespaces } }), { containerNamespace });

    it('joins pid, ipc, uts and cgroup of a running container init, and creates only the rest', () => {
      const { plan: p } = withNs([
        { type: 'pid', path: '/proc/42/ns/pid' },
        { type: 'ipc', path: '/proc/42/ns/ipc' },
        { type: 'uts', path: '/proc/43/ns/uts' },
        { type: 'cgroup', path: '/proc/42/ns/cgroup' },
        { type: 'mount' },
      ]);
      expect(p.namespaces).toEqual(['mount']);
      expect(p.joins).toEqual([
        { type: 'pid', pid: 42, inode: 4026530042 },
        { type: 'ipc', pid: 42, inode: 4026530042 },
        { type: 'uts', pid: 43, inode: 4026530043 },
        { type: 'cgroup', pid: 42, inode: 4026530042 },
      ]);
      expect(lookups).toContainEqual([43, 'uts']);
      const s = decodePlanStrings(encodePlan(p));
      const at = s.indexOf('join_ns');
      expect(s.slice(at, at + 8)).toEqual(['join_ns', 'pid', '42', '4026530042', 'join_ns', 'ipc', '42', '4026530042']);
      expect(withNs([{ type: 'pid' }, { type: 'mount' }]).plan.joins).toEqual([]);
    });

    it('refuses, with one line naming the entry, a pid that is not a running container init', () => {
      for (const pid of [1, 99, 4242]) {
        const e = specError(() => withNs([{ type: 'mount' }, { type: 'ipc', path: `/proc/${pid}/ns/ipc` }]));
        expect(e.message).toBe(`linux.namespaces[1]: /proc/${pid}/ns/ipc: pid ${pid} is not the init of a running container in this sandbox`);
      }
    });

    it('refuses any path that is not exactly /proc/<pid>/ns/<type>', () => {
      for (const [type, p] of [
        ['ipc', '/proc/42/ns/uts'],
        ['pid', '/proc/42/ns/pid_for_children'],
        ['pid', '/proc/self/ns/pid'],
        ['uts', '/proc/042/ns/uts'],
        ['uts', '/proc/42/ns/uts/'],
        ['ipc', '/proc/42/../42/ns/ipc'],
        ['ipc', '/run/hull/shared/c1/rootfs/proc/42/ns/ipc'],
        ['cgroup', 'proc/42/ns/cgroup'],
      ] as const) {
        const e = specError(() => withNs([{ type: 'mount' }, { type, path: p }]));
        expect(e.message).toMatch(new RegExp(`^linux\\.namespaces\\[1\\]: ${type} namespace path ".*" must be /proc/<pid>/ns/${type}$`));
      }
    });

    it('never joins a mount namespace; network paths stay ignored; user and time stay refused', () => {
      expect(specError(() => withNs([{ type: 'mount', path: '/proc/42/ns/mnt' }])).message).toBe(
        'linux.namespaces[0]: joining another mount namespace (/proc/42/ns/mnt) is not supported: every container pivots into its own root',
      );
      const { plan: p, warnings } = withNs([{ type: 'mount' }, { type: 'network', path: '/proc/42/ns/net' }]);
      expect(p.joins).toEqual([]);
      expect(warnings).toEqual([expect.stringContaining('network namespace ignored')]);
      expect(specError(() => withNs([{ type: 'user', path: '/proc/42/ns/user' }])).message).toBe(
        'linux.namespaces[0]: joining an existing user namespace (/proc/42/ns/user) is not supported',
      );
      expect(specError(() => withNs([{ type: 'time', path: '/proc/42/ns/time' }])).message).toContain('time namespaces are not supported');
    });

    it('refuses a namespace both joined and created (listed twice)', () => {
      expect(specError(() => withNs([{ type: 'ipc' }, { type: 'ipc', path: '/proc/42/ns/ipc' }])).message).toContain('listed twice');
    });
  });

  it('validates the process', () => {
    specError(() => plan(baseSpec({ process: undefined })));
    specError(() => plan(baseSpec({ process: { args: [] } })));
    specError(() => plan(baseSpec({ process: { args: [''] } })));
    specError(() => plan(baseSpec({ process: { args: ['sh'], cwd: 'rel' } })));
    specError(() => plan(baseSpec({ process: { args: ['sh'], env: ['NOEQUALS'] } })));
    specError(() => plan(baseSpec({ process: { args: ['sh'], env: ['=x'] } })));
    specError(() => plan(baseSpec({ process: { args: ['a\0b'] } })));
    specError(() => plan(baseSpec({ process: { args: ['sh'], user: { uid: -1, gid: 0 } } })));
    specError(() => plan(baseSpec({ process: { args: ['sh'], user: { uid: 1.5, gid: 0 } } })));
    specError(() => plan(baseSpec({ process: { args: ['sh'], rlimits: [{ type: 'RLIMIT_BOGUS', soft: 1, hard: 1 }] } })));
    specError(() => plan(baseSpec({ process: { args: ['sh'], rlimits: [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 5 }] } })));
    specError(() => plan(baseSpec({ process: { args: ['sh'], rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1, hard: 1 }, { type: 'RLIMIT_NOFILE', soft: 1, hard: 1 }] } })));
    specError(() => plan('not an object'));
    specError(() => computeCreatePlan({ spec: baseSpec(), rootfsPath: 'relative/rootfs' }));
    // cwd defaults to / and user to root.
    expect(plan(baseSpec({ process: { args: ['sh'] } })).plan).toMatchObject({ cwd: '/', uid: 0, gid: 0, groups: [], env: [] });
    // user.username is Windows-only in the runtime spec: runc runs uid:gid and never reads it (nor /etc/passwd for
    // it), so an unknown name is no error here either.
    const named = plan(baseSpec({ process: { args: ['sh'], user: { uid: 7, gid: 8, username: 'no-such-user' } } }));
    expect([named.plan.uid, named.plan.gid, named.warnings]).toEqual([7, 8, []]);
  });

  it('carries capabilities, no_new_privs, masked and readonly paths and sysctls, with no "not enforced" warning', () => {
    const { plan: p, warnings } = plan(
      baseSpec({
        process: {
          args: ['sh'],
          noNewPrivileges: true,
          capabilities: { bounding: ['CAP_CHOWN', 'CAP_KILL', 'CAP_NOT_A_CAP'], effective: ['CAP_KILL'], ambient: null },
          terminal: true,
        },
        linux: {
          namespaces: [{ type: 'mount' }, { type: 'ipc' }, { type: 'uts' }],
          maskedPaths: ['/proc/kcore', '/proc/acpi/'],
          readonlyPaths: ['/proc/sys'],
          sysctl: { 'kernel.shm_rmid_forced': '1', 'fs/mqueue/msg_max': '20', 'kernel.domainname': 'example' },
        },
      }),
    );
    expect(p.capabilities).toEqual({ bounding: [0, 5], effective: [5], permitted: [], inheritable: [], ambient: [] });
    expect(p.noNewPrivileges).toBe(true);
    expect(p.maskedPaths).toEqual(['/proc/kcore', '/proc/acpi/']);
    expect(p.readonlyPaths).toEqual(['/proc/sys']);
    expect(p.sysctls).toEqual([['kernel.shm_rmid_forced', '1'], ['fs.mqueue.msg_max', '20'], ['kernel.domainname', 'example']]);
    expect(p.seccomp).toBeUndefined();
    expect(p.terminal).toBe(true);
    expect(warnings).toEqual(['process.capabilities: unknown capability "CAP_NOT_A_CAP" ignored']);
    expect(warnings.join('\n')).not.toMatch(/not enforced/);
  });

  it('leaves capabilities alone without process.capabilities and refuses bad security fields', () => {
    const { plan: p } = plan(baseSpec());
    expect(p.capabilities).toBeUndefined();
    expect(p.noNewPrivileges).toBe(false);
    expect(p).toMatchObject({ maskedPaths: [], readonlyPaths: [], sysctls: [] });
    const withLinux = (linux: Record<string, unknown>) => baseSpec({ linux: { namespaces: [{ type: 'mount' }, { type: 'ipc' }, { type: 'uts' }], ...linux } });
    const cases: Array<[unknown, RegExp]> = [
      [baseSpec({ process: { args: ['sh'], capabilities: { bounding: 'CAP_KILL' } } }), /process\.capabilities\.bounding must be an array/],
      [baseSpec({ process: { args: ['sh'], capabilities: { bogus: [] } } }), /process\.capabilities\.bogus is not a capability set/],
      [baseSpec({ process: { args: ['sh'], capabilities: { bounding: [7] } } }), /bounding\[0\] must be a string/],
      [baseSpec({ process: { args: ['sh'], noNewPrivileges: 'yes' } }), /process\.noNewPrivileges must be true or false/],
      [withLinux({ maskedPaths: ['proc/kcore'] }), /linux\.maskedPaths\[0\] "proc\/kcore" must be an absolute path/],
      [withLinux({ readonlyPaths: ['/proc/../etc'] }), /linux\.readonlyPaths\[0\]/],
      [withLinux({ maskedPaths: Array(1025).fill('/x') }), /at most 1024/],
      [withLinux({ sysctl: { 'kernel.hostname': 'x' } }), /kernel\.hostname is not allowed: set the OCI "hostname" field/],
      [withLinux({ sysctl: { 'vm.swappiness': '1' } }), /sysctl vm\.swappiness is not in a separate kernel namespace/],
      [withLinux({ sysctl: { 'net.ipv4.ip_forward': '1' } }), /sysctl net\.ipv4\.ip_forward needs a private network namespace/],
      [withLinux({ sysctl: { '../../etc': '1' } }), /not a sysctl key/],
      [withLinux({ sysctl: { 'kernel.sem': 5 } }), /linux\.sysctl\["kernel\.sem"\] must be a string/],
      [baseSpec({ linux: { namespaces: [{ type: 'mount' }], sysctl: { 'kernel.shmmax': '1' } } }), /kernel\.shmmax needs a private IPC namespace/],
      [baseSpec({ linux: { namespaces: [{ type: 'mount' }], sysctl: { 'kernel.domainname': 'x' } } }), /not in a separate kernel namespace/],
    ];
    for (const [spec, msg] of cases) {
      const e = specError(() => plan(spec));
      expect(e.message).toMatch(msg);
      expect(e.message).not.toContain('\n');
    }
  });

  it('accepts IPC sysctls in an IPC namespace joined from another container', () => {
    const spec = baseSpec({ linux: { namespaces: [{ type: 'mount' }, { type: 'ipc', path: '/proc/42/ns/ipc' }], sysctl: { 'kernel.msgmax': '9000' } } });
    const { plan: p } = plan(spec, { containerNamespace: (pid, type) => (pid === 42 && type === 'ipc' ? 4026532001 : undefined) });
    expect(p.sysctls).toEqual([['kernel.msgmax', '9000']]);
  });

  it('turns linux.seccomp into one rule per syscall name', () => {
    const { plan: p, warnings } = plan(
      baseSpec({
        linux: {
          namespaces: [{ type: 'mount' }],
          seccomp: {
            defaultAction: 'SCMP_ACT_ERRNO',
            architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
            flags: ['SECCOMP_FILTER_FLAG_LOG'],
            syscalls: [
              { names: ['read', 'write', 'not_a_syscall_yet'], action: 'SCMP_ACT_ALLOW' },
              { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
              { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 4294967295, op: 'SCMP_CMP_EQ' }] },
              { names: ['clone'], action: 'SCMP_ACT_KILL', args: [{ index: 0, value: 2 ** 40, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
            ],
          },
        },
      }),
    );
    expect(p.seccomp).toEqual({
      defaultAction: 'errno',
      defaultErrnoRet: 1,
      architectures: ['x86_64', 'x86'],
      rules: [
        { name: 'read', action: 'allow', errnoRet: 0, args: [] },
        { name: 'write', action: 'allow', errnoRet: 0, args: [] },
        { name: 'not_a_syscall_yet', action: 'allow', errnoRet: 0, args: [] },
        { name: 'mkdir', action: 'errno', errnoRet: 13, args: [] },
        { name: 'personality', action: 'allow', errnoRet: 0, args: [{ index: 0, value: '4294967295', valueTwo: '0', op: 'eq' }] },
        { name: 'clone', action: 'kill_thread', errnoRet: 0, args: [{ index: 0, value: String(2 ** 40), valueTwo: '0', op: 'masked_eq' }] },
      ],
    });
    expect(warnings).toContain('linux.seccomp.flags SECCOMP_FILTER_FLAG_LOG are not supported; ignored');
    const strings = decodePlanStrings(encodePlan(p));
    const at = strings.indexOf('seccomp');
    expect(strings.slice(at, at + 7)).toEqual(['seccomp', 'errno', '1', 'seccomp_arch', 'x86_64', 'seccomp_arch', 'x86']);
    const pers = strings.indexOf('personality');
    expect(strings.slice(pers - 1, pers + 8)).toEqual(['seccomp_syscall', 'personality', 'allow', '0', 'seccomp_arg', '0', '4294967295', '0', 'eq']);
  });

  it('refuses bad or unsupported seccomp profiles with one line', () => {
    const sc = (seccomp: unknown) => baseSpec({ linux: { namespaces: [{ type: 'mount' }], seccomp } });
    const cases: Array<[unknown, RegExp]> = [
      [sc('allow'), /linux\.seccomp must be an object/],
      [sc({}), /linux\.seccomp\.defaultAction must be a string/],
      [sc({ defaultAction: 'SCMP_ACT_NOTIFY' }), /SCMP_ACT_NOTIFY is not supported/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/x.sock' }), /listenerPath: seccomp notify is not supported/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_NOTIFY' }] }), /syscalls\[0\]\.action: SCMP_ACT_NOTIFY/],
      [sc({ defaultAction: 'SCMP_ACT_BOGUS' }), /"SCMP_ACT_BOGUS" is not a seccomp action/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_VAX'] }), /architectures\[0\] "SCMP_ARCH_VAX" is not a seccomp architecture/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', defaultErrnoRet: 1 }), /defaultErrnoRet is only valid with SCMP_ACT_ERRNO/],
      [sc({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 5000 }), /defaultErrnoRet must be an errno number/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: [], action: 'SCMP_ACT_ERRNO' }] }), /names must name at least one syscall/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mk dir'], action: 'SCMP_ACT_ERRNO' }] }), /"mk dir" is not a syscall name/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['x'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 0, op: 'SCMP_CMP_EQ' }] }] }), /args\[0\]\.index must be an integer from 0 to 5/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['x'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: -1, op: 'SCMP_CMP_EQ' }] }] }), /value must be an unsigned 64-bit integer/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['x'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_LIKE' }] }] }), /op "SCMP_CMP_LIKE" is not one of/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: Array(5).fill({ names: Array(1000).fill('read'), action: 'SCMP_ACT_ERRNO' }) }), /more than 4096 syscalls in all/],
      [sc({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: Array(1025).fill({ names: ['read'], action: 'SCMP_ACT_ERRNO' }) }), /at most 1024/],
    ];
    for (const [spec, msg] of cases) {
      const e = specError(() => plan(spec));
      expect(e.message).toMatch(msg);
      expect(e.message).not.toContain('\n');
    }
  });
});

describe('exec plan', () => {
  it('joins the init pid and carries the process fields only', () => {
    const { plan: p } = computeExecPlan({
      process: { args: ['ls', '-l'], env: ['A=1'], cwd: '/tmp', user: { uid: 5, gid: 6 }, rlimits: [{ type: 'RLIMIT_NPROC', soft: 10, hard: 20 }] },
      joinPid: 1234,
      cgroupPath: '/sys/fs/cgroup/hull/c1',
    });
    expect(p).toMatchObject({ mode: 'exec', joinPid: 1234, namespaces: [], mounts: [], cwd: '/tmp', uid: 5, gid: 6, args: ['ls', '-l'] });
    expect(p.rootfs).toBeUndefined();
    expect(p.rlimits).toEqual([{ resource: 6, soft: '10', hard: '20' }]);
    specError(() => computeExecPlan({ process: { args: ['ls'] }, joinPid: 0 }));
    specError(() => computeExecPlan({ process: {}, joinPid: 1 }));
  });

  it('applies the process capabilities and no_new_privs of an exec', () => {
    const { plan: p, warnings } = computeExecPlan({
      process: { args: ['sh'], noNewPrivileges: true, capabilities: { bounding: ['CAP_NET_RAW'], permitted: ['CAP_NET_RAW'] } },
      joinPid: 9,
    });
    expect(warnings).toEqual([]);
    const s = decodePlanStrings(encodePlan(p));
    const at = s.indexOf('capabilities');
    expect(s.slice(at, at + 8)).toEqual(['capabilities', String(1 << 13), '0', String(1 << 13), '0', '0', 'no_new_privs', '1']);
  });
});

describe('plan encoding', () => {
  it('writes NUL-terminated keys and values in the documented order', () => {
    const p: Plan = {
      mode: 'create',
      namespaces: ['mount', 'pid'],
      joins: [{ type: 'ipc', pid: 42, inode: 4026532000 }],
      rootfs: ROOTFS,
      readonlyRoot: false,
      hostname: 'box',
      mounts: [{ type: 'tmpfs', source: 'tmpfs', destination: '/dev', flags: MS.NOSUID | MS.STRICTATIME, data: 'mode=755' }],
      cgroup: '/sys/fs/cgroup/hull/c1',
      rlimits: [{ resource: 7, soft: '1024', hard: '-1' }],
      uid: 1,
      gid: 2,
      groups: [3, 4],
      cwd: '/',
      env: ['A=1', 'B='],
      args: ['sh', '-c', 'echo hi'],
      capabilities: { bounding: [0, 5, 40], effective: [5], permitted: [5], inheritable: [], ambient: [] },
      noNewPrivileges: true,
      maskedPaths: ['/proc/kcore'],
      readonlyPaths: ['/proc/sys'],
      sysctls: [['kernel.shmmax', '1024']],
      devices: [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, mode: 0o666, uid: 0, gid: 5 }],
      oomScoreAdj: -500,
    };
    const buf = encodePlan(p);
    expect(buf[buf.length - 1]).toBe(0);
    expect(decodePlanStrings(buf)).toEqual([
      'mode', 'create',
      'namespaces', 'mount,pid',
      'join_ns', 'ipc', '42', '4026532000',
      'rootfs', ROOTFS,
      'readonly_root', '0',
      'hostname', 'box',
      'mount', 'tmpfs', 'tmpfs', '/dev', String(MS.NOSUID | MS.STRICTATIME), 'mode=755',
      'cgroup', '/sys/fs/cgroup/hull/c1',
      'rlimit', '7', '1024', '-1',
      'uid', '1', 'gid', '2', 'groups', '3,4',
      'cwd', '/',
      'capabilities', String(1n + (1n << 5n) + (1n << 40n)), '32', '32', '0', '0',
      'no_new_privs', '1',
      'readonly_path', '/proc/sys',
      'masked_path', '/proc/kcore',
      'sysctl', 'kernel.shmmax', '1024',
      'device', '/dev/fuse', 'c', '10', '229', String(0o666), '0', '5',
      'oom_score_adj', '-500',
      'env', 'A=1', 'env', 'B=',
      'arg', 'sh', 'arg', '-c', 'arg', 'echo hi',
      'end',
    ]);
  });

  it('writes exec plans with join_pid and no create-only keys', () => {
    const { plan: p } = computeExecPlan({ process: { args: ['true'] }, joinPid: 42 });
    const s = decodePlanStrings(encodePlan(p));
    expect(s.slice(0, 4)).toEqual(['mode', 'exec', 'join_pid', '42']);
    for (const k of ['namespaces', 'join_ns', 'rootfs', 'mount', 'hostname', 'cgroup', 'masked_path', 'readonly_path', 'sysctl', 'seccomp', 'capabilities', 'no_new_privs']) {
      expect(s).not.toContain(k);
    }
    expect(s).toContain('groups');
    expect(s[s.indexOf('groups') + 1]).toBe(''); // always written, so the helper drops the agent's groups
  });

  it('takes process.consoleSize for a terminal only, both sides non-zero as runc, and refuses sizes a winsize cannot hold', () => {
    const exec = (process: Record<string, unknown>) => computeExecPlan({ process: { args: ['sh'], ...process }, joinPid: 7 }).plan;
    expect(exec({ terminal: true, consoleSize: { height: 27, width: 77 } }).consoleSize).toEqual({ rows: 27, cols: 77 });
    expect(plan(baseSpec({ process: { args: ['sh'], terminal: true, consoleSize: { height: 5, width: 6 } } })).plan.consoleSize).toEqual({ rows: 5, cols: 6 });
    expect(exec({ terminal: false, consoleSize: { height: 27, width: 77 } }).consoleSize).toBeUndefined();
    expect(exec({ terminal: true, consoleSize: { height: 0, width: 77 } }).consoleSize).toBeUndefined();
    expect(exec({ terminal: true, consoleSize: null }).consoleSize).toBeUndefined();
    expect(() => exec({ terminal: true, consoleSize: { height: 70000, width: 1 } })).toThrow(/process\.consoleSize\.height must be an integer 0\.\.65535/);
    expect(() => exec({ terminal: true, consoleSize: { height: 1, width: -1 } })).toThrow(/process\.consoleSize\.width must be/);
    expect(() => exec({ terminal: true, consoleSize: '80x24' })).toThrow(/process\.consoleSize must be an object/);
    // Not a helper key: the agent sets the size on the pty's master.
    expect(decodePlanStrings(encodePlan(exec({ terminal: true, consoleSize: { height: 27, width: 77 } })))).not.toContain('27');
  });

  it('writes `console -` only for process.terminal', () => {
    const withTty = decodePlanStrings(encodePlan(computeExecPlan({ process: { args: ['sh'], terminal: true }, joinPid: 7 }).plan));
    expect(withTty[withTty.indexOf('console') + 1]).toBe('-');
    const without = decodePlanStrings(encodePlan(computeExecPlan({ process: { args: ['sh'], terminal: false }, joinPid: 7 }).plan));
    expect(without).not.toContain('console');
  });

  it('round-trips a computed plan and never emits NUL inside a value', () => {
    const { plan: p } = plan(baseSpec({ hostname: 'h', process: { args: ['a b', 'ünïcode'], env: ['X=y z'] } }));
    const strings = decodePlanStrings(encodePlan(p));
    const args = strings.flatMap((s, i) => (s === 'arg' ? [strings[i + 1]] : []));
    expect(args).toEqual(['a b', 'ünïcode']);
    expect(strings[strings.indexOf('hostname') + 1]).toBe('h');
  });
});

describe('cgroup values', () => {
  it('converts cpu shares to weight with the standard formula', () => {
    expect(cpuWeightFor(2)).toBe(1);
    expect(cpuWeightFor(1024)).toBe(39);
    expect(cpuWeightFor(262144)).toBe(10000);
    expect(cpuWeightFor(1)).toBe(1); // clamped
  });

  it('converts OCI memory+swap into memory.swap.max like runc', () => {
    expect(swapMaxFor(0, -1)).toBe(-1);
    expect(swapMaxFor(-1, 100)).toBe(-1);
    expect(swapMaxFor(0, 100)).toBeNull();
    expect(swapMaxFor(300, 100)).toBe(200);
    specError(() => swapMaxFor(50, 100));
    specError(() => swapMaxFor(300, 0));
  });

  it('maps linux.resources to cgroup v2 files', () => {
    expect(limitsFor(undefined)).toEqual({});
    expect(
      limitsFor({ memory: { limit: 1 << 28, swap: 1 << 29, reservation: 1 << 27 }, cpu: { quota: 50000, period: 200000, shares: 512 }, pids: { limit: 100 } }),
    ).toEqual({
      'memory.max': String(1 << 28),
      'memory.low': String(1 << 27),
      'memory.swap.max': String(1 << 28),
      'cpu.max': '50000 200000',
      'cpu.weight': String(cpuWeightFor(512)),
      'pids.max': '100',
    });
    expect(limitsFor({ memory: { limit: -1 }, cpu: { quota: -1 }, pids: { limit: -1 } })).toEqual({
      'memory.max': 'max',
      'memory.swap.max': 'max',
      'cpu.max': 'max 100000',
      'pids.max': 'max',
    });
    expect(limitsFor({ cpu: { period: 50000 } })).toEqual({ 'cpu.max': 'max 50000' });
    specError(() => limitsFor({ cpu: { period: 10 } }));
    specError(() => limitsFor({ memory: { limit: 1.5 } }));
  });

  it('writes unlimited rlimits as -1', () => {
    expect(rlimitValue(0)).toBe('0');
    expect(rlimitValue(2 ** 53)).toBe(String(2 ** 53));
    expect(rlimitValue(18446744073709551615)).toBe('-1');
  });
});

describe('the start-up warm-up of the create path', () => {
  it('plans its sample spec without warnings and through every costly branch (a refused sample fails the snapshot build)', () => {
    const { plan, warnings } = warmUpContainerPaths();
    expect(warnings).toEqual([]);
    expect(plan.seccomp?.rules.length).toBeGreaterThan(0);
    expect(plan.deviceCgroup?.rules.length).toBeGreaterThan(0);
    expect(plan.devices?.length).toBe(1);
    expect(plan.maskedPaths?.length).toBeGreaterThan(0);
    expect(plan.sysctls?.length).toBe(1);
    expect(plan.mounts.some((m) => m.flags !== undefined && (m.flags & MS.BIND) !== 0)).toBe(true);
  });
});
