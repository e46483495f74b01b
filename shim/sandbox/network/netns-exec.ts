// Runs iproute2 (`ip`, `tc`) inside a network namespace named by a path, through util-linux's nsenter, so the caller
// (the containerd shim, which serves several calls at once) never changes its own namespace.
import { execFile } from 'node:child_process';
import { systemTool } from '../../../hypervisor/system-tool.js';
import { HullError } from '../../errors.js';

export class NetnsCommandError extends HullError {
  constructor(
    readonly argv: string[],
    readonly stderr: string,
  ) {
    super('failed-precondition', `${argv.join(' ')} failed: ${stderr.trim().split('\n')[0] || 'no output'}`);
    this.name = 'NetnsCommandError';
  }
}

/** stdout of `tool args…` run in the namespace at netnsPath; `input` is written to its stdin (batch mode). */
export function inNetns(netnsPath: string, tool: 'ip' | 'tc', args: string[], input?: string): Promise<string> {
  const nsenter = systemTool('nsenter', 'util-linux');
  const binary = systemTool(tool, 'iproute2');
  return new Promise((resolve, reject) => {
    const child = execFile(
      nsenter,
      [`--net=${netnsPath}`, '--', binary, ...args],
      { maxBuffer: 8 * 1024 * 1024, timeout: 10_000 },
      (err, stdout, stderr) => {
        if (err) reject(new NetnsCommandError([tool, ...args], String(stderr) || err.message));
        else resolve(String(stdout));
      },
    );
    // A tool that exits before reading its input (an error) closes the pipe: that is its exit status's to report.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}
