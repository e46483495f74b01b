// The guest agent's start-up, shared by its two entry points: agent/main.ts (the ESM bundle dist/agent.mjs, run as
// `node agent.mjs`) and agent/snapshot.ts (a Node start-up snapshot built at image build time: everything that
// prepareAgent() does is already in the heap when the guest's Node starts, see guest-image/README.md).
//
//   node agent.mjs [--vsock-port 1024] [--listen-unix <path>] [--helper /hull/hull-container-init]
//                  [--cgroup-root /sys/fs/cgroup | --no-cgroups] [--log-level info] [--key-file <path>]
//
// Environment: HULL_AGENT_HELPER, HULL_AGENT_CGROUP_ROOT, HULL_AGENT_LOG_LEVEL stand in for the flags.
// Every connection must first prove it holds the VM's agent key (agent/host-auth.ts), read from --key-file (default:
// the fw_cfg file QEMU gives the guest); without a key the agent exits.
// DestroySandbox powers the machine off only when the agent is PID 1; otherwise it just exits.
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { parseArgs } from 'node:util';
import type { Duplex } from 'node:stream';
import { vsockListen } from '../native/addon/index.js';
import { GUEST_AGENT_KEY_PATH } from '../protocol/agent-auth.js';
import { agentService, methodTypes } from '../protocol/proto.js';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse } from '../protocol/ttrpc/envelope.js';
import { TtrpcServer } from '../protocol/ttrpc/server.js';
import type { SetupNetworkRequest } from '../protocol/agent-types.js';
import { CgroupManager } from './cgroups.js';
import { networkSteps, renderScript } from './network.js';
import { checkNetworkRequest } from './network-check.js';
import { readAgentKeyFile, serveProven } from './host-auth.js';
import { createLogger, kernelDebugFlag } from './logger.js';
import { installProcessGuards } from './pid1.js';
import { powerOffMachine, syncFilesystems } from './power.js';
import { AgentService } from './service.js';
import { AGENT_VERSION } from './version.js';
import { warmUpContainerPaths } from './warm-up.js';

/**
 * Work that needs no process state (no fds, timers, environment or arguments), done before runAgent(): parsing the
 * agent API's .proto, and one encode/decode of every request, response and envelope type, so that protobufjs has
 * generated (and V8 compiled) their codecs before the first call. In a start-up snapshot this runs at build time;
 * without one, it moves that work from the host's first call (Health, on the boot path) to before listening.
 */
export function prepareAgent(): void {
  const service = agentService();
  for (const name of Object.keys(service.methods)) {
    const { requestType, responseType } = methodTypes(service, name);
    for (const type of [requestType, responseType]) type.decode(type.encode(type.fromObject({})).finish());
  }
  const payload = Buffer.alloc(1);
  decodeRequest(encodeRequest({ service: service.fullName, method: 'Health', payload, timeoutNano: 0, metadata: [] }));
  decodeResponse(encodeResponse({ payload }));
  decodeResponse(encodeResponse({ status: { code: 2, message: 'x' }, payload: Buffer.alloc(0) }));
  // A pod's network: its nested message types (empty above) and the checks, so the first SetupNetwork is served warm.
  const network = methodTypes(service, 'SetupNetwork').requestType;
  const sample = network.toObject(network.decode(network.encode(network.fromObject(NETWORK_SAMPLE)).finish())) as SetupNetworkRequest;
  renderScript(networkSteps(checkNetworkRequest(sample), new Map([[NETWORK_SAMPLE.interfaces[0]!.mac, { name: 'eth0', mtu: 1500 }]])));
  warmUpContainerPaths();
}

const NETWORK_SAMPLE: SetupNetworkRequest = {
  interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01', mtu: 1500, addresses: [{ family: 4, address: '192.0.2.2', prefixLength: 24 }, { family: 6, address: '2001:db8::2', prefixLength: 64 }] }],
  routes: [{ family: 4, destination: 'default', gateway: '192.0.2.1', device: 'eth0', scope: '', metric: 0, source: '' }],
  neighbors: [{ family: 4, address: '192.0.2.9', mac: '02:00:00:00:00:09', device: 'eth0' }],
};

/**
 * Serves the agent. `marks`: start-up times (ms since the process started, performance.now()) to report under
 * hull.debug=1 once listening, with the guest's uptime.
 */
export function runAgent(argv: string[], marks: Record<string, number> = {}): void {
  marks['run'] = performance.now();
  const { values: args } = parseArgs({
    args: argv,
    options: {
      'vsock-port': { type: 'string', default: '1024' },
      'listen-unix': { type: 'string' },
      helper: { type: 'string', default: process.env.HULL_AGENT_HELPER ?? '/hull/hull-container-init' },
      'cgroup-root': { type: 'string', default: process.env.HULL_AGENT_CGROUP_ROOT ?? '/sys/fs/cgroup' },
      'no-cgroups': { type: 'boolean', default: false },
      'log-level': { type: 'string', default: process.env.HULL_AGENT_LOG_LEVEL ?? (kernelDebugFlag() ? 'debug' : 'info') },
      'key-file': { type: 'string', default: GUEST_AGENT_KEY_PATH },
    },
    strict: true,
  });

  const pid1 = process.pid === 1;
  const log = createLogger(args['log-level']!);
  const stopHandlers: Array<() => void> = [];
  installProcessGuards(log, { pid1, onStop: () => stopHandlers.forEach((h) => h()) });

  let key: Buffer;
  try {
    key = readAgentKeyFile(args['key-file']!);
  } catch (err) {
    // As PID 1 this panics the guest, which ends the VM at once: the host's boot fails with this line on the console.
    log.fatal({ err: (err as Error).message }, 'no agent key; refusing to serve');
    process.exit(1);
  }

  const cgroups = args['no-cgroups'] ? null : new CgroupManager(args['cgroup-root']);
  if (cgroups && !cgroups.available()) log.warn({ root: cgroups.root }, 'no cgroup hierarchy; containers run without limits');

  const service = new AgentService({
    helperPath: args.helper!,
    cgroups: cgroups?.available() ? cgroups : null,
    log,
    sync: pid1 ? syncFilesystems : undefined,
    spareHelper: true,
    powerOff: () => {
      if (pid1) powerOffMachine(log);
      else process.exit(0); // never power off the host a test runs on
    },
  });

  const server = new TtrpcServer({
    onHandlerError: (err, _service, method) =>
      log.error({ method, err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'handler failed'),
  });
  server.registerService(agentService(), service.handlers());
  stopHandlers.push(() => void service.close());
  marks['ready'] = performance.now();

  function serve(stream: Duplex, peer: string): void {
    log.debug({ peer }, 'connection');
    stream.on('error', (err) => log.debug({ peer, err: err.message }, 'connection error'));
    serveProven(stream, key, (s) => server.serve(s), (err) => log.warn({ peer, err: err.message }, 'connection refused: no proof of the agent key'));
  }

  const listenUnix = args['listen-unix'];
  if (listenUnix) {
    if (existsSync(listenUnix)) unlinkSync(listenUnix);
    const unix = net.createServer((sock) => serve(sock, 'unix'));
    unix.on('error', (err) => log.error({ err: err.message }, 'unix listener failed'));
    unix.listen(listenUnix, () => log.info({ path: listenUnix, version: AGENT_VERSION }, 'agent listening'));
    stopHandlers.push(() => unix.close());
  } else {
    listenVsock(Number(args['vsock-port']));
  }

  function logStartup(): void {
    if (!log.isLevelEnabled('debug')) return;
    marks['listening'] = performance.now();
    let uptime = NaN;
    try {
      uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
    } catch {
      // not Linux: no uptime
    }
    const ms = Object.fromEntries(Object.entries(marks).map(([k, v]) => [k, Math.round(v)]));
    log.debug({ ms, processStartUptime: +(uptime - marks['listening']! / 1000).toFixed(3), uptime }, 'agent start-up');
  }

  /** The vsock transport module may still be settling when the agent starts: retry for a while before giving up. */
  function listenVsock(port: number, attempt = 1): void {
    try {
      const l = vsockListen(port);
      l.on('connection', (s) => serve(s, `vsock:${s.remoteCid ?? '?'}`));
      l.on('error', (err) => log.warn({ err: err.message }, 'vsock accept failed'));
      log.info({ port, version: AGENT_VERSION }, 'agent listening on vsock');
      logStartup();
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (attempt >= 50) {
        log.fatal({ port, code: e.code, err: e.message }, 'cannot listen on vsock; the host cannot reach this agent');
        // As PID 1 this panics the guest, which (panic=-1, -no-reboot) ends the VM at once: the host fails fast and
        // the line above is the last one on the console.
        process.exit(1);
      }
      setTimeout(() => listenVsock(port, attempt + 1), 200);
    }
  }
}
