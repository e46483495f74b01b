// Unit tests of the VMM control layer: no QEMU here. Fake probe files, a fake QMP server and a fake hybrid vsock
// backend on Unix sockets, and shell scripts standing in for the helper binaries.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AgentUnreachableError,
  BinaryNotFoundError,
  HelperStartError,
  HybridVsockProtocolError,
  QmpClosedError,
  QmpCommandError,
  QmpProtocolError,
  SocketPathTooLongError,
} from '../../hypervisor/errors.js';
import { hostTscKhz } from '../../hypervisor/host-tsc.js';
import { tailLines } from '../../hypervisor/log-tail.js';
import { checkSocketPath, findRepoRoot, sandboxPaths } from '../../hypervisor/paths.js';
import { HostProcess, isAlive, procStartTime, procStat } from '../../hypervisor/process.js';
import { buildQemuArgs, composeKernelCmdline, TCG_CPU_MODEL, type QemuCommandSpec } from '../../hypervisor/qemu-command.js';
import { QmpClient, type QmpEvent } from '../../hypervisor/qmp.js';
import { allocateGuestCid, connectHybridVsock } from '../../hypervisor/transport.js';
import { startVirtiofsd, virtiofsdArgs, virtiofsdPrivileges } from '../../hypervisor/virtiofsd.js';
import { startVsockBackend, vsockBackendArgs } from '../../hypervisor/vsock-backend.js';
import { Code } from '../../protocol/ttrpc/codes.js';
import { toTtrpcError } from '../../shim/containerd/service.js';

let tmp: string;
const servers: net.Server[] = [];
const conns: net.Socket[] = [];

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'hull-hvu-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(async () => {
  // server.close() waits for its connections, and a paused one never sees the peer's EOF: end them here.
  for (const c of conns.splice(0)) c.destroy();
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
});

let seq = 0;
const sockPath = (name: string): string => path.join(tmp, `${name}-${seq++}.sock`);

function listen(p: string, onConn: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer((s) => {
    conns.push(s);
    onConn(s);
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(p, () => resolve(server)));
}

// ---------------------------------------------------------------------------------------------------------------
describe('buildQemuArgs', () => {
  const paths = sandboxPaths('/run/hull/sb1');
  const base: QemuCommandSpec = {
    qemuPath: '/usr/bin/qemu-system-x86_64',
    paths,
    accel: 'tcg',
    tbSizeMiB: 128,
    vcpus: 2,
    memoryMiB: 512,
    kernelPath: '/k/vmlinux',
    initrdPath: '/k/initrd.img',
    cmdline: 'console=ttyS0',
    sharedFs: true,
    vsock: { kind: 'vhost-user', socketPath: paths.vhostVsockSock },
  };
  const after = (args: string[], flag: string): string[] =>
    args.flatMap((a, i) => (a === flag ? [args[i + 1] as string] : []));

  it('gives each NIC a tap netdev by name and a virtio-net device with the pod MAC and MTU; vhost only when asked', () => {
    const nics = [
      { tap: 'hulltap0', mac: '0a:58:0a:63:4d:05', mtu: 1450 },
      { tap: 'hulltap1', mac: '02:00:00:00:00:01', mtu: 9000 },
    ];
    const args = buildQemuArgs({ ...base, nics });
    expect(after(args, '-netdev')).toEqual([
      'tap,id=net0,ifname=hulltap0,script=no,downscript=no',
      'tap,id=net1,ifname=hulltap1,script=no,downscript=no',
    ]);
    expect(after(args, '-device').filter((d) => d.startsWith('virtio-net'))).toEqual([
      'virtio-net-device,netdev=net0,mac=0a:58:0a:63:4d:05,host_mtu=1450',
      'virtio-net-device,netdev=net1,mac=02:00:00:00:00:01,host_mtu=9000',
    ]);
    expect(after(buildQemuArgs({ ...base, nics, vhostNet: true }), '-netdev')[0]).toMatch(/,vhost=on$/);
    expect(after(buildQemuArgs(base), '-netdev')).toEqual([]);
  });

  it('builds a microvm with shared memfd memory, TCG tb-size and the TCG CPU model', () => {
    const args = buildQemuArgs({ ...base, name: 'hull-a,b' });
    expect(after(args, '-name')).toEqual(['hull-a,,b,debug-threads=on']);
    expect(after(args, '-M')).toEqual(['microvm,memory-backend=mem,x-option-roms=off']);
    expect(after(args, '-accel')).toEqual(['tcg,tb-size=128']);
    expect(after(args, '-cpu')).toEqual([TCG_CPU_MODEL]);
    expect(TCG_CPU_MODEL).toMatch(/^qemu64,.*\+rdrand.*\+smep,\+smap,\+umip$/);
    expect(after(buildQemuArgs({ ...base, tcgCpu: 'max' }), '-cpu')).toEqual(['max']);
    expect(after(args, '-smp')).toEqual(['2']);
    expect(after(args, '-m')).toEqual(['512M']);
    expect(after(args, '-object')).toEqual(['memory-backend-memfd,id=mem,size=512M,share=on']);
    expect(after(args, '-global')).toEqual(['virtio-mmio.force-legacy=false']);
    for (const f of ['-nodefaults', '-no-user-config', '-nographic', '-no-reboot']) expect(args).toContain(f);
    expect(args).not.toContain('-daemonize');
    expect(after(args, '-kernel')).toEqual(['/k/vmlinux']);
    expect(after(args, '-initrd')).toEqual(['/k/initrd.img']);
    expect(after(args, '-append')).toEqual(['console=ttyS0']);
  });

  it('wires the console, QMP, virtio-fs and the vhost-user vsock device to the sandbox sockets', () => {
    const args = buildQemuArgs(base);
    expect(after(args, '-chardev')).toEqual([
      'stdio,id=console,signal=off',
      `socket,id=qmp,path=${paths.socketDir}/qmp.sock,server=on,wait=off`,
      `socket,id=fs,path=${paths.socketDir}/virtiofsd.sock`,
      `socket,id=vsock,path=${paths.socketDir}/vhost-vsock.sock`,
    ]);
    expect(after(args, '-serial')).toEqual(['chardev:console']);
    expect(after(args, '-mon')).toEqual(['chardev=qmp,mode=control']);
    expect(after(args, '-device')).toEqual([
      'virtio-rng-device',
      'vhost-user-fs-device,chardev=fs,tag=hullshared',
      'vhost-user-vsock-device,chardev=vsock',
    ]);
  });

  it('uses host CPU under KVM and ignores tb-size there', () => {
    const args = buildQemuArgs({ ...base, accel: 'kvm' });
    expect(after(args, '-accel')).toEqual(['kvm']);
    expect(after(args, '-cpu')).toEqual(['host']);
  });

  it('leaves tb-size to QEMU when not given', () => {
    const { tbSizeMiB: _omit, ...spec } = base;
    expect(after(buildQemuArgs(spec), '-accel')).toEqual(['tcg']);
  });

  it('uses kernel vhost-vsock with a CID, a read-only erofs root, and only the entropy device when nothing else is asked', () => {
    const withCid = buildQemuArgs({ ...base, vsock: { kind: 'vhost-vsock', guestCid: 42 }, rootImagePath: '/img/root,1.erofs' });
    expect(after(withCid, '-device')).toEqual([
      'virtio-rng-device',
      'virtio-blk-device,drive=root',
      'vhost-user-fs-device,chardev=fs,tag=hullshared',
      'vhost-vsock-device,guest-cid=42',
    ]);
    // A comma in a path is doubled so QEMU does not split the option there.
    expect(after(withCid, '-drive')).toEqual(['id=root,file=/img/root,,1.erofs,format=raw,if=none,read-only=on']);
    const { vsock: _v, ...noVsock } = base;
    const bare = buildQemuArgs({ ...noVsock, sharedFs: false });
    expect(after(bare, '-device')).toEqual(['virtio-rng-device']);
  });

  it('adds a virtio-balloon with free page reporting only when asked, or for a VM that can grow', () => {
    const balloons = (args: string[]) => after(args, '-device').filter((d) => d.startsWith('virtio-balloon'));
    expect(balloons(buildQemuArgs({ ...base, freePageReporting: true }))).toEqual(['virtio-balloon-device,free-page-reporting=on']);
    expect(balloons(buildQemuArgs(base))).toEqual([]);
    // Room to grow: QEMU gets the most as guest RAM (the balloon, inflated from boot, holds the rest).
    const growable = buildQemuArgs({ ...base, memoryMiB: 512, maxMemoryMiB: 2048 });
    expect(after(growable, '-m')).toEqual(['2048M']);
    expect(after(growable, '-object')).toEqual(['memory-backend-memfd,id=mem,size=2048M,share=on']);
    expect(balloons(growable)).toEqual(['virtio-balloon-device']);
    expect(balloons(buildQemuArgs({ ...base, memoryMiB: 512, maxMemoryMiB: 2048, freePageReporting: true }))).toEqual(['virtio-balloon-device,free-page-reporting=on']);
    // A most that is not more than the memory is no room at all.
    const fixed = buildQemuArgs({ ...base, memoryMiB: 512, maxMemoryMiB: 512 });
    expect([after(fixed, '-m'), balloons(fixed)]).toEqual([['512M'], []]);
  });

  it('gives the guest the agent key as a fw_cfg file: only its path is on the command line', () => {
    const args = buildQemuArgs({ ...base, agentKeyPath: '/run/hull/a,b/agent.key' });
    expect(after(args, '-fw_cfg')).toEqual(['name=opt/hull/agent-key,file=/run/hull/a,,b/agent.key']);
    expect(after(buildQemuArgs(base), '-fw_cfg')).toEqual([]);
  });

  it('tells a TCG guest the host TSC rate, so a busy host cannot make it hang in PIT calibration', () => {
    expect(composeKernelCmdline('', 'tcg', [], 2596102)).toBe(
      'console=ttyS0 panic=-1 tsc=reliable no_timer_check tsc_early_khz=2596102',
    );
    expect(composeKernelCmdline('', 'kvm', [], 2596102)).toBe('console=ttyS0 panic=-1');
  });

  it('composes the kernel command line without repeating options', () => {
    expect(composeKernelCmdline('quiet', 'tcg')).toBe('quiet console=ttyS0 panic=-1 tsc=reliable no_timer_check');
    expect(composeKernelCmdline('console=hvc0 panic=5', 'kvm')).toBe('console=hvc0 panic=5');
    expect(composeKernelCmdline('tsc=reliable', 'tcg', ['hull.debug=1'])).toBe(
      'tsc=reliable console=ttyS0 panic=-1 no_timer_check hull.debug=1',
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('QmpClient', () => {
  const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}\r\n';

  /** A fake QEMU: greets, answers commands through `answer`, records what it received. */
  async function fakeQemu(answer: (cmd: { execute: string; id?: string }, sock: net.Socket) => void): Promise<{
    path: string;
    received: Array<{ execute: string; id?: string }>;
    peer: Promise<net.Socket>;
  }> {
    const p = sockPath('qmp');
    const received: Array<{ execute: string; id?: string }> = [];
    let setPeer!: (s: net.Socket) => void;
    const peer = new Promise<net.Socket>((r) => (setPeer = r));
    await listen(p, (sock) => {
      setPeer(sock);
      sock.write(GREETING);
      let buf = '';
      sock.on('data', (d) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; id?: string };
          buf = buf.slice(nl + 1);
          received.push(cmd);
          if (cmd.execute === 'qmp_capabilities') sock.write(`${JSON.stringify({ return: {}, id: cmd.id })}\r\n`);
          else answer(cmd, sock);
        }
      });
      sock.on('error', () => undefined);
    });
    return { path: p, received, peer };
  }

  it('negotiates capabilities and matches replies to commands by id, even out of order', async () => {
    const held: Array<{ execute: string; id?: string }> = [];
    const fake = await fakeQemu((cmd, sock) => {
      held.push(cmd);
      if (held.length === 2) {
        // Answer the second first.
        sock.write(`${JSON.stringify({ return: { status: 'paused', running: false }, id: held[1]?.id })}\r\n`);
        sock.write(`${JSON.stringify({ return: { status: 'running', running: true }, id: held[0]?.id })}\r\n`);
      }
    });
    const qmp = await QmpClient.connect(fake.path, { timeoutMs: 2000 });
    expect(fake.received[0]?.execute).toBe('qmp_capabilities');
    const [a, b] = await Promise.all([qmp.queryStatus(), qmp.execute<{ status: string }>('query-status')]);
    expect(a).toEqual({ status: 'running', running: true });
    expect(b.status).toBe('paused');
    const ids = fake.received.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    qmp.close();
  });

  it('turns error replies into QmpCommandError', async () => {
    const fake = await fakeQemu((cmd, sock) =>
      sock.write(`${JSON.stringify({ error: { class: 'GenericError', desc: 'no way' }, id: cmd.id })}\r\n`),
    );
    const qmp = await QmpClient.connect(fake.path);
    const err = await qmp.cont().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect(err).toMatchObject({ command: 'cont', errorClass: 'GenericError', desc: 'no way' });
    qmp.close();
  });

  it('gives a failure the kind its QMP error class says, and containerd the code of that kind', async () => {
    const classes: Record<string, string> = { stop: 'GenericError', cont: 'DeviceNotActive', 'query-status': 'DeviceNotFound' };
    const fake = await fakeQemu((cmd, sock) => {
      if (cmd.execute === 'quit') sock.destroy(); // QEMU gone before it answers
      else sock.write(`${JSON.stringify({ error: { class: classes[cmd.execute], desc: 'refused' }, id: cmd.id })}\r\n`);
    });
    const qmp = await QmpClient.connect(fake.path);
    const failures = [
      await qmp.stop().catch((e: unknown) => e),
      await qmp.cont().catch((e: unknown) => e),
      await qmp.queryStatus().catch((e: unknown) => e),
      await qmp.execute('quit').catch((e: unknown) => e),
    ] as QmpCommandError[];
    expect(failures.map((e) => [e.constructor.name, e.kind])).toEqual([
      ['QmpCommandError', 'internal'],
      ['QmpCommandError', 'failed-precondition'],
      ['QmpCommandError', 'not-found'],
      ['QmpClosedError', 'unavailable'],
    ]);
    // What the containerd shim answers for each (shim/containerd/service.ts turns every error into its wire code).
    expect(failures.map((e) => toTtrpcError(e).code)).toEqual([Code.Internal, Code.FailedPrecondition, Code.NotFound, Code.Unavailable]);
    expect(toTtrpcError(failures[0]).message).toBe('QMP stop failed: GenericError: refused');
    qmp.close();
  });

  it('emits events by name and as "event", but never as its own "error"/"close"', async () => {
    const fake = await fakeQemu(() => undefined);
    const qmp = await QmpClient.connect(fake.path);
    const all: string[] = [];
    qmp.on('event', (e: QmpEvent) => all.push(e.event));
    const shutdown = new Promise<QmpEvent>((r) => qmp.once('SHUTDOWN', r));
    const sock = await fake.peer;
    sock.write('{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\r\n');
    sock.write('{"event": "error", "data": {}}\r\n');
    sock.write('{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}\r\n');
    const ev = await shutdown;
    expect(ev.data).toEqual({ guest: true, reason: 'guest-shutdown' });
    expect(all).toEqual(['STOP', 'error', 'SHUTDOWN']);
    expect(qmp.isClosed).toBe(false);
    qmp.close();
  });

  it('fails pending commands with QmpProtocolError on an oversize line', async () => {
    const fake = await fakeQemu((_cmd, sock) => {
      sock.write(`{"return": "${'x'.repeat(2048)}`); // no newline, over the cap
    });
    const qmp = await QmpClient.connect(fake.path, { maxLineBytes: 1024 });
    const closed = new Promise<Error | undefined>((r) => qmp.once('close', r));
    const err = await qmp.queryStatus().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpProtocolError);
    expect((err as Error).message).toMatch(/1024-byte cap/);
    expect(await closed).toBeInstanceOf(QmpProtocolError);
    expect(qmp.isClosed).toBe(true);
  });

  it('fails with QmpProtocolError on garbage and on non-object JSON', async () => {
    for (const garbage of ['\u001b[2Jnot json at all', '[1,2,3]', '{"neither": true}']) {
      const fake = await fakeQemu((_cmd, sock) => sock.write(`${garbage}\r\n`));
      const qmp = await QmpClient.connect(fake.path);
      const err = await qmp.queryStatus().catch((e: unknown) => e);
      expect(err, garbage).toBeInstanceOf(QmpProtocolError);
      expect((err as Error).message).not.toContain('\u001b');
    }
  });

  it('rejects a server whose first line is not a greeting', async () => {
    const p = sockPath('qmp-bad');
    await listen(p, (sock) => sock.write('{"return": {}}\r\n'));
    await expect(QmpClient.connect(p, { timeoutMs: 1000 })).rejects.toBeInstanceOf(QmpProtocolError);
  });

  it('rejects pending commands when QEMU goes away, and treats that as success for quit', async () => {
    const fake = await fakeQemu((cmd, sock) => {
      if (cmd.execute === 'quit') sock.destroy();
      else if (cmd.execute === 'stop') sock.end();
    });
    const qmp = await QmpClient.connect(fake.path);
    await expect(qmp.quit()).resolves.toBeUndefined();
    await expect(qmp.stop()).rejects.toBeInstanceOf(QmpClosedError);
  });

  it('times out connecting to a socket that never greets', async () => {
    const p = sockPath('qmp-silent');
    await listen(p, () => undefined);
    await expect(QmpClient.connect(p, { timeoutMs: 200 })).rejects.toThrow(/no QMP greeting within 200 ms/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('connectHybridVsock', () => {
  /** A fake hull-vsock-backend: reads `CONNECT <port>\n`, then lets `behave` answer. */
  async function fakeBackend(behave: (port: number, sock: net.Socket, attempt: number) => void): Promise<string> {
    const p = sockPath('vsock');
    let attempt = 0;
    await listen(p, (sock) => {
      let buf = '';
      sock.on('error', () => undefined);
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        const m = /^CONNECT (\d+)\n/.exec(buf);
        if (m) {
          sock.removeAllListeners('data');
          behave(Number(m[1]), sock, attempt++);
        }
      });
    });
    return p;
  }

  it('connects and keeps bytes the guest sent right after the OK line', async () => {
    const p = await fakeBackend((port, sock) => {
      expect(port).toBe(1024);
      sock.write(Buffer.from('OK 1073741824\nhello from the guest'));
      sock.on('data', (d) => sock.write(d)); // echo afterwards
    });
    const s = await connectHybridVsock(p, 1024, 2000);
    const first = await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
    expect(first).toBe('hello from the guest');
    s.write('ping');
    expect(await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())))).toBe('ping');
    s.destroy();
  });

  it('retries while the backend closes the connection (guest not listening), then succeeds', async () => {
    const p = await fakeBackend((_port, sock, attempt) => {
      if (attempt < 3) sock.destroy();
      else sock.write('OK 5\n');
    });
    const t0 = Date.now();
    const s = await connectHybridVsock(p, 52, 5000);
    expect(Date.now() - t0).toBeLessThan(2000);
    s.destroy();
  });

  it('retries while the socket does not exist yet', async () => {
    const p = sockPath('vsock-late');
    setTimeout(() => void listen(p, (sock) => sock.write('OK 1\n')), 100);
    const s = await connectHybridVsock(p, 1024, 3000);
    s.destroy();
  });

  it('gives up at the deadline with AgentUnreachableError and guidance', async () => {
    const p = await fakeBackend((_port, sock) => sock.destroy());
    const t0 = Date.now();
    const err = await connectHybridVsock(p, 1024, 300).catch((e: unknown) => e);
    const elapsed = Date.now() - t0;
    expect(err).toBeInstanceOf(AgentUnreachableError);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1500);
    const e = err as AgentUnreachableError;
    expect(e.attempts).toBeGreaterThan(3);
    expect(e.message).toMatch(/port 1024 .*console\.log/);
    expect(e.lastError).toMatch(/closed the connection/);
  });

  it('treats a non-OK answer or an overlong line as a protocol error, without retrying', async () => {
    const bad = await fakeBackend((_port, sock) => sock.write('ERR nope\n'));
    await expect(connectHybridVsock(bad, 1, 2000)).rejects.toBeInstanceOf(HybridVsockProtocolError);
    const long = await fakeBackend((_port, sock) => sock.write('OK '.padEnd(100, '9')));
    await expect(connectHybridVsock(long, 1, 2000)).rejects.toThrow(/exceeds 32 bytes/);
  });

  it('accepts an OK line that arrives in pieces', async () => {
    const p = await fakeBackend((_port, sock) => {
      sock.write('O');
      setTimeout(() => sock.write('K 77'), 20);
      setTimeout(() => sock.write('\nrest'), 40);
    });
    const s = await connectHybridVsock(p, 9, 2000);
    const data = await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
    expect(data).toBe('rest');
    s.destroy();
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('helper processes', () => {
  function script(name: string, body: string): string {
    const p = path.join(tmp, name);
    writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return p;
  }

  it('waits for the vsock backend READY line and passes the documented command line', async () => {
    const args = path.join(tmp, 'backend-args');
    const bin = script('fake-backend', `echo "$@" > ${args}; echo starting >&2; sleep 0.1; echo READY; exec sleep 30`);
    const dir = mkdtempSync(path.join(tmp, 'sb-'));
    const p = sandboxPaths(dir);
    const opts = { binary: bin, socketPath: p.vhostVsockSock, udsPath: p.vsockSock, guestCid: 3, logFile: p.vsockBackendLog, detached: false };
    const proc = await startVsockBackend(opts);
    expect(readFileSync(args, 'utf8').trim()).toBe(vsockBackendArgs(opts).join(' '));
    expect(vsockBackendArgs(opts)).toEqual(['--socket', p.vhostVsockSock, '--uds-path', p.vsockSock, '--guest-cid', '3']);
    // The worker's uid: the sandbox's VMM uid (docs/confinement.md).
    expect(vsockBackendArgs({ ...opts, workerId: 1_000_000_007 }).slice(-2)).toEqual(['--worker-id', '1000000007']);
    expect(isAlive(proc.record())).toBe(true);
    await proc.terminate(1000);
    expect(isAlive(proc.record())).toBe(false);
  });

  it('reports a backend that dies before READY, quoting its log', async () => {
    const bin = script('dying-backend', 'echo "vhost-user: cannot bind: Address in use" >&2; exit 3');
    const dir = mkdtempSync(path.join(tmp, 'sb-'));
    const p = sandboxPaths(dir);
    const err = await startVsockBackend({
      binary: bin, socketPath: p.vhostVsockSock, udsPath: p.vsockSock, guestCid: 3, logFile: p.vsockBackendLog, detached: false,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HelperStartError);
    expect((err as Error).message).toMatch(/exited \(code 3\) before its READY line[\s\S]*cannot bind/);
  });

  it('kills a backend that never gets ready, at the bound', async () => {
    const pidFile = path.join(tmp, 'slow-pid');
    const bin = script('slow-backend', `echo $$ > ${pidFile}; exec sleep 30`);
    const dir = mkdtempSync(path.join(tmp, 'sb-'));
    const p = sandboxPaths(dir);
    const err = await startVsockBackend({
      binary: bin, socketPath: p.vhostVsockSock, udsPath: p.vsockSock, guestCid: 3, logFile: p.vsockBackendLog, detached: false, timeoutMs: 300,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HelperStartError);
    expect((err as Error).message).toMatch(/timed out after 300 ms/);
    expect(isAlive({ pid: Number(readFileSync(pidFile, 'utf8')) })).toBe(false);
  });

  it('names the Debian package when a binary is missing', async () => {
    const dir = mkdtempSync(path.join(tmp, 'sb-'));
    const p = sandboxPaths(dir);
    const err = await startVirtiofsd({
      binary: '/nonexistent/virtiofsd', socketPath: p.virtiofsdSock, sharedDir: dir, logFile: p.virtiofsdLog, detached: false,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BinaryNotFoundError);
    expect((err as Error).message).toBe('virtiofsd not found at /nonexistent/virtiofsd: install Debian package qemu-system-common');
  });

  it('builds the virtiofsd options this Debian build accepts', () => {
    expect(virtiofsdArgs({ binary: 'x', socketPath: '/s', sharedDir: '/d', logFile: '/l', detached: false })).toEqual([
      '--socket-path=/s', '-o', 'source=/d', '-o', 'cache=auto', '-o', 'sandbox=namespace', '-o', 'modcaps=-mknod:-setfcap',
      '--thread-pool-size=1',
    ]);
  });

  it('bounds virtiofsd to the capabilities it serves files with and those its own sandbox needs (docs/confinement.md)', () => {
    const serving = '+chown,+dac_override,+fowner,+fsetid,+setgid,+setuid';
    expect(virtiofsdPrivileges()).toEqual([`--bounding-set=-all,${serving},+sys_admin,+setpcap`, '--inh-caps=-all', '--no-new-privs']);
    expect(virtiofsdPrivileges('chroot')[0]).toBe(`--bounding-set=-all,${serving},+sys_chroot,+setpcap`);
  });

  it('reads /proc/<pid>/stat past a command name with spaces and parentheses', async () => {
    const odd = path.join(tmp, 'a) b (c');
    writeFileSync(odd, readFileSync('/bin/sleep'), { mode: 0o755 });
    const proc = await HostProcess.spawn({ name: 'odd', path: odd, args: ['30'], logFile: path.join(tmp, 'odd.log'), detached: false });
    const stat = procStat(proc.pid);
    expect(stat?.state).toMatch(/^[RSD]$/);
    expect(stat?.starttime).toBe(proc.startTime);
    expect([stat?.utime, stat?.stime, stat?.rss].every(Number.isInteger)).toBe(true);
    const mine = procStat(process.pid);
    expect(mine?.utime).toBeGreaterThan(0); // this test run has used CPU
    expect(mine?.rss).toBeGreaterThan(0);
    await proc.forceKill();
    expect(procStat(proc.pid)).toBeUndefined(); // reaped: gone
  });

  it('does not signal a recorded pid whose start time no longer matches', async () => {
    const proc = await HostProcess.spawn({ name: 'sleep', path: '/bin/sleep', args: ['30'], logFile: path.join(tmp, 'sleep.log'), detached: true });
    const real = procStartTime(proc.pid);
    expect(real).toBeTypeOf('number');
    const stale = HostProcess.adopt('sleep', { pid: proc.pid, startTime: (real as number) + 1 });
    expect(stale.exited).toBe(true); // treated as gone: a different process now
    stale.signal('SIGKILL');
    expect(isAlive(proc.record())).toBe(true);
    const adopted = HostProcess.adopt('sleep', proc.record());
    expect(adopted.exited).toBe(false);
    await adopted.terminate(1000);
    expect(isAlive(proc.record())).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('small pieces', () => {
  it('reads the host TSC rate only where cpu MHz is the TSC rate', () => {
    const cpuinfo = (flags: string, mhz = '2596.102'): string => {
      const f = path.join(tmp, `cpuinfo-${seq++}`);
      writeFileSync(f, `processor\t: 0\ncpu MHz\t\t: ${mhz}\nflags\t\t: fpu tsc ${flags}\n\nprocessor\t: 1\n`);
      return f;
    };
    expect(hostTscKhz(cpuinfo('constant_tsc nonstop_tsc tsc_known_freq'))).toBe(2596102);
    expect(hostTscKhz(cpuinfo('constant_tsc'))).toBe(2596102);
    expect(hostTscKhz(cpuinfo('constant_tsc aperfmperf'))).toBeUndefined(); // cpu MHz is the current clock there
    expect(hostTscKhz(cpuinfo('nonstop_tsc'))).toBeUndefined();
    expect(hostTscKhz(cpuinfo('constant_tsc', 'garbage'))).toBeUndefined();
    expect(hostTscKhz(path.join(tmp, 'no-cpuinfo'))).toBeUndefined();
  });

  it('finds the repository root from the module location', () => {
    const root = findRepoRoot(path.join(__dirname, '..', '..', 'hypervisor'));
    expect(existsSync(path.join(root, 'docs', 'design.md'))).toBe(true);
    expect(findRepoRoot(path.join(root, 'dist'))).toBe(root);
  });

  it('refuses socket paths that do not fit sockaddr_un', () => {
    expect(() => checkSocketPath(`/run/hull/${'a'.repeat(64)}/vhost-vsock.sock`)).not.toThrow();
    expect(() => checkSocketPath(`/${'a'.repeat(120)}/qmp.sock`)).toThrow(SocketPathTooLongError);
  });

  it('reserves guest CIDs with lock files and takes over stale ones', () => {
    const dir = path.join(tmp, 'cids');
    const a = allocateGuestCid(dir);
    const b = allocateGuestCid(dir);
    expect([a.cid, b.cid]).toEqual([3, 4]);
    a.release();
    expect(allocateGuestCid(dir).cid).toBe(3);
    writeFileSync(path.join(dir, 'cid-5'), '999999999\n'); // dead owner
    expect(allocateGuestCid(dir).cid).toBe(5);
  });

  it('tails a log without passing terminal escapes through', () => {
    const f = path.join(tmp, 'console.log');
    writeFileSync(f, 'one\r\ntwo\n\u001b[31mthree\u001b[0m\n');
    expect(tailLines(f, 2)).toBe('two\n?[31mthree?[0m');
    writeFileSync(f, 'a\u009b2Jb\u009d0;title\u009cc\u0090d\n');
    expect(tailLines(f)).toBe('a?2Jb?0;title?c?d');
    expect(tailLines(path.join(tmp, 'missing.log'))).toBe('');
  });
});
