// Host-wide admission of cold VM boots: at most N boots run at once on a host, across every hull process (each
// `hull run`/`create` monitor, each containerd shim, `hull pool serve`); the others wait for a slot. Booting is the
// CPU-heavy part of a VM's life (under TCG a boot takes whole CPUs for seconds), so N boots at a time each finish in
// about their own time, where 20 at once on 2 CPUs all miss the agent timeout together.
//
// A slot is a listening Linux abstract Unix socket named `\0hull-boot-slot-<scope>-<i>`, i < N. Why that primitive:
// bind() on an abstract name is exclusive while the socket is open, and the kernel frees the name the moment its
// holder dies (kill -9 included), so a dead holder can never keep a slot, and nothing is ever written to disk that a
// crash could leave behind (a pid lock file needs a liveness check and a racy takeover; Node has no flock). A waiter
// holds nothing at all (a timer), so a waiter that is cancelled or killed leaves nothing. Waiters retry every ~100 ms
// rather than line up: no strict order, but every wait is bounded. The names are per host, not per --root: the CPUs
// are the host's, and the CLI and the containerd shims use different roots.
//
// Abstract names live in a network namespace, and `hull run` boots from inside the container's namespace
// (shim/runc/container-runner.ts joinNetwork): the slot socket is therefore always bound in the namespace the process
// started in — the host's, for every front end (the CLI as engines start it, containerd's shims, the pool server) —
// stepping the main thread there for the synchronous socket()+bind()+listen() and back (shim/runtime-netns.ts,
// which the host hooks use the same way). Not /proc/1/ns/net: reading it may be refused even to root (it is here).
// Abstract names carry no permissions, so any local process can bind one: a name held by a process that does not
// run as this one's uid (SO_PEERCRED of the listener, read by connecting to it) does not count as a slot, and the
// search goes on to the names past N, so a squatter can neither stall boots nor make them skip the queue.
import { createConnection, createServer, type Server } from 'node:net';
import { HullError } from '../errors.js';
import { peerCredentials } from '../peercred.js';
import { inRuntimeNetns } from '../runtime-netns.js';

/** Slots held by hull itself: the tests pass scopes of their own so they never contend with real boots. */
export const HOST_SCOPE = 'host';

export interface BootSlotOptions {
  /** How many boots may run at once (vm.max_concurrent_boots). */
  slots: number;
  /** How long to wait for a slot before failing. */
  waitMs: number;
  scope?: string;
  /** What boots, for the timeout error ("sandbox abc"). */
  what?: string;
  /** Called once if every slot is taken at the first try: the boot queues. */
  onQueued?: () => void;
  /** Aborting while waiting rejects with the signal's reason; nothing is held then. */
  signal?: AbortSignal;
  /** Between two rounds of attempts (jittered ±50 %): the wake-up latency when a slot frees. */
  pollMs?: number;
}

export interface BootSlot {
  index: number;
  /** How long the caller waited for it. */
  waitedMs: number;
  /** Frees the slot; idempotent. */
  release(): void;
}

/** No slot freed within the wait limit: every slot was held by another boot all along. */
export class BootQueueTimeoutError extends HullError {
  constructor(
    readonly what: string,
    readonly slots: number,
    readonly waitedMs: number,
  ) {
    super(
      'unavailable',
      `${what} could not boot: no VM boot slot freed within ${Math.round(waitedMs / 1000)} s: ${slots} boot(s) at a time ` +
        `(vm.max_concurrent_boots) were all taken by other hull processes the whole time`,
    );
    this.name = 'BootQueueTimeoutError';
  }
}

export const slotName = (scope: string, index: number): string => `\0hull-boot-slot-${scope}-${index}`;

/** Waits for one of the host's `slots` boot slots and holds it until released (or this process exits). */
export async function acquireBootSlot(options: BootSlotOptions): Promise<BootSlot> {
  const { slots, waitMs, scope = HOST_SCOPE, what = 'a VM', signal, onQueued, pollMs = 100 } = options;
  if (!Number.isSafeInteger(slots) || slots < 1) throw new HullError('invalid-argument', `boot slots must be a whole number ≥ 1, got ${slots}`);
  const started = Date.now();
  // Start at a random slot so waiters do not all contend for slot 0 first.
  const offset = Math.floor(Math.random() * slots);
  let queued = false;
  for (;;) {
    signal?.throwIfAborted();
    let heldByOurs = 0;
    for (let k = 0; k < slots + MAX_SQUATTED && heldByOurs < slots; k++) {
      // The first N names in a rotated order, then the ones past N that only a squatter makes us use.
      const index = k < slots ? (offset + k) % slots : k;
      const name = slotName(scope, index);
      const server = await tryHold(name);
      if (!server) {
        if (await heldBySameUser(name)) heldByOurs++;
        continue;
      }
      if (signal?.aborted) {
        server.close();
        signal.throwIfAborted();
      }
      let held = true;
      return {
        index,
        waitedMs: Date.now() - started,
        release: () => {
          if (held) server.close();
          held = false;
        },
      };
    }
    if (!queued) onQueued?.();
    queued = true;
    const waited = Date.now() - started;
    if (waited >= waitMs) throw new BootQueueTimeoutError(what, slots, waited);
    await pause(Math.min(pollMs * (0.5 + Math.random()), waitMs - waited), signal);
  }
}

/** How many names held by other users the search steps over before it counts the rest as taken. */
const MAX_SQUATTED = 64;

/**
 * Whether the listener on `name` runs as our uid (another hull boot), read by connecting to it. A name whose
 * listener vanished meanwhile counts as held for this round; one whose peer cannot be read (no addon) counts as ours.
 */
function heldBySameUser(name: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = inRuntimeNetns(() => createConnection({ path: name }));
    const done = (ours: boolean): void => {
      conn.destroy();
      resolve(ours);
    };
    conn.once('connect', () => done((peerCredentials(conn)?.uid ?? process.geteuid?.()) === process.geteuid?.()));
    conn.once('error', () => done(true));
  });
}

/** A server listening on `name`, or undefined when another socket has it. */
function tryHold(name: string): Promise<Server | undefined> {
  return new Promise((resolve, reject) => {
    // Nobody has a reason to connect; whoever does is shown the door.
    const server = createServer((conn) => conn.destroy());
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(undefined) : reject(err)));
    server.once('listening', () => {
      server.unref(); // a held slot never keeps the process alive by itself
      resolve(server);
    });
    // listen() on a path creates, binds and listens synchronously (errors are emitted later), so the socket is the
    // start namespace's even though the thread steps back at once.
    inRuntimeNetns(() => server.listen({ path: name, exclusive: true }));
  });
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
