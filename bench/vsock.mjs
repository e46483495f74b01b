#!/usr/bin/env node
// Benchmark of hull-vsock-backend under QEMU microvm (TCG): one-stream throughput host→guest and guest→host, and
// small-message round-trip latency, each beside the same transfer over a plain host Unix socket measured in the same
// run. Not a test; prints a table.
//
//   node bench/vsock.mjs [--mb 256] [--pings 2000] [--size 64]
//
// Uses build/native/hull-vsock-backend (release build), build/kernel (guest-image/kernel.sh) and the test initramfs
// of native/vsock-backend/test (vsock-peer in discard / zeros / echo modes, which do no hashing, so the guest's
// emulated CPU is spent on the transport only).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'build/native');
const KERNEL_DIR = process.env.HULL_KERNEL_DIR ?? path.join(ROOT, 'build/kernel');

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : def;
};
const MB = opt('mb', 256);
const PINGS = opt('pings', 2000);
const MSG = opt('size', 64);
const BYTES = MB * 1024 * 1024;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(what, ms, probe) {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
function hostTscKhz() {
  const m = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  return m ? Math.round(Number(m[1]) * 1000) : 2_000_000;
}

/** Hybrid vsock: connect, CONNECT <port>, wait for OK. */
function hybrid(udsPath, port) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(udsPath);
    sock.on('error', reject);
    let acc = Buffer.alloc(0);
    const onData = (d) => {
      acc = Buffer.concat([acc, d]);
      const nl = acc.indexOf(10);
      if (nl < 0) return;
      sock.off('data', onData);
      sock.off('close', onClose);
      sock.pause();
      if (!acc.subarray(0, nl).toString().startsWith('OK ')) reject(new Error(`bad reply ${acc}`));
      if (acc.length > nl + 1) sock.unshift(acc.subarray(nl + 1));
      resolve(sock);
    };
    const onClose = () => reject(new Error(`closed before OK (port ${port})`));
    sock.on('data', onData);
    sock.on('close', onClose);
    sock.once('connect', () => sock.write(`CONNECT ${port}\n`));
  });
}

/** Plain Unix socket to the host baseline server; the first byte selects its service. */
function plain(sockPath, sel) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(sockPath);
    sock.on('error', reject);
    sock.once('connect', () => {
      sock.write(sel);
      resolve(sock);
    });
  });
}

async function hostToGuest(open) {
  const sock = await open();
  const chunk = Buffer.alloc(1 << 20, 0x61);
  const reply = new Promise((resolve) => {
    let s = '';
    sock.on('data', (d) => (s += d));
    sock.on('end', () => resolve(s));
    sock.resume();
  });
  const t0 = process.hrtime.bigint();
  let sent = 0;
  while (sent < BYTES) {
    const n = Math.min(chunk.length, BYTES - sent);
    sent += n;
    if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await new Promise((r) => sock.once('drain', r));
  }
  sock.end();
  const got = Number((await reply).trim());
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (got !== BYTES) throw new Error(`peer counted ${got} bytes, sent ${BYTES}`);
  sock.destroy();
  return BYTES / s / 1e6;
}

async function guestToHost(open) {
  const sock = await open();
  let got = 0;
  const done = new Promise((resolve) => {
    sock.on('data', (d) => (got += d.length));
    sock.on('end', resolve);
  });
  const t0 = process.hrtime.bigint();
  sock.resume();
  sock.write(`${BYTES}\n`);
  await done;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (got !== BYTES) throw new Error(`received ${got} bytes, wanted ${BYTES}`);
  sock.destroy();
  return BYTES / s / 1e6;
}

async function pingPong(open) {
  const sock = await open();
  sock.setNoDelay?.(true);
  const msg = Buffer.alloc(MSG, 0x62);
  let have = 0;
  let wake;
  sock.on('data', (d) => {
    have += d.length;
    if (have >= MSG && wake) {
      have -= MSG;
      const w = wake;
      wake = undefined;
      w();
    }
  });
  sock.resume();
  const once = () => new Promise((r) => {
    wake = r;
    sock.write(msg);
  });
  for (let i = 0; i < 50; i++) await once(); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < PINGS; i++) await once();
  const us = Number(process.hrtime.bigint() - t0) / 1000 / PINGS;
  sock.destroy();
  return us;
}

/** The same three services as the guest peer, on a host Unix socket. */
function unixServer(sockPath) {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    let mode;
    let count = 0;
    let line = '';
    const handle = (d) => {
      if (!d.length) return;
      if (mode === 'd') count += d.length;
      else if (mode === 'e') s.write(d);
      else if (mode === 'z') {
        line += d.toString();
        const nl = line.indexOf('\n');
        if (nl >= 0) {
          let left = Number(line.slice(0, nl));
          const zero = Buffer.alloc(1 << 20);
          const pump = () => {
            while (left > 0) {
              const n = Math.min(left, zero.length);
              left -= n;
              if (!s.write(n === zero.length ? zero : zero.subarray(0, n))) return void s.once('drain', pump);
            }
            s.end();
          };
          pump();
        }
      }
    };
    s.on('data', (d) => {
      if (mode === undefined) {
        // the client's first byte selects the service
        mode = String.fromCharCode(d[0]);
        d = d.subarray(1);
      }
      handle(d);
    });
    s.on('end', () => {
      if (mode === 'd') s.end(`${count}\n`);
      else if (mode === 'e') s.end();
    });
  });
  return new Promise((r) => server.listen(sockPath, () => r(server)));
}
async function main() {
  execFileSync('make', ['-C', path.join(ROOT, 'native'), '-s', 'vsock-backend', 'vsock-peer'], { stdio: 'inherit' });
  if (!existsSync(path.join(KERNEL_DIR, 'vmlinux'))) execFileSync('bash', [path.join(ROOT, 'guest-image/kernel.sh')], { stdio: 'inherit' });
  const dir = mkdtempSync('/tmp/hvsk-bench-');
  const vu = path.join(dir, 'vu.sock');
  const uds = path.join(dir, 'v.sock');
  const consoleLog = path.join(dir, 'console.log');
  const initrd = path.join(dir, 'initrd.cpio');
  let backend;
  let qemu;
  let server;
  try {
    execFileSync('bash', [path.join(ROOT, 'native/vsock-backend/test/make-test-initramfs.sh'), initrd,
      path.join(KERNEL_DIR, 'modules'), path.join(OUT, 'vsock-peer')], { stdio: 'inherit' });
    backend = spawn(path.join(OUT, 'hull-vsock-backend'), ['--socket', vu, '--uds-path', uds, '--guest-cid', '3'],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    backend.stdout.on('data', (d) => (out += d));
    await waitFor('backend READY', 5000, () => out.includes('READY'));
    qemu = spawn('qemu-system-x86_64', [
      '-M', 'microvm,memory-backend=mem,x-option-roms=off', '-accel', 'tcg', '-cpu', 'max', '-smp', '1', '-m', '512',
      '-object', 'memory-backend-memfd,id=mem,size=512M,share=on', '-global', 'virtio-mmio.force-legacy=false',
      '-chardev', `socket,id=vsock,path=${vu}`, '-device', 'vhost-user-vsock-device,chardev=vsock',
      '-kernel', path.join(KERNEL_DIR, 'vmlinux'), '-initrd', initrd,
      '-append', `console=ttyS0 tsc=reliable no_timer_check tsc_early_khz=${hostTscKhz()} panic=-1 quiet ` +
        'peer.server=5000:echo,5001:discard,5002:zeros',
      '-nographic', '-no-reboot', '-nodefaults', '-serial', `file:${consoleLog}`,
    ], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitFor('guest PEER-READY', 120_000, () => existsSync(consoleLog) && readFileSync(consoleLog, 'utf8').includes('PEER-READY'));

    const unixPath = path.join(dir, 'plain.sock');
    server = await unixServer(unixPath);

    const rows = [];
    rows.push(['host→guest, 1 stream (MB/s)',
      await hostToGuest(() => hybrid(uds, 5001)), await hostToGuest(() => plain(unixPath, 'd'))]);
    rows.push(['guest→host, 1 stream (MB/s)',
      await guestToHost(() => hybrid(uds, 5002)), await guestToHost(() => plain(unixPath, 'z'))]);
    rows.push([`${MSG}-byte round trip ×${PINGS} (µs)`,
      await pingPong(() => hybrid(uds, 5000)), await pingPong(() => plain(unixPath, 'e'))]);

    console.log(`\nhull-vsock-backend under QEMU microvm TCG (1 vCPU), ${MB} MiB per stream\n`);
    const w = [34, 14, 14, 10];
    const row = (c) => console.log(c.map((x, i) => String(x).padEnd(w[i])).join(''));
    row(['metric', 'vsock', 'unix socket', 'vsock/unix']);
    row(['-'.repeat(32), '-'.repeat(12), '-'.repeat(12), '-'.repeat(10)]);
    for (const [name, vs, ux] of rows) row([name, vs.toFixed(1), ux.toFixed(1), (vs / ux).toFixed(3)]);
    console.log();
  } finally {
    server?.close();
    if (qemu && qemu.exitCode === null) {
      qemu.kill('SIGKILL');
      await new Promise((r) => qemu.once('exit', r));
    }
    if (backend && backend.exitCode === null) {
      await Promise.race([new Promise((r) => backend.once('exit', r)), sleep(3000)]);
      if (backend.exitCode === null) backend.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`bench/vsock: ${e.stack ?? e}`);
  process.exit(1);
});
