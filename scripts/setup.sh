#!/usr/bin/env bash
# Sets up everything hull needs on a fresh Debian 12 machine (as root): Debian packages, npm packages, the native
# parts, the TypeScript bundles and the guest image; puts `hull` on PATH and makes an example bundle.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential python3              # gcc/make for native/, g++/make/python3 for node-gyp (the addon)
  qemu-system-x86 qemu-system-common   # the VMM and virtiofsd (/usr/lib/qemu/virtiofsd)
  busybox-static cpio erofs-utils lz4 xz-utils binutils   # guest image build
  clang libclang-rt-14-dev             # libFuzzer and sanitizers for the native tests
  libseccomp-dev                       # libseccomp.a, linked into hull-container-init for linux.seccomp
  util-linux procps file               # mount/umount, ps, file (a test checks the helper is static)
  runc runsc                           # baselines for the benchmark
  containerd                           # the containerd shim tests drive a private containerd
  containernetworking-plugins iproute2 # CNI plugins (/usr/lib/cni) for the CRI test's pod network; `ip` checks its links
  podman iptables                      # podman 4.3 (pulls conmon, containers-common, catatonit); iptables for CNI's portmap (-p)
  docker.io                            # Docker 20.10 (dockerd, docker CLI at /usr/bin/docker): the Docker test runs a private dockerd
)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# npm install, not npm ci: npm 11 here writes lock files without other platforms' optional packages and then
# refuses them in `npm ci`. With the lock present, install still resolves exactly the locked versions.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund --loglevel=error
fi

bash scripts/build.sh

ln -sf "$PWD/bin/hull" /usr/local/bin/hull
ln -sf "$PWD/bin/containerd-shim-hull-v2" /usr/local/bin/containerd-shim-hull-v2 2>/dev/null || true
# podman finds a runtime by name only through containers.conf: `podman --runtime hull` (docs/podman.md)
mkdir -p /etc/containers/containers.conf.d
printf '# installed by hull scripts/setup.sh: lets `podman --runtime hull` find hull by name\n[engine.runtimes]\nhull = ["/usr/local/bin/hull"]\n' \
  >/etc/containers/containers.conf.d/hull.conf
# Docker finds a runtime by name through daemon.json `runtimes` (docs/docker.md): merged in, other keys kept. Only
# where dockerd is installed; a running system dockerd rereads it on SIGHUP (its containers keep running).
if command -v dockerd >/dev/null 2>&1; then
  node scripts/register-docker.mjs --file /etc/docker/daemon.json --path /usr/local/bin/hull
  if [ -s /var/run/docker.pid ] && [ "$(cat "/proc/$(cat /var/run/docker.pid)/comm" 2>/dev/null)" = dockerd ]; then
    kill -HUP "$(cat /var/run/docker.pid)"
  fi
fi
# nerdctl (and ctr) pick the containerd shim by its runtime type: `nerdctl run --runtime io.containerd.hull.v2 …`
# finds /usr/local/bin/containerd-shim-hull-v2 on containerd's PATH (docs/containerd.md).
# Made again each time (cheap): its config.json follows what this version of hull expects.
node scripts/make-bundle.mjs build/bundles/hello
echo "setup: done; try: hull run --bundle build/bundles/hello hello" >&2
