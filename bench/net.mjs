#!/usr/bin/env node
// hull's network benchmark (a script, not a test). In one run, side by side:
//   1. one TCP stream of 100 MiB each way between a "host side" and a busybox container, through
//      hull (the container in its microVM; its pod namespace's veth mirrored in with tap + tc mirred + virtio-net),
//      runc (the same bundle in a pod namespace wired the same way: the baseline) and
//      hull's vsock channel (the same bytes through `hull exec` stdio);
//   2. 200 sequential HTTP GETs of a small page from busybox httpd in the container (hull and runc): median and p90;
//   3. cold start: interleaved `hull run … true` with a NIC (a pod namespace holding one veth) and without (a network
//      entry with no path: loopback only), and the ratio.
// How: for each runtime the bench makes a pod namespace and a peer namespace joined by a veth, on a /24 it owns
// (10.232.1.0/24 for hull, 10.232.2.0/24 for runc; the pod's default route points at the peer, as in
// test/helpers/netns.ts podWithPeer). The host side is this same script re-run in the peer namespace
// (`ip netns exec PEER node bench/net.mjs --peer …`), timing bytes on its socket; the container side is busybox only:
// `nc -l -p PORT -e dd of=/dev/null bs=1M`, `nc PEER PORT -e dd if=/dev/zero bs=1M count=N`, `httpd`, and over vsock
// `hull exec C dd if=/dev/zero …` / `hull exec C sh -c '… dd of=/dev/null …'`. (dd on the socket, not
// `… | nc` / `nc > /dev/null`: busybox nc copies 1 KiB per syscall, which caps even runc at ~70 MB/s here, so the
// figure would be nc's, not the network's.) No traffic leaves those namespaces:
// no route, NAT or forwarding towards anything else. Every loop is bounded in count and time; containers (own --root
// dirs under a temp dir), namespaces and bundles are removed at the end, also on failure and on SIGINT/SIGTERM.
//   usage: npm run bench:net [-- --runs N]     (N: tries per stream and cold-start runs per kind; default 3 and 5)
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const MIB = 1 << 20;
const STREAM_BYTES = 100 * MIB;
const GETS = 200;
const PEER_DEADLINE_MS = 120_000;

// ---------------------------------------------------------------------------------------------------------------
// Host side: `node net.mjs --peer MODE …`, run inside a peer namespace. Prints one JSON line with what it measured.
//   send HOST PORT BYTES   connect (retrying while the container's nc is not listening yet), write BYTES, half-close,
//                          and stop the clock when the container's nc closes (it has read everything)
//   recv PORT BYTES        print "listening", accept one connection, count BYTES to its end
//   http URL COUNT         wait for the server, then COUNT sequential GETs, each on a new connection (busybox httpd
//                          closes after each answer); times in ms
// ---------------------------------------------------------------------------------------------------------------
async function peer([mode, ...args]) {
  setTimeout(() => {
    process.stderr.write(`peer ${mode}: no end in ${PEER_DEADLINE_MS} ms\n`);
    process.exit(2);
  }, PEER_DEADLINE_MS).unref();
  const elapsedMs = (t) => Number(process.hrtime.bigint() - t) / 1e6;
  const print = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

  if (mode === 'send') {
    const [host, port, bytes] = [args[0], Number(args[1]), Number(args[2])];
    const sock = await retry(200, () => connected(net.connect({ host, port, allowHalfOpen: true })));
    const t = process.hrtime.bigint();
    const done = new Promise((resolve, reject) => (sock.on('end', resolve), sock.on('error', reject)));
    sock.resume();
    const chunk = Buffer.alloc(MIB);
    for (let sent = 0; sent < bytes; sent += chunk.length) {
      if (!sock.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)))) await new Promise((r) => sock.once('drain', r));
    }
    sock.end();
    await done;
    print({ bytes, ms: elapsedMs(t) });
    sock.destroy();
  } else if (mode === 'recv') {
    const [port, bytes] = [Number(args[0]), Number(args[1])];
    const server = net.createServer();
    await new Promise((resolve, reject) => server.listen(port, resolve).once('error', reject));
    process.stdout.write('listening\n');
    const sock = await new Promise((resolve) => server.once('connection', resolve));
    server.close();
    const t = process.hrtime.bigint();
    let got = 0;
    await new Promise((resolve, reject) => {
      sock.on('data', (d) => (got += d.length));
      sock.on('end', resolve);
      sock.on('error', reject);
    });
    const ms = elapsedMs(t);
    sock.destroy();
    if (got !== bytes) throw new Error(`received ${got} bytes, expected ${bytes}`);
    print({ bytes, ms });
  } else if (mode === 'http') {
    const [url, count] = [args[0], Number(args[1])];
    await retry(200, () => get(url));
    const ms = [];
    for (let i = 0; i < count; i++) {
      const t = process.hrtime.bigint();
      await get(url);
      ms.push(elapsedMs(t));
    }
    print({ ms });
  } else {
    throw new Error(`unknown peer mode ${mode}`);
  }
}

function connected(sock) {
  return new Promise((resolve, reject) => {
    sock.once('connect', () => resolve(sock));
    sock.once('error', reject);
  });
}

function get(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

/** Up to `tries` attempts, 100 ms apart: for a server that is still starting. */
async function retry(tries, fn) {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= tries) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

if (process.argv[2] === '--peer') {
  try {
    await peer(process.argv.slice(3));
    process.exit(0);
  } catch (err) {
    process.stderr.write(`peer: ${err.stack ?? err}\n`);
    process.exit(1);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The bench.
// ---------------------------------------------------------------------------------------------------------------
const repo = path.resolve(path.dirname(self), '..');
const hullBin = path.join(repo, 'bin', 'hull');
const runcBin = ['/usr/sbin/runc', '/usr/bin/runc'].find((p) => existsSync(p));
const runsArg = process.argv.indexOf('--runs');
const STREAM_RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 3;
const COLD_RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
const tag = String(process.pid);
const work = mkdtempSync(path.join(os.tmpdir(), 'hull-bench-net-'));
const roots = { hull: path.join(work, 'hull-root'), runc: path.join(work, 'runc-root') };
const namespaces = [];
const children = new Set();

class BenchError extends Error {}

function sh(cmd, args, { timeout = 60_000, ...options } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout, killSignal: 'SIGKILL', ...options });
  if (r.error) throw new BenchError(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new BenchError(`${cmd} ${args.join(' ')}: exit ${r.status}: ${(r.stderr ?? '').trim()}`);
  return r.stdout;
}

/** A pod namespace and a peer namespace joined by a veth on 10.232.`net`.0/24: pod .2 (eth0), peer .1 (veth0). */
function podWithPeer(name, subnet) {
  const pod = `hbn-${name}pod-${tag}`;
  const peerNs = `hbn-${name}peer-${tag}`;
  for (const ns of [pod, peerNs]) {
    sh('ip', ['netns', 'add', ns]);
    namespaces.push(ns);
  }
  const [podIp, peerIp] = [`10.232.${subnet}.2`, `10.232.${subnet}.1`];
  sh('ip', ['-n', pod, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'veth0', 'netns', peerNs]);
  for (const [ns, dev, ip] of [[pod, 'eth0', podIp], [peerNs, 'veth0', peerIp]]) {
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', dev]);
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  }
  sh('ip', ['-n', pod, 'route', 'add', 'default', 'via', peerIp]);
  return { pod, peer: peerNs, podPath: `/run/netns/${pod}`, podIp, peerIp };
}

/** A busybox bundle running `args`, its network entry given `netnsPath` (or left without a path). */
function bundle(name, args, netnsPath) {
  const dir = path.join(work, name);
  sh(process.execPath, [path.join(repo, 'scripts', 'make-bundle.mjs'), dir, ...args]);
  const file = path.join(dir, 'config.json');
  const spec = JSON.parse(readFileSync(file, 'utf8'));
  spec.linux.namespaces = spec.linux.namespaces.map((n) => (n.type === 'network' && netnsPath ? { type: 'network', path: netnsPath } : n));
  writeFileSync(file, JSON.stringify(spec, null, 2));
  return dir;
}

const runtime = {
  hull: (args) => [hullBin, ['--root', roots.hull, ...args]],
  runc: (args) => [runcBin, ['--root', roots.runc, ...args]],
};

/** Starts a long-running container, its stdio on files (runc run -d, hull create + start). */
function startDetached(rt, id, bundleDir) {
  const out = openSync(path.join(work, `${id}.out`), 'a');
  try {
    const steps = rt === 'hull' ? [['create', '--bundle', bundleDir, id], ['start', id]] : [['run', '-d', '--bundle', bundleDir, id]];
    for (const step of steps) sh(...runtime[rt](step), { stdio: ['ignore', out, out], timeout: 180_000 });
  } catch (err) {
    throw new BenchError(`${err.message}\n${readFileSync(path.join(work, `${id}.out`), 'utf8')}`);
  } finally {
    closeSync(out);
  }
}

/** A child process; `done` resolves with its stdout (unless `onStdout` takes it) when it exits 0 within `timeoutMs`. */
function child(cmd, args, { timeoutMs = PEER_DEADLINE_MS, onStdout } = {}) {
  const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(c);
  let stdout = '';
  let stderr = '';
  c.stdout.on('data', onStdout ?? ((d) => (stdout += d)));
  c.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  c.stdin.on('error', () => undefined);
  const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
  const done = new Promise((resolve, reject) => {
    c.on('error', reject);
    c.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(c);
      if (code === 0) resolve(stdout);
      else reject(new BenchError(`${path.basename(cmd)} ${args.join(' ')}: ${signal ?? `exit ${code}`}: ${stderr.trim()}`));
    });
  });
  return { child: c, done };
}

const inPeer = (ns, ...args) => ['ip', ['netns', 'exec', ns, process.execPath, self, '--peer', ...args.map(String)]];
const execIn = (rt, id, script) => runtime[rt](['exec', id, 'sh', '-c', script]);
const mbps = (bytes, ms) => bytes / 1e6 / (ms / 1000);

/** Host side → container over TCP: the container's nc hands the socket to dd, which reads it to the end. */
async function tcpToContainer(rt, id, n) {
  const sink = child(...execIn(rt, id, 'nc -l -p 5001 -e dd of=/dev/null bs=1M'));
  sink.child.stdin.end();
  const { bytes, ms } = JSON.parse(await child(...inPeer(n.peer, 'send', n.podIp, 5001, STREAM_BYTES)).done);
  await sink.done;
  return mbps(bytes, ms);
}

/** Container → host side over TCP: the host side listens; the container's nc connects and hands the socket to dd. */
async function tcpFromContainer(rt, id, n) {
  let listening;
  const ready = new Promise((r) => (listening = r));
  let out = '';
  const recv = child(...inPeer(n.peer, 'recv', 5002, STREAM_BYTES), {
    onStdout: (d) => (out += d).includes('listening\n') && listening(),
  });
  await Promise.race([ready, recv.done]);
  await child(...execIn(rt, id, `nc ${n.peerIp} 5002 -e dd if=/dev/zero bs=1M count=${STREAM_BYTES / MIB}`)).done;
  await recv.done;
  const { bytes, ms } = JSON.parse(out.split('\n').find((l) => l.startsWith('{')));
  return mbps(bytes, ms);
}

/** Host → container over hull's vsock channel: `hull exec … dd of=/dev/null` fed by the bench; clock from "ready" to "done". */
async function vsockToContainer(id) {
  let seen = '';
  let ready;
  let done;
  const readyP = new Promise((r) => (ready = r));
  const doneP = new Promise((r) => (done = r));
  const sink = child(...execIn('hull', id, 'echo ready; dd of=/dev/null bs=1M; echo done'), {
    onStdout: (d) => {
      seen += d;
      if (seen.includes('ready\n')) ready();
      if (seen.includes('done\n')) done();
    },
  });
  await Promise.race([readyP, sink.done]);
  const t = process.hrtime.bigint();
  const chunk = Buffer.alloc(MIB);
  for (let sent = 0; sent < STREAM_BYTES; sent += MIB) {
    if (!sink.child.stdin.write(chunk)) await new Promise((r) => sink.child.stdin.once('drain', r));
  }
  sink.child.stdin.end();
  await Promise.race([doneP, sink.done]);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  await sink.done;
  return mbps(STREAM_BYTES, ms);
}

/** Container → host over hull's vsock channel: `hull exec … dd if=/dev/zero` read by the bench, first byte to end. */
async function vsockFromContainer(id) {
  let t;
  let got = 0;
  const source = child(...runtime.hull(['exec', id, 'dd', 'if=/dev/zero', 'bs=1M', `count=${STREAM_BYTES / MIB}`]), {
    onStdout: (d) => {
      t ??= process.hrtime.bigint();
      got += d.length;
    },
  });
  source.child.stdin.end();
  await source.done;
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (got !== STREAM_BYTES) throw new BenchError(`hull exec dd: ${got} bytes, expected ${STREAM_BYTES}`);
  return mbps(STREAM_BYTES, ms);
}

async function repeat(what, fn) {
  const values = [];
  for (let i = 0; i < STREAM_RUNS; i++) values.push(await fn());
  process.stderr.write(`  ${what}: ${values.map((v) => v.toFixed(0)).join(', ')}\n`);
  return median(values);
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
const p90 = (values) => [...values].sort((a, b) => a - b)[Math.ceil(values.length * 0.9) - 1];

/** Streams (and vsock for hull) and HTTP round trips against a running container `id` on pod network `n`. */
async function measure(rt, id, n) {
  process.stderr.write(`${rt}:\n`);
  const { ms } = JSON.parse(await child(...inPeer(n.peer, 'http', `http://${n.podIp}:8080/index.html`, GETS)).done);
  const r = { getMedian: median(ms), getP90: p90(ms) };
  process.stderr.write(`  ${GETS} GETs: median ${r.getMedian.toFixed(2)} ms, p90 ${r.getP90.toFixed(2)} ms\n`);
  r.toContainer = await repeat('TCP host→container MB/s', () => tcpToContainer(rt, id, n));
  r.fromContainer = await repeat('TCP container→host MB/s', () => tcpFromContainer(rt, id, n));
  if (rt === 'hull') {
    r.vsockTo = await repeat('vsock host→container MB/s', () => vsockToContainer(id));
    r.vsockFrom = await repeat('vsock container→host MB/s', () => vsockFromContainer(id));
  }
  return r;
}

async function coldStart(nicBundle, plainBundle) {
  const times = { nic: [], plain: [] };
  for (let i = 0; i < COLD_RUNS; i++) {
    for (const [kind, dir] of [['nic', nicBundle], ['plain', plainBundle]]) {
      const t = process.hrtime.bigint();
      const run = child(...runtime.hull(['run', '--bundle', dir, `cold-${kind}-${i}`]));
      run.child.stdin.end();
      await run.done;
      times[kind].push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  }
  process.stderr.write(`cold start ms: with NIC ${times.nic.map((v) => v.toFixed(0)).join(', ')}; loopback only ${times.plain.map((v) => v.toFixed(0)).join(', ')}\n`);
  return times;
}

// --- cleanup: everything under our roots, our namespaces, the work dir --------------------------------------------
let cleaned = false;
function cleanup() {
  if (cleaned) return [];
  cleaned = true;
  const problems = [];
  const attempt = (fn) => {
    try {
      fn();
    } catch (err) {
      problems.push(err.message);
    }
  };
  for (const c of children) c.kill('SIGKILL');
  for (const [rt, del] of [['hull', ['delete', '--force']], ['runc', ['delete', '-f']]]) {
    if (!existsSync(roots[rt])) continue;
    for (const id of readdirSync(roots[rt], { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) attempt(() => sh(...runtime[rt]([...del, id])));
  }
  for (const ns of namespaces.reverse()) attempt(() => sh('ip', ['netns', 'del', ns]));
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(work));
  const procs = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(work);
    } catch {
      return false;
    }
  });
  if (mounts.length || procs.length) problems.push(`left behind (work dir ${work} kept): mounts ${mounts.join(' ')} processes ${procs.join(' ')}`);
  else rmSync(work, { recursive: true, force: true });
  return problems;
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    process.stderr.write(`bench:net: ${signal}, cleaning up\n`);
    for (const p of cleanup()) process.stderr.write(`bench:net cleanup: ${p}\n`);
    process.exit(130);
  });
}

async function main() {
  if (process.getuid?.() !== 0) throw new BenchError('run as root (network namespaces, QEMU, runc)');
  if (!runcBin) throw new BenchError('runc is missing: apt-get install runc');
  sh('sh', ['-c', 'command -v ip && command -v qemu-system-x86_64']);

  const server = ['sh', '-c', 'mkdir -p /www && echo hello from a small page > /www/index.html && exec httpd -f -p 8080 -h /www'];
  const nets = { hull: podWithPeer('h', 1), runc: podWithPeer('r', 2) };
  const results = {};
  for (const rt of ['hull', 'runc']) {
    const id = `web-${rt}`;
    startDetached(rt, id, bundle(`${rt}-web`, server, nets[rt].podPath));
    results[rt] = await measure(rt, id, nets[rt]);
    sh(...runtime[rt](rt === 'hull' ? ['delete', '--force', id] : ['delete', '-f', id]));
  }
  // the hull pod namespace, its container gone, holds one veth again: the "with a NIC" case
  const cold = await coldStart(bundle('cold-nic', ['true'], nets.hull.podPath), bundle('cold-plain', ['true']));

  const { hull: h, runc: r } = results;
  const col = (s, w = 12) => String(s).padStart(w);
  const f0 = (x) => x.toFixed(0);
  const f2 = (x) => x.toFixed(2);
  console.log(`\nnetwork: ${STREAM_BYTES / MIB} MiB per stream (median of ${STREAM_RUNS}; MB = 10^6 bytes), ${GETS} sequential GETs, ` +
    `${os.cpus().length} cores, hull under its own choice of accel (TCG here)`);
  console.log(`${''.padEnd(34)}${col('hull')}${col('runc')}${col('hull vsock')}${col('hull/runc')}${col('hull/vsock')}   target`);
  console.log(`${'one stream host→container MB/s'.padEnd(34)}${col(f0(h.toContainer))}${col(f0(r.toContainer))}${col(f0(h.vsockTo))}` +
    `${col(f2(h.toContainer / r.toContainer))}${col(f2(h.toContainer / h.vsockTo))}   ≥ 200 (hull)`);
  console.log(`${'one stream container→host MB/s'.padEnd(34)}${col(f0(h.fromContainer))}${col(f0(r.fromContainer))}${col(f0(h.vsockFrom))}` +
    `${col(f2(h.fromContainer / r.fromContainer))}${col(f2(h.fromContainer / h.vsockFrom))}   ≥ 200 (hull)`);
  console.log(`${'HTTP GET, median ms'.padEnd(34)}${col(f2(h.getMedian))}${col(f2(r.getMedian))}${col('-')}${col(f2(h.getMedian / r.getMedian))}`);
  console.log(`${'HTTP GET, p90 ms'.padEnd(34)}${col(f2(h.getP90))}${col(f2(r.getP90))}${col('-')}${col(f2(h.getP90 / r.getP90))}`);
  const [nic, plain] = [median(cold.nic), median(cold.plain)];
  console.log(`\ncold start, hull run … true, ${COLD_RUNS} runs each, interleaved (median, min–max):`);
  console.log(`  with a NIC (pod namespace, one veth)   ${(nic / 1000).toFixed(2)} s  (${(Math.min(...cold.nic) / 1000).toFixed(2)}–${(Math.max(...cold.nic) / 1000).toFixed(2)})`);
  console.log(`  loopback only (network, no path)       ${(plain / 1000).toFixed(2)} s  (${(Math.min(...cold.plain) / 1000).toFixed(2)}–${(Math.max(...cold.plain) / 1000).toFixed(2)})`);
  console.log(`  NIC / no NIC = ${(nic / plain).toFixed(3)}   (target ≤ 1.05)`);
}

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  process.stderr.write(`bench:net: ${err instanceof BenchError ? err.message : err.stack}\n`);
} finally {
  for (const p of cleanup()) {
    failed = true;
    process.stderr.write(`bench:net cleanup: ${p}\n`);
  }
}
process.exit(failed ? 1 : 0);
