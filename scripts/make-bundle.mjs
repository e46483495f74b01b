#!/usr/bin/env node
// Makes an OCI bundle whose rootfs is Debian's static busybox: the smallest real container to run.
// usage: node scripts/make-bundle.mjs DIR [arg ...]   (default args: sh -c 'echo hello from $(uname -r)')
import { chmodSync, copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const [dir, ...args] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: make-bundle.mjs DIR [arg ...]\n');
  process.exit(2);
}
const busybox = '/bin/busybox';
if (!existsSync(busybox)) {
  process.stderr.write('make-bundle: /bin/busybox not found: apt-get install busybox-static\n');
  process.exit(1);
}
const rootfs = path.join(dir, 'rootfs');
for (const sub of ['bin', 'proc', 'sys', 'dev', 'tmp', 'etc', 'root']) mkdirSync(path.join(rootfs, sub), { recursive: true });
chmodSync(path.join(rootfs, 'tmp'), 0o1777);
copyFileSync(busybox, path.join(rootfs, 'bin', 'busybox'));
const applets = execFileSync(busybox, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
for (const applet of applets) {
  const link = path.join(rootfs, 'bin', applet);
  if (applet !== 'busybox' && !existsSync(link)) symlinkSync('busybox', link);
}
writeFileSync(path.join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n');
writeFileSync(path.join(rootfs, 'etc', 'group'), 'root:x:0:\nnobody:x:65534:\n');

const spec = {
  ociVersion: '1.0.2',
  process: {
    terminal: false,
    user: { uid: 0, gid: 0 },
    args: args.length ? args : ['sh', '-c', 'echo hello from a microVM running kernel $(uname -r)'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
    cwd: '/',
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
    noNewPrivileges: true,
  },
  root: { path: 'rootfs', readonly: false },
  hostname: 'hull',
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
  ],
  linux: {
    namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
    resources: { devices: [{ allow: false, access: 'rwm' }] },
  },
};
writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(spec, null, 2)}\n`);
