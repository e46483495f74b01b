// What the sandbox of a running hull-vsock-backend looks like from /proc (native/vsock-backend/sandbox.h): the
// process we started is the broker, its only child the worker; both run with no capabilities, no_new_privs and a
// seccomp filter, and the worker under the unprivileged worker uid when started as root (65534, or --worker-id: hull
// passes the sandbox's VMM uid).
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';

export const WORKER_ID = 65534;

function status(pid: number): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (m) fields.set(m[1]!, m[2]!);
  }
  return fields;
}

/** The worker's pid: the broker's only child. */
export function workerPidOf(brokerPid: number): number {
  const children = readFileSync(`/proc/${brokerPid}/task/${brokerPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  expect(children, 'the broker should have exactly one child, the worker').toHaveLength(1);
  return Number(children[0]);
}

/** Asserts the sandbox of both processes (the worker's uid and gid `workerId`); returns the worker's pid. */
export function expectSandboxed(brokerPid: number, workerId = WORKER_ID): number {
  const workerPid = workerPidOf(brokerPid);
  const startedAsRoot = process.getuid?.() === 0;
  for (const [role, pid] of [['broker', brokerPid], ['worker', workerPid]] as const) {
    const s = status(pid);
    const what = `${role} (pid ${pid})`;
    expect(s.get('NoNewPrivs'), what).toBe('1');
    expect(s.get('Seccomp'), what).toBe('2');
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
      expect(s.get(set), `${what} ${set}`).toBe('0000000000000000');
    }
    if (role === 'worker' && startedAsRoot) {
      expect(s.get('Uid'), what).toBe(`${workerId}\t${workerId}\t${workerId}\t${workerId}`);
      expect(s.get('Gid'), what).toBe(`${workerId}\t${workerId}\t${workerId}\t${workerId}`);
      expect(s.get('Groups'), what).toBe('');
    }
  }
  return workerPid;
}
