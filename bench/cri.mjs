// CRI for the benchmarks: a small kubelet-like client (the calls bench/run.mjs times and cleans up with) over
// containerd's runtime.v1 gRPC, and the config.toml text of a private containerd's CRI plugin whose runtime handler
// `hull` is containerd-shim-hull-v2. Same proto and client libraries as the tests (test/cri/runtime-v1.proto,
// test/helpers/cri-client.ts): @grpc/grpc-js and @grpc/proto-loader, dev dependencies.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const CRI_NAMESPACE = 'k8s.io'; // the containerd namespace the CRI plugin works in
export const CRI_HANDLER = 'hull';

/** null when the gRPC libraries are missing (the CRI figures are then reported as skipped). */
export async function loadCri(repo) {
  let grpc;
  let protoLoader;
  try {
    grpc = await import('@grpc/grpc-js');
    protoLoader = await import('@grpc/proto-loader');
    grpc = grpc.default ?? grpc; // CommonJS packages
    protoLoader = protoLoader.default ?? protoLoader;
  } catch (err) {
    return { missing: `@grpc/grpc-js or @grpc/proto-loader not installed (npm ci): ${err.message.split('\n')[0]}` };
  }
  const proto = path.join(repo, 'test', 'cri', 'runtime-v1.proto');
  if (!existsSync(proto)) return { missing: `${proto} not found` };
  const definition = protoLoader.loadSync(proto, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
  const { RuntimeService, ImageService } = grpc.loadPackageDefinition(definition).runtime.v1;

  /** A RuntimeService client on containerd's socket; each call rejects with the method and gRPC details. */
  const connect = (sock, timeoutMs = 120_000) => {
    const client = new RuntimeService(`unix://${sock}`, grpc.credentials.createInsecure());
    const images = new ImageService(`unix://${sock}`, grpc.credentials.createInsecure());
    const call = (method, req, on = client) =>
      new Promise((resolve, reject) => {
        on[method](req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
          if (err) reject(new Error(`CRI ${method}: ${grpc.status[err.code] ?? err.code}: ${err.details}`));
          else resolve(res);
        });
      });
    return {
      version: () => call('Version', { version: 'v1' }),
      runPodSandbox: async (config) => (await call('RunPodSandbox', { config, runtimeHandler: CRI_HANDLER })).podSandboxId,
      createContainer: async (podSandboxId, config, sandboxConfig) =>
        (await call('CreateContainer', { podSandboxId, config, sandboxConfig })).containerId,
      startContainer: (containerId) => call('StartContainer', { containerId }),
      containerStatus: async (containerId) => (await call('ContainerStatus', { containerId })).status,
      stopPodSandbox: (podSandboxId) => call('StopPodSandbox', { podSandboxId }),
      removePodSandbox: (podSandboxId) => call('RemovePodSandbox', { podSandboxId }),
      listPodSandbox: async () => (await call('ListPodSandbox', { filter: {} })).items,
      /** null when CRI does not know the image (yet: it learns imported images from containerd's events). */
      imageStatus: async (image) => (await call('ImageStatus', { image: { image } }, images)).image,
      close: () => {
        client.close();
        images.close();
      },
    };
  };
  return { connect };
}

/**
 * The pods' CNI network, as a node has one: a bridge (`BENCH_BRIDGE`, made by the plugin) with host-local addresses
 * from a subnet of the bench's own (10.231.90.0/24), a veth into each pod's namespace — which a pooled VM takes
 * (docs/pool.md) — and no gateway, masquerade or route: the benchmark sends no traffic. `removeBridgeCni()` deletes
 * the bridge afterwards. Returns { binDir, confDir } or { missing }.
 */
export const BENCH_BRIDGE = 'hullbench0';

export function bridgeCni(dir, cniBin = '/usr/lib/cni') {
  const missing = ['bridge', 'host-local', 'loopback'].filter((p) => !existsSync(path.join(cniBin, p)));
  if (missing.length) return { missing: `${missing.map((p) => `${cniBin}/${p}`).join(', ')} not found (apt-get install containernetworking-plugins)` };
  const confDir = path.join(dir, 'net.d');
  mkdirSync(confDir, { recursive: true });
  writeFileSync(path.join(confDir, '10-hull-bench.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: 'hull-bench-bridge',
    plugins: [{
      type: 'bridge',
      bridge: BENCH_BRIDGE,
      isGateway: false,
      ipMasq: false,
      ipam: { type: 'host-local', ranges: [[{ subnet: '10.231.90.0/24' }]], dataDir: path.join(dir, 'ipam') },
    }],
  }));
  return { binDir: cniBin, confDir };
}

/** Deletes the bench's bridge, if the plugin made it. */
export function removeBridgeCni() {
  spawnSync('ip', ['link', 'del', BENCH_BRIDGE], { stdio: 'ignore' });
}

/** The CRI plugin's tables for a private containerd (as test/integration/cri.test.ts configures it). */
export function criConfig({ dir, pauseImage, cni }) {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return [
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${dir}/opt"`,
    `[${cri}]`,
    `  sandbox_image = "${pauseImage}"`,
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"', // any free port: never clashes with a node's real CRI
    '  disable_apparmor = true',
    '  enable_selinux = false',
    '  netns_mounts_under_state_dir = true', // pod netns under our state dir, not /var/run/netns
    `[${cri}.containerd]`,
    '  snapshotter = "overlayfs"',
    '  default_runtime_name = "runc"',
    `[${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${cri}.containerd.runtimes.${CRI_HANDLER}]`,
    '  runtime_type = "io.containerd.hull.v2"',
    `[${cri}.cni]`,
    `  bin_dir = "${cni.binDir}"`,
    `  conf_dir = "${cni.confDir}"`,
    '  max_conf_num = 1',
  ].join('\n');
}

const POD_NAMESPACES = { network: 'POD', pid: 'POD', ipc: 'POD' };

/** A pod as the kubelet describes one (no resources: the VM gets hull's default size, as a pooled VM has). */
export const podConfig = (name, logDirectory) => ({
  metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
  hostname: name,
  logDirectory,
  linux: { securityContext: { namespaceOptions: POD_NAMESPACES } },
});

export const containerConfig = (name, image, command) => ({
  metadata: { name, attempt: 0 },
  image: { image },
  command,
  logPath: `${name}/0.log`,
  linux: { securityContext: { namespaceOptions: POD_NAMESPACES } },
});
