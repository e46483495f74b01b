// hypervisor/vcpu-report.ts: reading where a silent guest's vCPUs are (the error of a boot that never answered).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuSecondsOfStat, describeVcpus, parseRegisters, processAgeSeconds, vcpuThreadSeconds } from '../../hypervisor/vcpu-report.js';
import { tempDir } from '../helpers/hull.js';

// The shape of QEMU 7.2's `info registers -a` over QMP (x86_cpu_dump_state; lines end in \r\n).
const registers = (cpu: number, rip: string, hlt: 0 | 1): string =>
  `\r\nCPU#${cpu}\r\nRAX=0000000000000000 RBX=ffffffff82a10940 RCX=0000000000000001 RDX=0000000000000000\r\n` +
  `RIP=${rip} RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=${hlt}\r\nES =0000 0000000000000000 00000000 00000000\r\n`;

/** A /proc/<pid>/task/<tid>/stat line whose name has spaces and a parenthesis, as QEMU's thread names can. */
const stat = (utime: number, stime: number, start = 500): string =>
  `4242 (CPU 0/TCG) S 1 4242 4242 0 -1 4194368 10 0 0 0 ${utime} ${stime} 0 0 20 0 5 0 ${start} 1000 100`;

describe('vCPU report', () => {
  it('reads each vCPU of info registers -a: instruction pointer and halted', () => {
    const text = registers(0, 'ffffffff81C3F2A0', 1) + registers(1, 'ffffffff810fa7b0', 0);
    expect(parseRegisters(text)).toEqual([
      { cpu: 0, rip: 'ffffffff81c3f2a0', halted: true },
      { cpu: 1, rip: 'ffffffff810fa7b0', halted: false },
    ]);
  });

  it('takes the 32-bit EIP of a vCPU not yet in long mode, and a text without CPU headers as vCPU 0', () => {
    expect(parseRegisters('EAX=00000000\r\nEIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0\r\n')).toEqual([
      { cpu: 0, rip: '0000fff0', halted: false },
    ]);
  });

  it('finds nothing in a reply that is not register state', () => {
    expect(parseRegisters('')).toEqual([]);
    expect(parseRegisters('unknown command: info\r\n')).toEqual([]);
  });

  it('adds utime and stime of a stat line whose name holds spaces and parentheses', () => {
    expect(cpuSecondsOfStat(stat(390, 12))).toBeCloseTo(4.02);
    expect(cpuSecondsOfStat('4242 (x) S')).toBeUndefined();
  });

  it('finds the vCPU threads by name among a process tree of /proc', () => {
    const proc = tempDir('hull-vcpu-proc-');
    const thread = (tid: number, name: string, line: string): void => {
      const dir = path.join(proc, '77', 'task', String(tid));
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, 'comm'), `${name}\n`);
      writeFileSync(path.join(dir, 'stat'), line);
    };
    thread(77, 'qemu-system-x86', stat(50, 50));
    thread(78, 'CPU 0/TCG', stat(900, 100));
    thread(79, 'CPU 1/KVM', stat(5, 5));
    writeFileSync(path.join(proc, '77', 'stat'), stat(50, 50, 1000));
    writeFileSync(path.join(proc, 'uptime'), '110.00 200.00\n');
    expect(Object.fromEntries(vcpuThreadSeconds(77, proc))).toEqual({ 0: 10, 1: 0.1 });
    expect(processAgeSeconds(77, proc)).toBe(100);
    expect(vcpuThreadSeconds(78, proc).size).toBe(0); // no such process
  });

  it('says, per vCPU, where it is and how much host CPU it used', () => {
    expect(describeVcpus([{ cpu: 0, rip: 'ffffffff81c3f2a0', halted: true }], new Map([[0, 3.94]]), 96.2)).toBe(
      'vCPU 0 halted at rip ffffffff81c3f2a0, 3.9 s of host CPU in 96 s',
    );
    expect(describeVcpus([], new Map([[0, 88]]), undefined)).toBe('vCPU 0 registers unknown, 88.0 s of host CPU');
    expect(describeVcpus([], new Map(), 10)).toBe('');
  });
});
