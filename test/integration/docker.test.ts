// Docker 20.10 (Debian's docker.io) with hull registered in daemon.json `runtimes`, as a user runs it:
// `docker run --runtime hull …` under Docker's own exec root layout (so hull gets `--root <exec-root>/runtime-runc/moby`
// and 64-hex ids: its socket paths must not depend on them). Without a network: the guest's kernel answers, exit codes
// and stdout/stderr come back, `run -d` + `exec` + `stop` + `rm` leave nothing. Then issue 8's case: a busybox httpd
// published with `-p 127.0.0.1:PORT:8080` on the daemon's (test-owned) bridge and fetched from the host with Node's
// http client; first with runc, which shows that the harness's network serves `-p` (docker-proxy, no iptables), then
// with hull. `--network host` is refused. The daemon is private and its network keeps every packet on this machine
// (test/helpers/docker.ts).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fetchWithRetries, netnsReport } from '../helpers/engine-net.js';
import { dockerPrerequisites, PrivateDockerd, RUNTIME } from '../helpers/docker.js';
import { hullBin, leaks, makeBundle, noLeaks, repo, tempDir } from '../helpers/hull.js';
import { freePort, randomToken } from '../helpers/podman.js';
import { prerequisitesMet } from '../helpers/prerequisites.js';

const IMAGE = 'hull-busybox:test';
const TOKEN = randomToken();
const FORWARDING_WARNING = 'WARNING: IPv4 forwarding is disabled. Networking will not work.\n';

let dockerd: PrivateDockerd;

const guestKernel = (): string =>
  (JSON.parse(readFileSync(path.join(repo, 'build', 'guest', 'current', 'manifest.json'), 'utf8')) as { kernelRelease: string }).kernelRelease;

/** Until `docker logs` of `name` shows `line` (bounded). */
async function waitForLog(name: string, line: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await dockerd.docker(['logs', name]);
    if (r.stdout.split('\n').includes(line)) return;
    if (Date.now() > deadline) throw new Error(`${name} did not print "${line}" in ${timeoutMs} ms: ${r.stdout}${r.stderr}`);
    await new Promise((res) => setTimeout(res, 300));
  }
}

/**
 * Runs `hull run` inside a network namespace made here, on a bundle whose spec names that same namespace, the shape
 * Docker's `--network host` gives hull. A hull that refuses it exits at once; one that does not can only mirror this
 * throwaway namespace's loopback (nothing), so the probe never touches the host's interfaces.
 */
async function probeOwnNetnsRefusal(): Promise<{ refused: boolean; detail: string }> {
  const name = `hulldkprobe${process.pid % 100000}`;
  const netnsDirExisted = existsSync('/run/netns');
  const work = tempDir('hull-dkprobe-');
  const probeRoot = path.join(work, 'root');
  const sh = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 90_000 });
  const added = sh('ip', ['netns', 'add', name]);
  if (added.status !== 0) throw new Error(`ip netns add ${name}: ${added.stderr}`);
  try {
    const bundle = makeBundle(path.join(work, 'bundle'), ['true'], (spec) => {
      spec.linux.namespaces = [
        ...spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'network'),
        { type: 'network', path: `/run/netns/${name}` },
      ];
    });
    const r = sh('nsenter', [`--net=/run/netns/${name}`, hullBin, '--root', probeRoot, 'run', '--bundle', bundle, 'probe']);
    expect(leaks(probeRoot)).toEqual(noLeaks);
    return { refused: r.status !== 0 && /host network/i.test(r.stderr), detail: `exit ${r.status}, stderr ${JSON.stringify(r.stderr.trim())}` };
  } finally {
    sh('ip', ['netns', 'del', name]);
    if (!netnsDirExisted && existsSync('/run/netns') && readdirSync('/run/netns').length === 0) rmdirSync('/run/netns');
    rmSync(work, { recursive: true, force: true });
  }
}

describe.runIf(prerequisitesMet('docker tests', dockerPrerequisites()))('Docker 20.10 with hull registered as a runtime', () => {
  beforeAll(async () => {
    dockerd = await PrivateDockerd.start();
    await dockerd.importBusybox(IMAGE, { 'www/index.html': `hull-docker ${TOKEN}\n` });
  });

  afterAll(async () => {
    if (!dockerd) return;
    await dockerd.destroy();
    expect(dockerd.leftovers()).toEqual([]);
  });

  test('the private daemon lists hull among its runtimes and works the way the tests need', async () => {
    const runtimes = await dockerd.dockerOk(['info', '--format', '{{json .Runtimes}}']);
    expect(Object.keys(JSON.parse(runtimes) as Record<string, unknown>)).toContain(RUNTIME);
    // Docker's layout gives hull a root and ids whose socket paths would not fit a Unix socket address.
    expect(path.join(dockerd.hullRoot, 'f'.repeat(64), 'vhost-vsock.sock').length).toBeGreaterThan(107);
  });

  test('docker run --rm --runtime hull --network none: the guest kernel answers', async () => {
    const r = await dockerd.docker(['run', '--rm', '--runtime', RUNTIME, '--network', 'none', IMAGE, 'uname', '-r']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`${guestKernel()}\n`);
    expect(r.stdout.trim()).not.toBe(os.release());
    expect(r.code).toBe(0);
    expect(dockerd.leftovers()).toEqual([]);
  });

  test('exit codes, stdout and stderr come back; stdin reaches the container', async () => {
    const r = await dockerd.docker(['run', '--rm', '--runtime', RUNTIME, '--network', 'none', IMAGE, 'sh', '-c', 'echo out; echo err >&2; exit 42']);
    expect([r.code, r.stdout, r.stderr]).toEqual([42, 'out\n', 'err\n']);
    const wc = await dockerd.docker(['run', '--rm', '-i', '--runtime', RUNTIME, '--network', 'none', IMAGE, 'wc', '-l'], { input: 'a\nb\nc\n' });
    expect([wc.code, wc.stdout.trim(), wc.stderr]).toEqual([0, '3', '']);
    expect(dockerd.leftovers()).toEqual([]);
  });

  test('docker run -d, docker exec, docker stop and docker rm', async () => {
    const name = `hull-d-${TOKEN.slice(0, 8)}`;
    const script = 'trap "echo got-term; exit 0" TERM; echo started; while :; do sleep 1; done';
    const id = (await dockerd.dockerOk(['run', '-d', '--runtime', RUNTIME, '--network', 'none', '--name', name, IMAGE, 'sh', '-c', script])).trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    try {
      await waitForLog(name, 'started');
      const exec = await dockerd.docker(['exec', name, 'sh', '-c', 'echo in-exec $(uname -r); exit 3']);
      expect([exec.code, exec.stdout, exec.stderr]).toEqual([3, `in-exec ${guestKernel()}\n`, '']);
      const execIn = await dockerd.docker(['exec', '-i', name, 'cat'], { input: 'through-exec-stdin\n' });
      expect([execIn.code, execIn.stdout]).toEqual([0, 'through-exec-stdin\n']);
      const stopped = await dockerd.docker(['stop', '-t', '20', name]);
      expect([stopped.code, stopped.stderr]).toEqual([0, '']);
      expect((await dockerd.dockerOk(['inspect', '-f', '{{.State.Status}} {{.State.ExitCode}}', name])).trim()).toBe('exited 0');
      expect((await dockerd.dockerOk(['logs', name])).split('\n')).toContain('got-term');
    } finally {
      await dockerd.docker(['rm', '-f', name]);
    }
    expect(dockerd.containerLeftovers(id)).toEqual([]);
    expect(dockerd.leftovers()).toEqual([]);
  });

  test('--network host is refused: a VM cannot join the host network', async () => {
    // Docker's host mode does not drop the network namespace from the spec: it names <exec-root>/netns/default, a
    // bind mount of the host's own namespace. A hull that took that path as the pod's would mirror the host's
    // interfaces (eth0 included) into the VM, so Docker is asked only once hull has refused the same shape safely.
    const probe = await probeOwnNetnsRefusal();
    expect(probe.refused, `hull did not refuse a spec naming its own network namespace, so docker --network host was not tried (it would mirror the host's interfaces into the VM): ${probe.detail}`).toBe(true);
    const r = await dockerd.docker(['run', '--rm', '--runtime', RUNTIME, '--network', 'host', IMAGE, 'true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/host network/i);
    expect(dockerd.leftovers()).toEqual([]);
  });

  test('-p 127.0.0.1:PORT:8080 with runc: the harness serves published ports without iptables (docker-proxy)', async () => {
    const port = await freePort();
    const name = `runc-p-${TOKEN.slice(0, 8)}`;
    await dockerd.dockerOk(['run', '-d', '--name', name, '-p', `127.0.0.1:${port}:8080`, IMAGE, 'httpd', '-f', '-p', '8080', '-h', '/www']);
    try {
      const page = await fetchWithRetries(`http://127.0.0.1:${port}/index.html`, 20);
      expect(page).toEqual({ status: 200, body: `hull-docker ${TOKEN}\n` });
      // No DOCKER chain, DNAT or masquerade: docker-proxy on 127.0.0.1 carried it.
      expect(dockerd.hostNetChanges()).toEqual([]);
    } finally {
      await dockerd.docker(['rm', '-f', name]);
    }
    expect(dockerd.leftovers()).toEqual([]);
  });

  test('docker run --runtime hull -d -p 127.0.0.1:PORT:8080 … httpd: the page is fetched from the host', async () => {
    const port = await freePort();
    const name = `hull-p-${TOKEN.slice(0, 8)}`;
    const run = await dockerd.docker([
      'run', '-d', '--runtime', RUNTIME, '--name', name, '-p', `127.0.0.1:${port}:8080`, IMAGE, 'httpd', '-f', '-p', '8080', '-h', '/www',
    ]);
    const id = (await dockerd.docker(['inspect', '-f', '{{.Id}}', name])).stdout.trim();
    try {
      // Docker warns because the harness leaves ip_forward off; -p to 127.0.0.1 needs no forwarding (docker-proxy).
      expect(run.stderr.replace(FORWARDING_WARNING, '')).toBe('');
      expect(run.code).toBe(0);
      let page: { status: number; body: string } | Error;
      try {
        page = await fetchWithRetries(`http://127.0.0.1:${port}/index.html`, 30);
      } catch (err) {
        page = err as Error;
      }
      if (page instanceof Error) {
        const pid = (await dockerd.docker(['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim();
        const ip = (await dockerd.docker(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', name])).stdout.trim();
        throw new Error(
          `${page.message}\ncontainer address ${ip}, pid ${pid}\n${netnsReport(`/proc/${pid}/ns/net`)}\nhull log:\n${dockerd.hullLogTail(id)}`,
        );
      }
      expect(page).toEqual({ status: 200, body: `hull-docker ${TOKEN}\n` });
      // The server is the guest's: its kernel, and Docker's address for the container on the guest's interface.
      const address = (await dockerd.dockerOk(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', name])).trim();
      expect(address.startsWith(`${dockerd.subnetPrefix}.`)).toBe(true);
      const inGuest = await dockerd.dockerOk(['exec', name, 'sh', '-c', 'uname -r; ip -o -4 addr show']);
      expect(inGuest.split('\n')[0]).toBe(guestKernel());
      expect(inGuest).toContain(`inet ${address}/24`);
    } finally {
      await dockerd.docker(['rm', '-f', name]);
    }
    if (id) expect(dockerd.containerLeftovers(id)).toEqual([]);
    expect(dockerd.leftovers()).toEqual([]);
  });
});
