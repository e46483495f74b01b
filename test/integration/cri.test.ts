// Kubernetes through CRI: a kubelet-like client (@grpc/grpc-js, test/helpers/cri-client.ts) drives the CRI plugin of a
// private containerd 1.6 (Debian's) whose runtime handler `hull` is containerd-shim-hull-v2. One pod sandbox with two
// long-running containers, all in one microVM: ExecSync (and a probe that times out), streaming Exec and Attach over
// the CRI stream server's WebSocket (test/helpers/cri-stream.ts), CRI-format logs, stats, a
// containerd restart, the pod's hostname/resolv.conf/shared pid namespace, a container that exits and is restarted,
// StopContainer, StopPodSandbox, RemovePodSandbox; then nothing may be left: no shim, VM, mount, network namespace,
// CNI interface or IPAM lease. Images are built here and imported (no registry); the CNI network is Debian's
// bridge + host-local plugins with every file under the test's temp dir. Needs root, containerd, busybox-static,
// containernetworking-plugins, the guest image and dist/ (npm run build).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { sandboxDirFor } from '../../shim/containerd/address.js';
import { containerdPrerequisites, have, POD_ROOT, podRecords, PrivateContainerd, RUNTIME, until } from '../helpers/containerd.js';
import { fetchWithRetries } from '../helpers/engine-net.js';
import { CriClient, type ContainerConfig, type PodSandboxConfig } from '../helpers/cri-client.js';
import { CriStream, exitCodeOf } from '../helpers/cri-stream.js';
import { prerequisitesMet } from '../helpers/prerequisites.js';
import { cgroupFile, existingCgroupDirs, outsideOf, removeTestParents, vmProcessTree } from '../helpers/host-cgroups.js';

const NS = 'k8s.io'; // the namespace the CRI plugin works in
const HANDLER = 'hull';
const IMAGE = 'docker.io/hull/busybox:latest';
const PAUSE = 'docker.io/hull/pause:latest';
const CNI_BIN = '/usr/lib/cni';
const HOSTNAME = 'hull-cri-pod';
const DNS_SERVER = '10.96.0.10';
/** The first container: output on both streams, then it keeps running; the marker lets container 2's `ps` find it. */
const TALKER = 'echo out-line-1; echo err-line-1 >&2; echo out-line-2; trap "exit 0" TERM; while :; do sleep 1; done # talker-marker';
const LOOPER = 'trap "exit 0" TERM; i=0; while :; do i=$((i+1)); sleep 1; done';

let ctd: PrivateContainerd;
let cri: CriClient;
let work: string; // CNI config, IPAM data, pod logs
let bridge: string;
let linksBefore: string[];
let ipForwardBefore: string;
let hostNetnsDirBefore: boolean;
/** Host directories of the pods this file ran (other suites may run pods of their own at the same time). */
const podDirs: string[] = [];

/** Host network interface names (`ip -o link`: "3: name@peer: <…>"). */
const links = (): string[] =>
  execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter(Boolean);
/** Mount points of network namespace files (what `ip netns add` and CRI's netns pinning leave). */
const nsfsMounts = (): string[] =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(' - nsfs '))
    .map((l) => l.split(' ')[4]!);
const ours = (line: string): boolean => line.includes(ctd.tmp) || podDirs.some((d) => line.includes(d));
const leftovers = (): string[] => ctd.leftovers().filter(ours);
const ourPodRecords = () => podRecords().filter((r) => podDirs.includes(r.dir));
/** A kubelet with the systemd cgroup driver gives the pod a slice as its cgroup parent; CRI then names the sandbox's
 *  cgroup in systemd's form (<slice>:cri-containerd:<id>), which hull's shim recognizes without a flag. */
const CRI_SLICE = `hullcri${process.pid}-pod.slice`;
const criSliceDirs = [`/hullcri${process.pid}.slice/${CRI_SLICE}`, `/hullcri${process.pid}.slice`];
const ipForward = (): string => readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();

function criConfig(): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return [
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${work}/opt"`,
    `[${cri}]`,
    `  sandbox_image = "${PAUSE}"`,
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"', // any free port: never clashes with a node's real CRI
    '  disable_apparmor = true',
    '  enable_selinux = false',
    '  netns_mounts_under_state_dir = true', // pod netns under our state dir, not /var/run/netns
    `[${cri}.containerd]`,
    '  snapshotter = "overlayfs"',
    '  default_runtime_name = "runc"', // as on a real node: pods pick hull by runtime handler (RuntimeClass)
    `[${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${cri}.containerd.runtimes.${HANDLER}]`,
    `  runtime_type = "${RUNTIME}"`,
    `[${cri}.cni]`,
    `  bin_dir = "${CNI_BIN}"`,
    `  conf_dir = "${work}/net.d"`,
    '  max_conf_num = 1',
  ].join('\n');
}

/**
 * bridge + host-local, dual-stack (as containerd's TestPodDualStack): no gateway and no masquerading, so the plugins
 * leave host sysctls and iptables alone. The host reaches the pods through an address of its own on the bridge
 * (makeBridge), outside the ranges the plugin hands out.
 */
function writeCniConfig(): void {
  mkdirSync(path.join(work, 'net.d'), { recursive: true });
  const conflist = {
    cniVersion: '1.0.0',
    name: 'hull-cri-test',
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: false,
        ipMasq: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: '10.99.77.0/24', rangeEnd: '10.99.77.200' }], [{ subnet: 'fd00:99:77::/64', rangeEnd: 'fd00:99:77::c8' }]],
          dataDir: path.join(work, 'ipam'),
        },
      },
    ],
  };
  writeFileSync(path.join(work, 'net.d', '10-hull-cri-test.conflist'), JSON.stringify(conflist, null, 2));
}

const HOST_ON_BRIDGE = { v4: '10.99.77.250', v6: 'fd00:99:77::fa' };

/** The pods' bridge, made before the plugin would, with the host's own addresses on the test's subnets. */
function makeBridge(): void {
  execFileSync('ip', ['link', 'add', 'name', bridge, 'type', 'bridge']);
  execFileSync('ip', ['addr', 'add', `${HOST_ON_BRIDGE.v4}/24`, 'dev', bridge]);
  execFileSync('ip', ['addr', 'add', `${HOST_ON_BRIDGE.v6}/64`, 'dev', bridge, 'nodad']);
  execFileSync('ip', ['link', 'set', bridge, 'up']);
}

const sandboxConfig = (logDirectory: string): PodSandboxConfig => ({
  metadata: { name: 'hull-pod', uid: 'uid-hull-pod-1', namespace: 'default', attempt: 0 },
  hostname: HOSTNAME,
  logDirectory,
  dnsConfig: { servers: [DNS_SERVER], searches: ['default.svc.cluster.local'], options: ['ndots:5'] },
  labels: { app: 'hull-cri-test' },
  // shareProcessNamespace: true
  linux: { securityContext: { namespaceOptions: POD_NAMESPACES } },
});

const POD_NAMESPACES = { network: 'POD', pid: 'POD', ipc: 'POD' } as const;

const containerConfig = (name: string, script: string): ContainerConfig => ({
  metadata: { name, attempt: 0 },
  image: { image: IMAGE },
  command: ['sh', '-c', script],
  logPath: `${name}/0.log`,
  labels: { container: name },
  linux: { securityContext: { namespaceOptions: POD_NAMESPACES } },
});

/** What the kubelet sends for `resources: {limits: {cpu: 500m, memory: 64Mi}}` and `runAsUser: 1000`. */
const LOOPER_MEMORY_LIMIT = 64 << 20;
const LOOPER_UID = 1000;
const looperConfig = (): ContainerConfig => ({
  ...containerConfig('looper', LOOPER),
  linux: {
    resources: { cpuPeriod: 100_000, cpuQuota: 50_000, cpuShares: 512, memoryLimitInBytes: LOOPER_MEMORY_LIMIT, oomScoreAdj: 1000 },
    securityContext: { namespaceOptions: POD_NAMESPACES, runAsUser: { value: LOOPER_UID } },
  },
});

/** The talker as a pod spec with `env` and `workingDir` would have it. */
const talkerConfig = (): ContainerConfig => ({
  ...containerConfig('talker', TALKER),
  envs: [{ key: 'POD_GREETING', value: 'hello from the pod spec' }],
  workingDir: '/tmp',
});

/** CRI's log format: `<RFC3339Nano time> <stdout|stderr> <F|P> <text>`, one line each. */
function parseCriLog(text: string): Array<{ time: string; stream: string; tag: string; line: string }> {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const m = /^(\S+) (stdout|stderr) ([FP]) (.*)$/.exec(l);
      if (!m) throw new Error(`not a CRI log line: ${JSON.stringify(l)}`);
      return { time: m[1]!, stream: m[2]!, tag: m[3]!, line: m[4]! };
    });
}

const text = (b: Buffer): string => b.toString('utf8');

/** containerd's stream server on the address the config gives it, any port, a one-time token per request. */
const streamUrl = (kind: 'exec' | 'attach'): RegExp => new RegExp(`^http://127\\.0\\.0\\.1:\\d+/${kind}/[A-Za-z0-9_-]{8}$`);

/** `kubectl run -it`'s container: a shell on a tty, its stdin kept open for attach. */
const consoleConfig = (): ContainerConfig => ({
  ...containerConfig('console', 'exec sh'),
  stdin: true,
  tty: true,
});

/** Sends `stty size` to a shell on a tty until it answers the size we set. The resize travels apart from stdin, so
 *  the first try may still see the old size, or none (busybox says only `stty: standard input` for a 0x0 pty). */
async function sttySizeBecomes(s: CriStream, rows: number, cols: number): Promise<void> {
  const answers = (): string[] => [...s.stdout.matchAll(/(?:^|\n)(\d+ \d+|stty: [^\r\n]*)\r?\n/g)].map((m) => m[1]!);
  await until(`stty size to say ${rows} ${cols}`, async () => {
    const before = answers().length;
    s.write('stty size\n');
    await s.waitFor('an answer to stty size', () => answers().length > before);
    return answers().at(-1) === `${rows} ${cols}` || undefined;
  });
}

describe.runIf(
  prerequisitesMet('CRI tests', [
    ...containerdPrerequisites(),
    !existsSync(path.join(CNI_BIN, 'bridge')) && 'CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins)',
    !have('ip') && 'ip (apt-get install iproute2)',
  ]),
)(`Kubernetes CRI (containerd 1.6) with runtime handler ${HANDLER}`, () => {
  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'hull-cri-'));
    bridge = `hullcri${process.pid % 100000}`;
    linksBefore = links();
    ipForwardBefore = ipForward();
    hostNetnsDirBefore = existsSync('/var/run/netns');
    writeCniConfig();
    makeBridge();
    ctd = await PrivateContainerd.start(NS, { cri: true, extraConfig: criConfig() });
    await ctd.importBusybox(IMAGE);
    await ctd.importBusybox(PAUSE, { entrypoint: ['sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 1; done'] });
    cri = new CriClient(ctd.sock);
    // A config the CRI plugin rejects still leaves containerd serving, without runtime.v1: say why up front.
    await cri.version().catch((err: unknown) => {
      const why = readFileSync(ctd.log, 'utf8').split('\n').find((l) => l.includes('failed to load plugin io.containerd.grpc.v1.cri'));
      throw new Error(`${String(err)}${why ? `; containerd: ${why}` : ''}`);
    });
  });

  afterEach(async () => {
    // A failed case must not leave its pod (and VM) to the next: stop and remove whatever CRI still has.
    for (const p of (await cri?.listPodSandbox().catch(() => [])) ?? []) {
      await cri.stopPodSandbox(p.id).catch(() => undefined);
      await cri.removePodSandbox(p.id).catch(() => undefined);
    }
  });

  afterAll(async () => {
    cri?.close();
    await ctd?.destroy();
    removeTestParents(criSliceDirs);
    if (bridge && links().includes(bridge)) execFileSync('ip', ['link', 'del', bridge]);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('Version and the imported images through the ImageService', async () => {
    const v = await cri.version();
    expect(v.runtimeName).toBe('containerd');
    expect(v.runtimeApiVersion).toBe('v1');
    expect(v.runtimeVersion).toMatch(/^v?1\.6\./);
    // The CRI plugin learns about imported images from containerd's events.
    const busybox = await until('the CRI image store to show the image', async () => (await cri.imageStatus(IMAGE)) ?? undefined);
    expect(busybox.repoTags).toContain(IMAGE);
    expect(busybox.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await cri.imageStatus(PAUSE)).not.toBeNull();
    expect(await cri.imageStatus('docker.io/hull/absent:latest')).toBeNull();
    const tags = (await cri.listImages()).flatMap((i) => i.repoTags);
    expect(tags).toEqual(expect.arrayContaining([IMAGE, PAUSE]));
  });

  test('a pod with two containers in one microVM: exec, logs, stats, restarts, stop, remove', async () => {
    const logDir = path.join(work, 'pods', 'default_hull-pod_uid-hull-pod-1');
    mkdirSync(logDir, { recursive: true });
    const podConfig = sandboxConfig(logDir);
    podConfig.linux = { ...podConfig.linux, cgroupParent: CRI_SLICE };

    const t0 = Date.now();
    const podId = await cri.runPodSandbox(podConfig, HANDLER);
    podDirs.push(sandboxDirFor(POD_ROOT, NS, podId));
    console.log(`RunPodSandbox (runtime handler ${HANDLER}): ${Date.now() - t0} ms`);
    const status = await cri.podSandboxStatus(podId);
    expect(status.state).toBe('SANDBOX_READY');
    expect(status.runtimeHandler).toBe(HANDLER);
    expect(status.network?.ip).toMatch(/^10\.99\.77\.\d+$/); // CNI ran (the address lives in the host netns for now)
    expect((await cri.listPodSandbox()).map((p) => p.id)).toEqual([podId]);

    const talkerId = await cri.createContainer(podId, talkerConfig(), podConfig);
    await cri.startContainer(talkerId);
    const t1 = Date.now();
    const looperId = await cri.createContainer(podId, looperConfig(), podConfig);
    await cri.startContainer(looperId);
    console.log(`CreateContainer + StartContainer of a second container in the running pod VM: ${Date.now() - t1} ms`);
    for (const id of [talkerId, looperId]) expect((await cri.containerStatus(id)).state).toBe('CONTAINER_RUNNING');
    const listed = await cri.listContainers({ podSandboxId: podId });
    expect(listed.map((c) => c.metadata.name).sort()).toEqual(['looper', 'talker']);

    // One VM for the whole pod: the sandbox and both containers are recorded by one shim with one QEMU.
    const vms = ourPodRecords().filter((r) => r.vm.vmm);
    expect(vms).toHaveLength(1);
    expect(vms[0]!.containers.map((c) => c.id).sort()).toEqual([podId, talkerId, looperId].sort());
    // All of that VM's host processes are in the pod sandbox's cgroup, inside the pod's slice (the later containers'
    // cgroupsPaths are not used on the host); bounded by the VM's size, without the pause container's cpu.shares of 2.
    const podCgroup = `${criSliceDirs[0]}/cri-containerd-${podId}.scope`;
    const podVm = (JSON.parse(readFileSync(path.join(vms[0]!.dir, 'pod.json'), 'utf8')) as { vm: Parameters<typeof vmProcessTree>[0] }).vm;
    const vmTree = vmProcessTree(podVm);
    expect(vmTree.length).toBeGreaterThanOrEqual(4); // QEMU, the vsock broker and worker, virtiofsd (no child: its chroot sandbox)
    expect(vmTree.flatMap((pid) => outsideOf(pid, podCgroup))).toEqual([]);
    expect(cgroupFile(podCgroup, 'memory', existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'memory.max' : 'memory.limit_in_bytes')).toBe(
      String((512 + 192) * 2 ** 20),
    );
    if (!existsSync('/sys/fs/cgroup/cgroup.controllers')) expect(cgroupFile(podCgroup, 'cpu', 'cpu.shares')).toBe('1024');

    // ExecSync: stdout, stderr and the exit code.
    const ex = await cri.execSync(talkerId, ['sh', '-c', 'echo to-out; echo to-err >&2; exit 3'], 30);
    expect({ out: text(ex.stdout), err: text(ex.stderr), code: ex.exitCode }).toEqual({ out: 'to-out\n', err: 'to-err\n', code: 3 });
    // The pod spec's env, workingDir and runAsUser reach the process (its memory limit: see ContainerStats below).
    const env = await cri.execSync(talkerId, ['sh', '-c', 'echo "$POD_GREETING"; pwd'], 30);
    expect(text(env.stdout)).toBe('hello from the pod spec\n/tmp\n');
    expect(text((await cri.execSync(looperId, ['id', '-u'], 30)).stdout)).toBe(`${LOOPER_UID}\n`);

    // A probe that overruns its timeout: CRI kills the exec (SIGKILL through the shim) and says so.
    const probeStarted = Date.now();
    await expect(cri.execSync(talkerId, ['sleep', '1000'], 2)).rejects.toThrow(/timeout 2s exceeded/);
    expect(Date.now() - probeStarted).toBeLessThan(15_000);
    const after = await cri.execSync(talkerId, ['ps', '-o', 'args'], 30);
    expect(text(after.stdout)).not.toContain('sleep 1000');

    // Streaming Exec (kubectl exec -i) through containerd's stream server: stdin in, stdout and stderr on their own
    // channels, the exit code in the v4 status. v4 cannot close stdin alone, so the command reads what it needs.
    const bulk = Buffer.alloc(300_000, 'hull-');
    const execUrl = await cri.exec(talkerId, ['sh', '-c', 'read -r line; echo "stdin said: $line"; head -c 300000 | md5sum; echo to-err >&2; exit 3'], {
      stdin: true,
      stdout: true,
      stderr: true,
    });
    expect(execUrl).toMatch(streamUrl('exec'));
    const piped = await CriStream.open(execUrl);
    piped.write('hello over channel 0\n');
    piped.write(bulk);
    const pipedEnd = await piped.closed;
    const bulkMd5 = createHash('md5').update(bulk).digest('hex');
    expect({ out: pipedEnd.stdout, err: pipedEnd.stderr }).toEqual({ out: `stdin said: hello over channel 0\n${bulkMd5}  -\n`, err: 'to-err\n' });
    expect(pipedEnd.status).toMatchObject({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '3' }] } });
    expect(exitCodeOf(pipedEnd.status)).toBe(3);
    // The URL's token is good for one connection.
    await expect(CriStream.open(execUrl)).rejects.toThrow(/HTTP 404/);
    // `kubectl exec -i … < file` over v4: the client closes the socket after its last byte; containerd then closes
    // the process's stdin (CloseIO through the shim), which must still get every byte before EOF.
    const sinkUrl = await cri.exec(talkerId, ['sh', '-c', 'cat > /tmp/streamed; mv /tmp/streamed /tmp/streamed.done'], { stdin: true, stdout: true });
    const sink = await CriStream.open(sinkUrl);
    sink.write(bulk);
    sink.close();
    const sunk = await until('the exec to get stdin EOF and finish', async () => {
      const r = await cri.execSync(talkerId, ['sh', '-c', 'md5sum < /tmp/streamed.done'], 30);
      return r.exitCode === 0 ? text(r.stdout) : undefined;
    });
    expect(sunk).toBe(`${bulkMd5}  -\n`);
    await cri.execSync(talkerId, ['sh', '-c', 'rm /tmp/streamed.done'], 30);

    // With a tty (kubectl exec -it): a shell on a pty in the guest; a resize message changes what `stty size` says.
    const ttyUrl = await cri.exec(talkerId, ['sh'], { stdin: true, stdout: true, tty: true });
    expect(ttyUrl).toMatch(streamUrl('exec'));
    const tty = await CriStream.open(ttyUrl);
    tty.write('echo tty-$((6 * 7)); [ -t 0 ] && echo stdin-is-a-tty; echo "TERM=$TERM"\n');
    await tty.waitFor('the shell to answer', (s) => /stdin-is-a-tty\r?\n[^]*TERM=xterm/.test(s.stdout));
    expect(tty.stdout).toContain('tty-42'); // the shell's answer, not the pty's echo of what we typed
    tty.resize(123, 45);
    await sttySizeBecomes(tty, 45, 123);
    tty.resize(90, 30);
    await sttySizeBecomes(tty, 30, 90);
    tty.write('exit\n');
    const ttyEnd = await tty.closed;
    expect(ttyEnd.stderr).toBe(''); // the pty merges stderr into stdout
    expect(ttyEnd.status).toEqual({ metadata: {}, status: 'Success' });

    // Attach (kubectl attach -it) to a container started with stdin and a tty: its shell answers, a resize reaches its
    // pty, and when it exits the attach ends and CRI has its exit code.
    const consoleId = await cri.createContainer(podId, consoleConfig(), podConfig);
    await cri.startContainer(consoleId);
    const attachUrl = await cri.attach(consoleId, { stdin: true, stdout: true, tty: true });
    expect(attachUrl).toMatch(streamUrl('attach'));
    const attached = await CriStream.open(attachUrl);
    attached.resize(77, 22);
    attached.write('echo attached-$((6 * 7))\n');
    await attached.waitFor('the attached shell to answer', (s) => s.stdout.includes('attached-42'));
    await sttySizeBecomes(attached, 22, 77);
    attached.write('exit 7\n');
    const attachedEnd = await attached.closed;
    expect(attachedEnd.status.status).toBe('Success'); // Attach reports no exit code; the container status has it
    const consoleDone = await until('the console container to exit', async () => {
      const st = await cri.containerStatus(consoleId);
      return st.state === 'CONTAINER_EXITED' ? st : undefined;
    });
    expect(consoleDone.exitCode).toBe(7);
    await cri.removeContainer(consoleId);

    // Logs: what the talker wrote, in CRI format, at log_directory/log_path.
    const logPath = path.join(logDir, 'talker', '0.log');
    expect((await cri.containerStatus(talkerId)).logPath).toBe(logPath);
    const entries = await until('the talker\'s lines in its CRI log', () => {
      const e = existsSync(logPath) ? parseCriLog(readFileSync(logPath, 'utf8')) : [];
      return e.length >= 3 ? e : undefined;
    });
    // stdout and stderr are separate pipes: each stream keeps its order, not their interleaving.
    expect(entries.filter((e) => e.stream === 'stdout').map((e) => e.line)).toEqual(['out-line-1', 'out-line-2']);
    expect(entries.filter((e) => e.stream === 'stderr').map((e) => e.line)).toEqual(['err-line-1']);
    expect(entries.every((e) => e.tag === 'F')).toBe(true);
    for (const e of entries) expect(Number.isNaN(Date.parse(e.time))).toBe(false);

    // ContainerStats: from the container's cgroup in the guest.
    const stats = await cri.containerStats(looperId);
    expect(stats.attributes?.id).toBe(looperId);
    expect(Number(stats.memory?.availableBytes?.value ?? 0)).toBeGreaterThan(0);
    expect(Number(stats.memory?.availableBytes?.value ?? 0)).toBeLessThanOrEqual(LOOPER_MEMORY_LIMIT);
    expect(Number(stats.cpu?.usageCoreNanoSeconds?.value ?? 0)).toBeGreaterThan(0);
    expect(Number(stats.memory?.workingSetBytes?.value ?? 0)).toBeGreaterThan(0);

    // containerd restarts (an upgrade, a crash): the CRI plugin recovers the pod from the running shim.
    await ctd.stop();
    await ctd.launch();
    expect((await until('CRI to serve again', () => cri.podSandboxStatus(podId).catch(() => undefined))).state).toBe('SANDBOX_READY');
    for (const id of [talkerId, looperId]) expect((await cri.containerStatus(id)).state).toBe('CONTAINER_RUNNING');
    expect(text((await cri.execSync(looperId, ['echo', 'still-here'], 30)).stdout)).toBe('still-here\n');

    // The pod's shared files and namespaces, as Kubernetes sets them up (these need the guest to honour CRI's bind
    // mounts and namespace paths).
    const pod = {
      etcHostname: text((await cri.execSync(talkerId, ['cat', '/etc/hostname'], 30)).stdout).trim(),
      hostname: text((await cri.execSync(talkerId, ['hostname'], 30)).stdout).trim(),
      resolvConf: text((await cri.execSync(talkerId, ['cat', '/etc/resolv.conf'], 30)).stdout),
      psInLooper: text((await cri.execSync(looperId, ['ps'], 30)).stdout),
      etcHosts: text((await cri.execSync(talkerId, ['cat', '/etc/hosts'], 30)).stdout),
      // The pod's /dev/shm is one tmpfs for all its containers (CRI's sandbox shm, ipc POD).
      shmShared: text((await cri.execSync(talkerId, ['sh', '-c', 'echo shm-ok > /dev/shm/probe && chmod 644 /dev/shm/probe'], 30)).stderr) +
        text((await cri.execSync(looperId, ['cat', '/dev/shm/probe'], 30)).stdout),
    };
    expect.soft(pod.etcHostname, '/etc/hostname (CRI bind mount)').toBe(HOSTNAME);
    expect.soft(pod.hostname, 'hostname (the pod UTS namespace)').toBe(HOSTNAME);
    expect.soft(pod.resolvConf, '/etc/resolv.conf (CRI bind mount)').toContain(`nameserver ${DNS_SERVER}`);
    expect.soft(pod.psInLooper, 'ps in the looper (shareProcessNamespace)').toContain('talker-marker');
    expect.soft(pod.etcHosts, '/etc/hosts (CRI bind mount: a copy of the node\'s)').toBe(readFileSync('/etc/hosts', 'utf8'));
    expect.soft(pod.shmShared, '/dev/shm shared by the pod (CRI bind mount)').toBe('shm-ok\n');

    // StopContainer: SIGTERM, the trap exits 0; then the container goes while the pod runs on.
    await cri.stopContainer(looperId, 10);
    const stopped = await cri.containerStatus(looperId);
    expect(stopped.state).toBe('CONTAINER_EXITED');
    expect(stopped.exitCode).toBe(0);
    await cri.removeContainer(looperId);
    expect((await cri.listContainers({ podSandboxId: podId })).map((c) => c.id)).toEqual([talkerId]);
    expect((await cri.containerStatus(talkerId)).state).toBe('CONTAINER_RUNNING');

    // A container that exits on its own, and its restart (attempt 1) as the kubelet does under restartPolicy.
    for (const attempt of [0, 1]) {
      const quitter = { ...containerConfig('quitter', `echo bye-${attempt}; exit 5`), metadata: { name: 'quitter', attempt } };
      quitter.logPath = `quitter/${attempt}.log`;
      const id = await cri.createContainer(podId, quitter, podConfig);
      await cri.startContainer(id);
      const done = await until('the quitter to exit', async () => {
        const s = await cri.containerStatus(id);
        return s.state === 'CONTAINER_EXITED' ? s : undefined;
      });
      expect([done.exitCode, done.reason]).toEqual([5, 'Error']);
      const quitterLog = path.join(logDir, 'quitter', `${attempt}.log`);
      const lines = await until('the quitter\'s line in its log', () => {
        const e = existsSync(quitterLog) ? parseCriLog(readFileSync(quitterLog, 'utf8')) : [];
        return e.length > 0 ? e : undefined;
      });
      expect(lines.map((e) => `${e.stream} ${e.line}`)).toEqual([`stdout bye-${attempt}`]);
      await cri.removeContainer(id);
    }
    expect((await cri.containerStatus(talkerId)).state).toBe('CONTAINER_RUNNING');

    // A container over its memory limit: the guest's OOM killer ends it, and the shim's TaskOOM makes CRI say so
    // (the kubelet's `OOMKilled`). dd touches a 64 MiB buffer at once against 32 MiB.
    const hog: ContainerConfig = {
      ...containerConfig('hog', 'exec dd bs=64M count=1 if=/dev/zero of=/dev/null'),
      linux: { resources: { memoryLimitInBytes: 32 << 20 }, securityContext: { namespaceOptions: POD_NAMESPACES } },
    };
    const hogId = await cri.createContainer(podId, hog, podConfig);
    await cri.startContainer(hogId);
    const oomed = await until('the hog to exit', async () => {
      const st = await cri.containerStatus(hogId);
      return st.state === 'CONTAINER_EXITED' ? st : undefined;
    });
    expect([oomed.exitCode, oomed.reason]).toEqual([137, 'OOMKilled']);
    await cri.removeContainer(hogId);

    const t2 = Date.now();
    await cri.stopPodSandbox(podId);
    console.log(`StopPodSandbox: ${Date.now() - t2} ms`);
    expect((await cri.podSandboxStatus(podId)).state).toBe('SANDBOX_NOTREADY');
    await cri.stopPodSandbox(podId); // the kubelet repeats it; it must stay a no-op
    const killed = await cri.containerStatus(talkerId);
    expect([killed.state, killed.exitCode]).toEqual(['CONTAINER_EXITED', 137]); // StopPodSandbox: SIGKILL, no grace
    await cri.removePodSandbox(podId);
    expect(await cri.listPodSandbox()).toEqual([]);
    expect(await cri.listContainers()).toEqual([]);
    await until('the pod cgroup to be removed', () => (existingCgroupDirs(podCgroup).length === 0 ? true : undefined));
  });

  test('pod network: the guest has the CNI addresses (dual-stack), MAC and MTU; the host and another pod reach the pod IP', async () => {
    const pods = ['web', 'client'].map((name) => {
      const logDir = path.join(work, 'pods', `default_hull-${name}_uid-hull-${name}-1`);
      mkdirSync(logDir, { recursive: true });
      return { ...sandboxConfig(logDir), hostname: `hull-${name}`, metadata: { name: `hull-${name}`, uid: `uid-hull-${name}-1`, namespace: 'default', attempt: 0 } };
    });
    const [webPod, clientPod] = [await cri.runPodSandbox(pods[0]!, HANDLER), await cri.runPodSandbox(pods[1]!, HANDLER)];
    for (const id of [webPod, clientPod]) podDirs.push(sandboxDirFor(POD_ROOT, NS, id));
    const token = `cri-page-${Date.now()}`;
    const web = await cri.createContainer(webPod, containerConfig('web', `mkdir -p /www && echo ${token} > /www/index.html && exec httpd -f -p 8080 -h /www`), pods[0]!);
    const client = await cri.createContainer(clientPod, containerConfig('client', LOOPER), pods[1]!);
    await cri.startContainer(web);
    await cri.startContainer(client);

    const status = await cri.podSandboxStatus(webPod);
    const ip4 = status.network?.ip ?? '';
    const ip6 = status.network?.additionalIps.map((a) => a.ip).find((a) => a.includes(':')) ?? '';
    expect(ip4).toMatch(/^10\.99\.77\.\d+$/);
    expect(ip6).toMatch(/^fd00:99:77::[0-9a-f]+$/);

    // The guest NIC is the pod interface: CNI's addresses, and the MAC and MTU of the veth in the pod's namespace.
    const record = ourPodRecords().find((r) => r.dir === sandboxDirFor(POD_ROOT, NS, webPod));
    const netns = record?.network?.netns ?? '';
    expect(netns).not.toBe('');
    const [veth] = JSON.parse(execFileSync('nsenter', [`--net=${netns}`, 'ip', '-json', 'link', 'show', 'eth0'], { encoding: 'utf8' })) as Array<{ address: string; mtu: number }>;
    const guest = text((await cri.execSync(web, ['ip', 'addr', 'show', 'eth0'], 30)).stdout);
    expect(guest).toContain(`inet ${ip4}/24`);
    expect(guest).toContain(`inet6 ${ip6}/64`);
    expect(guest).toContain(`link/ether ${veth!.address}`);
    expect(guest).toMatch(new RegExp(`mtu ${veth!.mtu} `));

    // From the host (its address on the bridge), and from the other pod on the same bridge, both families.
    expect((await fetchWithRetries(`http://${ip4}:8080/index.html`, 30, 300)).body.trim()).toBe(token);
    expect((await fetchWithRetries(`http://[${ip6}]:8080/index.html`, 30, 300)).body.trim()).toBe(token);
    for (const url of [`http://${ip4}:8080/index.html`, `http://[${ip6}]:8080/index.html`]) {
      const fetched = await cri.execSync(client, ['timeout', '10', 'wget', '-q', '-O', '-', url], 30);
      expect([fetched.exitCode, text(fetched.stdout).trim()]).toEqual([0, token]);
    }

    for (const id of [webPod, clientPod]) {
      await cri.stopPodSandbox(id);
      await cri.removePodSandbox(id);
    }
  });

  test("the pod's shim killed: containers exit, the pod stops and goes, containerd's deletes leave nothing", async () => {
    const logDir = path.join(work, 'pods', 'default_hull-crash_uid-hull-crash-1');
    mkdirSync(logDir, { recursive: true });
    const podConfig = { ...sandboxConfig(logDir), metadata: { name: 'hull-crash', uid: 'uid-hull-crash-1', namespace: 'default', attempt: 0 } };
    const podId = await cri.runPodSandbox(podConfig, HANDLER);
    const podDir = sandboxDirFor(POD_ROOT, NS, podId);
    podDirs.push(podDir);
    const id = await cri.createContainer(podId, containerConfig('looper', LOOPER), podConfig);
    await cri.startContainer(id);
    const record = ourPodRecords().find((r) => r.dir === podDir && r.vm.vmm);
    expect(record?.containers.map((c) => c.id).sort()).toEqual([podId, id].sort());

    process.kill(record!.shimPid, 'SIGKILL');
    // containerd runs `containerd-shim-hull-v2 delete` once per task of the dead shim, both at once.
    const exited = await until('the container to exit', async () => {
      const s = await cri.containerStatus(id);
      return s.state === 'CONTAINER_EXITED' ? s : undefined;
    });
    expect(exited.exitCode).not.toBe(0);
    // The sandbox's own TaskExit is a separate event, which containerd's CRI may handle after the container's.
    await until('the pod to stop', async () => ((await cri.podSandboxStatus(podId)).state === 'SANDBOX_NOTREADY' ? true : undefined), 20_000);
    await cri.stopPodSandbox(podId);
    await cri.removePodSandbox(podId);
    await until('cleanup', () => (existsSync(podDir) || leftovers().length > 0 ? undefined : true), 15_000).catch(() => undefined);
    expect(ourPodRecords()).toEqual([]);
    expect(existsSync(podDir), `${podDir} left behind`).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  test("kill <sandbox task pid> (containerd's TestSandboxRemoveWithoutIPLeakage): the pid is the pod's QEMU; the pod stops, is removed, and its IP is released", async () => {
    const logDir = path.join(work, 'pods', 'default_hull-killed_uid-hull-killed-1');
    mkdirSync(logDir, { recursive: true });
    const podConfig = { ...sandboxConfig(logDir), metadata: { name: 'hull-killed', uid: 'uid-hull-killed-1', namespace: 'default', attempt: 0 } };
    const podId = await cri.runPodSandbox(podConfig, HANDLER);
    const podDir = sandboxDirFor(POD_ROOT, NS, podId);
    podDirs.push(podDir);
    const record = ourPodRecords().find((r) => r.dir === podDir && r.vm.vmm);
    const tasks = await ctd.ctr(['task', 'ls']);
    const pid = Number(tasks.stdout.split('\n').find((l) => l.startsWith(podId))?.split(/\s+/)[1]);
    expect(pid).toBe(record?.vm.vmm);
    const leases = path.join(work, 'ipam', 'hull-cri-test');
    const leased = (): string[] => (existsSync(leases) ? readdirSync(leases).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []);
    expect(leased().length).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    await until('the pod to stop', async () => ((await cri.podSandboxStatus(podId)).state === 'SANDBOX_NOTREADY' ? true : undefined), 20_000);
    await cri.stopPodSandbox(podId);
    await cri.removePodSandbox(podId);
    await until('cleanup', () => (existsSync(podDir) || leftovers().length > 0 ? undefined : true), 15_000).catch(() => undefined);
    expect(leased()).toEqual([]);
    expect(ourPodRecords()).toEqual([]);
    expect(leftovers()).toEqual([]);
  });

  test('leak check: no shim, VM, mount, netns, CNI interface, IPAM lease or host sysctl change', async () => {
    expect(podDirs).not.toEqual([]);
    await until('no leftovers', () => (leftovers().length === 0 ? true : undefined), 15_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
    expect(ourPodRecords()).toEqual([]);
    for (const d of podDirs) expect(existsSync(d), d).toBe(false);
    expect(nsfsMounts().filter((m) => m.startsWith(ctd.tmp) || m.startsWith('/var/run/netns') || m.startsWith('/run/netns'))).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(work);
    // The bridge device is the network's (the plugin keeps it across pods); every veth of the pod is gone.
    expect(links().filter((l) => l !== bridge && !linksBefore.includes(l))).toEqual([]);
    const leases = path.join(work, 'ipam', 'hull-cri-test');
    expect(existsSync(leases) ? readdirSync(leases).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []).toEqual([]);
    expect(ipForward()).toBe(ipForwardBefore);
    expect(existsSync('/var/run/netns')).toBe(hostNetnsDirBefore); // the netns lived under our state dir
    // libcni caches each ADD result under /var/lib/cni/results (containerd 1.6 has no setting for it); DEL removes it.
    const cniCache = '/var/lib/cni/results';
    expect(existsSync(cniCache) ? readdirSync(cniCache).filter((f) => f.startsWith('hull-cri-test-')) : []).toEqual([]);
  });
});
