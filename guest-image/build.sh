#!/usr/bin/env bash
# Build hull's guest assets into build/guest/<hash>/, cached by a content hash of every input.
#
#   bash guest-image/build.sh               build (or reuse) and point build/guest/current at it
#   bash guest-image/build.sh --print-hash  only compute and print the hash of the inputs
#
# Output directory (see docs/design.md): vmlinux, initrd.img, rootfs.erofs (erofs format only), manifest.json
#   {"hash","kernelRelease","format","kernelCmdline"}. The last line on stdout is
#   `hull-guest: built <hash> <dir>` or `hull-guest: cached <hash> <dir>`.
#
# Inputs and their environment overrides (defaults in brackets):
#   HULL_AGENT_BUNDLE         the bundled agent            [dist/agent.mjs; `npm run build:ts`]
#   HULL_AGENT_SNAPSHOT_BUNDLE  the agent's start-up snapshot entry  [agent-snapshot.cjs next to the agent bundle;
#                             optional: when it exists (and the format is erofs), the image is booted once under QEMU
#                             TCG to build /hull/agent.blob inside the guest (see "Start-up snapshot" in README.md)]
#   HULL_SNAPSHOT_TCG_CPU     -cpu for that boot; must be hull's TCG_CPU_MODEL (hypervisor/qemu-command.ts)
#                             [qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+rdrand,+smep,+smap,+umip]
#   HULL_QEMU                 QEMU for that boot           [qemu-system-x86_64; without it: no snapshot, a warning]
#   HULL_NATIVE_ADDON_PATH    the N-API addon              [native/addon/build/Release/hull_native.node; `npm run build:addon`]
#   HULL_CONTAINER_INIT_PATH  the static container helper  [build/native/hull-container-init; `make -C native`]
#   HULL_NODE_BIN             Node, plus the libraries ldd lists   [/usr/bin/node, Debian package nodejs]
#   HULL_BUSYBOX              static busybox               [/bin/busybox, Debian package busybox-static]
#   HULL_KERNEL_DIR           vmlinux, modules/, release   [build/kernel, made by guest-image/kernel.sh]
#   guest-image/init and this script itself are inputs too.
# Build options (part of the hash):
#   HULL_GUEST_FORMAT         erofs | initramfs            [erofs: same boot time, half the memory; guest-image/README.md]
#   HULL_INITRD_COMPRESS      none | lz4 | gzip | zstd     [none]
# Output location:
#   HULL_GUEST_OUT            where <hash>/ and current go [build/guest]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")

print_hash_only=0
case "${1:-}" in
  --print-hash) print_hash_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--print-hash]" >&2; exit 2 ;;
esac

die() { echo "guest-image: error: $*" >&2; exit 1; }
log() { echo "guest-image: $*" >&2; }

agent=${HULL_AGENT_BUNDLE:-$repo/dist/agent.mjs}
snapshot_entry=${HULL_AGENT_SNAPSHOT_BUNDLE:-$(dirname "$agent")/agent-snapshot.cjs}
snapshot_cpu=${HULL_SNAPSHOT_TCG_CPU:-qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+rdrand,+smep,+smap,+umip}
qemu_bin=${HULL_QEMU:-qemu-system-x86_64}
addon=${HULL_NATIVE_ADDON_PATH:-$repo/native/addon/build/Release/hull_native.node}
helper=${HULL_CONTAINER_INIT_PATH:-$repo/build/native/hull-container-init}
node_bin=${HULL_NODE_BIN:-/usr/bin/node}
busybox=${HULL_BUSYBOX:-/bin/busybox}
init_script=$here/init
format=${HULL_GUEST_FORMAT:-erofs}
compress=${HULL_INITRD_COMPRESS:-none}
out_root=${HULL_GUEST_OUT:-$repo/build/guest}

case "$format" in initramfs|erofs) ;; *) die "HULL_GUEST_FORMAT must be initramfs or erofs (got '$format')" ;; esac
case "$compress" in none|lz4|gzip|zstd) ;; *) die "HULL_INITRD_COMPRESS must be none, lz4, gzip or zstd (got '$compress')" ;; esac

# ---- inputs -------------------------------------------------------------------------------------
[[ -f $agent ]]  || die "agent bundle $agent missing: run \`npm run build:ts\` (or set HULL_AGENT_BUNDLE)"
[[ -f $addon ]]  || die "native addon $addon missing: run \`npm run build:addon\` (or set HULL_NATIVE_ADDON_PATH)"
[[ -f $helper ]] || die "container init helper $helper missing: run \`make -C native\` (or set HULL_CONTAINER_INIT_PATH)"
[[ -f $init_script ]] || die "$init_script missing"
if [[ ! -x $busybox ]]; then
  [[ -z ${HULL_BUSYBOX:-} ]] || die "HULL_BUSYBOX=$busybox is not executable"
  log "installing busybox-static"
  apt-get install -y -qq busybox-static >/dev/null || die "apt-get install busybox-static failed"
fi
[[ -x $node_bin ]] || die "$node_bin missing: install the Debian package nodejs (or set HULL_NODE_BIN)"
for tool in cpio sha256sum strings ldd; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian packages: cpio, coreutils, binutils, libc-bin)"
done
[[ $format == erofs ]] && { command -v mkfs.erofs >/dev/null || die "mkfs.erofs not found (Debian package erofs-utils)"; }
[[ $compress == none ]] || command -v "$compress" >/dev/null || die "$compress not found"

if [[ -z ${HULL_KERNEL_DIR:-} ]]; then
  bash "$here/kernel.sh" >&2 || die "guest-image/kernel.sh failed"
fi
kdir=${HULL_KERNEL_DIR:-$repo/build/kernel}
[[ -s $kdir/vmlinux && -s $kdir/release && -d $kdir/modules ]] || die "$kdir lacks vmlinux, release or modules/"
krel=$(cat "$kdir/release")

# ---- modules: resolve depends= (from modinfo, read with strings) into load order --------------------
declare -A mod_path=()
while IFS= read -r f; do
  n=${f##*/}; n=${n%%.ko*}; n=${n//-/_}
  mod_path[$n]=$f
done < <(find "$kdir/modules" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')

mod_cat() { # module file → uncompressed bytes on stdout
  case "$1" in
    *.ko.xz) xz -dc "$1" ;;
    *.ko.zst) zstd -dcq "$1" ;;
    *.ko.gz) gzip -dc "$1" ;;
    *) cat "$1" ;;
  esac
}

declare -A mod_seen=()
mod_order=()
mod_resolve() { # append $1 and its dependencies (first) to mod_order
  local name=${1//-/_} deps d
  [[ -n ${mod_seen[$name]:-} ]] && return 0
  mod_seen[$name]=1
  if [[ -z ${mod_path[$name]:-} ]]; then
    # Built into the kernel: nothing to load.
    grep -q "/${name//_/[-_]}\.ko" "$kdir/modules/modules.builtin" 2>/dev/null && return 0
    die "kernel module $name not found in $kdir/modules"
  fi
  deps=$(mod_cat "${mod_path[$name]}" | strings | sed -n 's/^depends=//p')
  deps=${deps%%$'\n'*}
  IFS=, read -r -a deps_arr <<<"$deps"
  for d in "${deps_arr[@]}"; do [[ -n $d ]] && mod_resolve "$d"; done
  mod_order+=("$name")
}
modules_for() { # names... → mod_order: the load order including dependencies (runs in this shell so die works)
  mod_seen=(); mod_order=()
  local m
  for m in "$@"; do mod_resolve "$m"; done
}
# What the agent needs: virtio-mmio transport, virtio-rng (entropy: without it the first getrandom() in Node
# waits ~1 s for the crng under TCG), vsock, virtio-fs, overlay for container layers, qemu_fw_cfg (the agent key,
# which QEMU gives as a fw_cfg file: agent/host-auth.ts), virtio_balloon (free page reporting: freed guest pages go
# back to the host, docs/density.md).
main_modules=(virtio_ring virtio virtio_mmio virtio_rng fuse virtiofs vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport overlay qemu_fw_cfg virtio_balloon)
# The pod's NICs: /init loads these only when the VM has a virtio-net device (most sandboxes have none).
net_modules=(virtio_net)
# What stage 1 of the erofs format needs to mount the root disk.
stage1_modules=(virtio_ring virtio virtio_mmio virtio_blk libcrc32c erofs)
modules_for "${main_modules[@]}"; main_list=("${mod_order[@]}")
modules_for "${net_modules[@]}"; net_list=("${mod_order[@]}")
stage1_list=()
if [[ $format == erofs ]]; then
  modules_for "${stage1_modules[@]}"; stage1_list=("${mod_order[@]}")
  # The erofs root skips modules stage 1 already loaded; listing them keeps its list complete.
  modules_for "${stage1_modules[@]}" "${main_modules[@]}"; main_list=("${mod_order[@]}")
fi

# ---- shared libraries of node, the addon and the helper ---------------------------------------------
libs_of() { # ELF → absolute paths of the libraries it loads (ldd), one per line
  local o
  o=$(ldd "$1" 2>/dev/null) || return 0   # "not a dynamic executable" (static helper) is fine
  awk '/=> \// {print $3} /^[[:space:]]*\/[^ ]+ \(0x/ {print $1}' <<<"$o"
}
mapfile -t libs < <({ libs_of "$node_bin"; libs_of "$addon"; libs_of "$helper"; } | sort -u)
for l in "${libs[@]}"; do [[ -f $l ]] || die "library $l (from ldd) not found"; done

# ---- content hash ---------------------------------------------------------------------------------
# One line per input: its place in the guest (or its role) and the sha256 of its contents.
hash_lines() {
  local f
  printf 'format %s\ncompress %s\nkernelRelease %s\n' "$format" "$compress" "$krel"
  printf 'file build.sh %s\n' "$(sha256sum <"$self" | cut -d' ' -f1)"
  printf 'file kernel.sh %s\n' "$(sha256sum <"$here/kernel.sh" | cut -d' ' -f1)"
  printf 'file init %s\n' "$(sha256sum <"$init_script" | cut -d' ' -f1)"
  printf 'file vmlinux %s\n' "$(sha256sum <"$kdir/vmlinux" | cut -d' ' -f1)"
  printf 'file agent %s\n' "$(sha256sum <"$agent" | cut -d' ' -f1)"
  if [[ -f $snapshot_entry ]]; then
    printf 'file agent-snapshot %s\nsnapshot-cpu %s\n' "$(sha256sum <"$snapshot_entry" | cut -d' ' -f1)" "$snapshot_cpu"
  fi
  printf 'file addon %s\n' "$(sha256sum <"$addon" | cut -d' ' -f1)"
  printf 'file helper %s\n' "$(sha256sum <"$helper" | cut -d' ' -f1)"
  printf 'file node %s\n' "$(sha256sum <"$node_bin" | cut -d' ' -f1)"
  printf 'file busybox %s\n' "$(sha256sum <"$busybox" | cut -d' ' -f1)"
  for f in "${libs[@]}"; do printf 'lib %s %s\n' "$f" "$(sha256sum <"$f" | cut -d' ' -f1)"; done
  for f in "${main_list[@]}" "${stage1_list[@]}"; do
    printf 'module %s %s\n' "$f" "$(sha256sum <"${mod_path[$f]}" | cut -d' ' -f1)"
  done
}
hash=$(hash_lines | sha256sum | cut -c1-16)
if (( print_hash_only )); then echo "$hash"; exit 0; fi

# The erofs root is found by a UUID derived from the hash.
uuid_hex=$(printf '%s' "$hash" | sha256sum | cut -c1-32)
uuid=${uuid_hex:0:8}-${uuid_hex:8:4}-${uuid_hex:12:4}-${uuid_hex:16:4}-${uuid_hex:20:12}
# cryptomgr.notests: skip the crypto API's boot-time self-tests of every registered algorithm (~0.24 s of a ~0.93 s
# kernel boot under TCG; they check the implementations, not their use; fips=1 would force them back on).
cmdline="console=ttyS0 tsc=reliable no_timer_check quiet panic=-1 cryptomgr.notests"
[[ $format == erofs ]] && cmdline+=" hull.rootuuid=$uuid"

mkdir -p "$out_root"
dest=$out_root/$hash

point_current() { # atomically replace the current symlink
  ln -sfn "$hash" "$out_root/.current.$$"
  mv -fT "$out_root/.current.$$" "$out_root/current"
}
prune() { # keep the newest two builds (and whatever current points at)
  local keep cur d n=0
  cur=$(readlink "$out_root/current" || true)
  while IFS= read -r d; do
    n=$((n + 1))
    [[ $d == "$cur" ]] && continue
    (( n > 2 )) && { log "removing old build $d"; rm -rf "${out_root:?}/$d"; }
  done < <(cd "$out_root" && ls -1t --ignore='.*' --ignore=current | grep -E '^[0-9a-f]{16}$' || true)
  # Leftovers of interrupted builds.
  find "$out_root" -maxdepth 1 -name '.tmp-*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true
}

if [[ -f $dest/manifest.json ]]; then
  touch "$dest"
  point_current
  prune
  echo "hull-guest: cached $hash $dest"
  exit 0
fi

# ---- build ---------------------------------------------------------------------------------------
t0=$SECONDS
tmp=$(mktemp -d "$out_root/.tmp-$hash.XXXXXX")
chmod 0755 "$tmp"
trap 'rm -rf "$tmp"' EXIT

# Lay out a merged-/usr root with busybox, the init script and the given module list.
# $1: root dir, $2: module list file name, rest: module names.
make_base_root() {
  local r=$1 list=$2; shift 2
  mkdir -p "$r"/{usr/bin,usr/sbin,usr/lib/x86_64-linux-gnu,usr/lib64,etc,dev,proc,sys,tmp,run,root,newroot}
  ln -s usr/bin "$r/bin"; ln -s usr/sbin "$r/sbin"; ln -s usr/lib "$r/lib"; ln -s usr/lib64 "$r/lib64"
  chmod 1777 "$r/tmp"; chmod 0700 "$r/root"
  cp "$busybox" "$r/usr/bin/busybox"
  local a
  while IFS= read -r a; do
    [[ -e $r/$a || -L $r/$a ]] && continue
    mkdir -p "$r/$(dirname "$a")"
    ln -s /usr/bin/busybox "$r/$a"
  done < <("$busybox" --list-full)
  install -m 0755 "$init_script" "$r/init"
  write_module_list "$r" "$list" "$@"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\ntty:x:5:\n' >"$r/etc/group"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$r/etc/hosts"
}

# $1: root dir, $2: module list file name (one .ko a line, load order), rest: module names, copied in.
write_module_list() {
  local r=$1 list=$2; shift 2
  local md=$r/usr/lib/modules/$krel m
  mkdir -p "$md"
  : >"$md/$list"
  for m in "$@"; do
    mod_cat "${mod_path[$m]}" >"$md/$m.ko"
    echo "$m.ko" >>"$md/$list"
  done
}

make_cpio() { # root dir → cpio (compressed as asked) at $2
  local c=()
  case "$compress" in
    none) c=(cat) ;; lz4) c=(lz4 -l -9 -c) ;; gzip) c=(gzip -6 -c) ;; zstd) c=(zstd -q -19 -c) ;;
  esac
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | "${c[@]}" >"$2"
}

make_erofs() {
  rm -f "$tmp/rootfs.erofs"
  mkfs.erofs --quiet -x-1 -T0 --all-root -U "$uuid" "$tmp/rootfs.erofs" "$root" >/dev/null || die "mkfs.erofs failed"
}

# The agent's start-up snapshot (node --build-snapshot): the agent's modules evaluated and its .proto parsed, so the
# guest's Node starts serving ~0.9 s sooner under TCG. A blob only loads where V8 sees the same CPU features as where
# it was built (they are part of its version tag), so it is built *in the guest*: boot this image once under TCG with
# hull's CPU model and `hull.snapshot=build`; /init runs node --build-snapshot and writes the blob, after a header
# (`HULLBLOB <size>` and the guest's /proc/cpuinfo flags line), to the extra disk whose first bytes are HULLSNAP.
# /init later uses the blob only on a CPU with that same flags line (so KVM hosts fall back to agent.mjs).
# Returns 1 (with a warning) when no blob could be made: the image then starts the agent from agent.mjs.
build_snapshot() {
  command -v "$qemu_bin" >/dev/null || { log "warning: no start-up snapshot: $qemu_bin not found"; return 1; }
  local work out con khz header size
  work=$(mktemp -d "$out_root/.tmp-snapshot.XXXXXX")
  out=$work/disk con=$work/console.log
  truncate -s 64M "$out"
  printf 'HULLSNAP' | dd of="$out" conv=notrunc status=none
  # As hull does under TCG (hypervisor/host-tsc.ts): the host TSC rate spares the guest a PIT calibration that can
  # hang on a busy host.
  khz=$(awk -F: '/^$/ {exit} /^flags/ {c = / constant_tsc/ && (/ tsc_known_freq/ || !/ aperfmperf/)} /^cpu MHz/ {m = $2 + 0}
    END {if (c && m > 100) printf " tsc_early_khz=%d", m * 1000}' /proc/cpuinfo)
  if ! timeout 180 "$qemu_bin" -M microvm,x-option-roms=off -accel tcg -cpu "$snapshot_cpu" -smp 1 -m 512 \
    -nodefaults -no-user-config -nographic -no-reboot -global virtio-mmio.force-legacy=false \
    -chardev "file,id=con,path=$con" -serial chardev:con \
    -kernel "$kdir/vmlinux" -initrd "$tmp/initrd.img" -append "$cmdline$khz hull.snapshot=build" \
    -drive "id=root,file=$tmp/rootfs.erofs,format=raw,if=none,read-only=on" -device virtio-blk-device,drive=root \
    -drive "id=out,file=$out,format=raw,if=none" -device virtio-blk-device,drive=out \
    -device virtio-rng-device >"$work/qemu.log" 2>&1; then
    log "warning: no start-up snapshot: the snapshot boot failed: $(tail -q -n 2 "$work/qemu.log" "$con" | tr '\n' ' ')"
    rm -rf "$work"
    return 1
  fi
  header=$(head -c 4096 "$out" | head -n 2)
  size=$(sed -n '1s/^HULLBLOB \([0-9][0-9]*\)$/\1/p' <<<"$header")
  if [[ -z $size ]]; then
    log "warning: no start-up snapshot: the guest wrote none: $(grep -a 'hull-init' "$con" | tail -2 | tr '\n' ' ')"
    rm -rf "$work"
    return 1
  fi
  tail -c +4097 "$out" | head -c "$size" >"$root/hull/agent.blob"
  sed -n 2p <<<"$header" >"$root/hull/agent.blob.cpu"
  rm -rf "$work"
  log "start-up snapshot built in the guest: $size bytes"
}

root=$tmp/root
make_base_root "$root" hull.list "${main_list[@]}"
write_module_list "$root" hull-net.list "${net_list[@]}"
install -m 0755 "$node_bin" "$root/usr/bin/node"
# Stage 1 recognises the erofs root by this file (and the same UUID is in the erofs superblock).
[[ $format == erofs ]] && printf '%s\n' "$uuid" >"$root/etc/hull-rootuuid"
for l in "${libs[@]}"; do
  # ldd reports /lib/... or /lib64/... (usrmerge); place every library under /usr.
  rel=${l#/usr}; rel=usr${rel}
  mkdir -p "$root/$(dirname "$rel")"
  cp -L "$l" "$root/$rel"
done
mkdir -p "$root/hull"
install -m 0644 "$agent" "$root/hull/agent.mjs"
install -m 0755 "$addon" "$root/hull/hull_native.node"
install -m 0755 "$helper" "$root/hull/hull-container-init"
[[ -f $snapshot_entry ]] && install -m 0644 "$snapshot_entry" "$root/hull/agent-snapshot.cjs"

if [[ $format == initramfs ]]; then
  make_cpio "$root" "$tmp/initrd.img"
else
  stage1=$tmp/stage1
  make_base_root "$stage1" hull-stage1.list "${stage1_list[@]}"
  : >"$stage1/etc/hull-stage1"
  make_cpio "$stage1" "$tmp/initrd.img"
  make_erofs
  if [[ -f $snapshot_entry ]] && build_snapshot; then
    make_erofs # again, now with /hull/agent.blob
  fi
fi
rm -rf "$root" "${stage1:-}"
cp -l "$kdir/vmlinux" "$tmp/vmlinux" 2>/dev/null || cp "$kdir/vmlinux" "$tmp/vmlinux"

node -e '
  const [hash, kernelRelease, format, kernelCmdline, file] = process.argv.slice(1);
  require("fs").writeFileSync(file, JSON.stringify({ hash, kernelRelease, format, kernelCmdline }, null, 2) + "\n");
' "$hash" "$krel" "$format" "$cmdline" "$tmp/manifest.json"

# Publish: rename the finished dir into place (a concurrent identical build may have won), then current.
if ! mv -T "$tmp" "$dest" 2>/dev/null; then
  [[ -f $dest/manifest.json ]] || die "cannot move $tmp to $dest"
fi
trap - EXIT
rm -rf "$tmp"
point_current
prune
log "built $format image in $((SECONDS - t0))s: $(du -sh "$dest" | cut -f1)"
echo "hull-guest: built $hash $dest"
