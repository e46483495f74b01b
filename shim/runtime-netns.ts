// The runtime's network namespace, for the hooks that must run in it (docs/hooks.md). The process that stands for a
// container moves its main thread into the container's network namespace (container-runner.ts), and children inherit
// the forking thread's namespace; so before forking a host hook it steps back into the namespace it started in, and
// returns right after the (synchronous) fork. That namespace is opened when this module is first evaluated: ES module
// imports all run before any of the CLI's code, so before the move.
import { closeSync, fstatSync, openSync, statSync, type Stats } from 'node:fs';
import { enterNetns } from '../native/addon/index.js';

/** fd of the namespace this process started in (-1 where there is no /proc/self/ns/net). */
const runtimeNetnsFd = openQuietly('/proc/self/ns/net');

function openQuietly(path: string): number {
  try {
    return openSync(path, 'r');
  } catch {
    return -1;
  }
}

const sameNamespace = (a: Stats, b: Stats): boolean => a.ino === b.ino && a.dev === b.dev;

/** Runs `fork` (a synchronous spawn) with the main thread in the runtime's network namespace. */
export function inRuntimeNetns<T>(fork: () => T): T {
  if (runtimeNetnsFd < 0 || sameNamespace(statSync('/proc/self/ns/net'), fstatSync(runtimeNetnsFd))) return fork();
  const current = openSync('/proc/self/ns/net', 'r');
  try {
    enterNetns(`/proc/self/fd/${runtimeNetnsFd}`);
    try {
      return fork();
    } finally {
      enterNetns(`/proc/self/fd/${current}`);
    }
  } finally {
    closeSync(current);
  }
}
