#!/bin/bash
# make-test-initramfs.sh — build a tiny initramfs for vsock-backend tests: busybox, vsock-peer, the virtio-mmio and
# virtio-vsock modules, and an /init that loads them and starts the peers named on the kernel command line.
#
#   make-test-initramfs.sh <out.cpio> <modules dir> <vsock-peer binary>
#
# <modules dir> is a lib/modules/<version> tree, or a directory holding exactly one such tree.
# Kernel command line understood by /init:
#   peer.server=<port>:<mode>[,<port>:<mode>...]     start `vsock-peer server <port> <mode>` for each
#   peer.client=<port>:<bytes>:<seed>[:<tries>][,...] start `vsock-peer client 2 <port> <bytes> <seed> <tries>`
# /init prints PEER-READY once the servers listen, then waits; PEER-CLIENT lines come from the clients.
set -euo pipefail

out=${1:?usage: make-test-initramfs.sh <out.cpio> <modules dir> <vsock-peer>}
moddir=${2:?modules dir}
peer=${3:?vsock-peer binary}
busybox=${BUSYBOX:-/bin/busybox}

[ -d "$moddir" ] || { echo "make-test-initramfs: no modules dir $moddir" >&2; exit 1; }
if [ ! -d "$moddir/kernel" ]; then
  sub=$(find "$moddir" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  [ -n "$sub" ] && [ -d "$sub/kernel" ] || { echo "make-test-initramfs: $moddir has no kernel/ tree" >&2; exit 1; }
  moddir=$sub
fi

# load order; each module's depends= (modinfo) is satisfied by the ones before it
mods=(virtio_ring virtio virtio_mmio vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport)

work=$(mktemp -d /tmp/hull-vsock-initramfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,sbin,proc,sys,dev,tmp,lib/modules}
cp "$busybox" "$work/bin/busybox"
cp "$peer" "$work/bin/vsock-peer"
for m in "${mods[@]}"; do
  f=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
  [ -n "$f" ] || { echo "make-test-initramfs: module $m not found under $moddir" >&2; exit 1; }
  case "$f" in
    *.ko) cp "$f" "$work/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" > "$work/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" > "$work/lib/modules/$m.ko" ;;
  esac
  deps=$(strings "$work/lib/modules/$m.ko" | sed -n 's/^depends=//p' | head -n 1)
  for d in ${deps//,/ }; do
    found=0
    for prev in "${mods[@]}"; do [ "$prev" = "$m" ] && break; [ "$prev" = "$d" ] && found=1; done
    [ $found = 1 ] || { echo "make-test-initramfs: $m depends on $d which is not loaded before it" >&2; exit 1; }
  done
done

cat > "$work/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in ${mods[*]}; do
  insmod /lib/modules/\$m.ko || echo "PEER-ERROR insmod \$m"
done
servers=""; clients=""
for arg in \$(cat /proc/cmdline); do
  case "\$arg" in
    peer.server=*) servers="\${arg#peer.server=}" ;;
    peer.client=*) clients="\${arg#peer.client=}" ;;
  esac
done
for s in \$(echo "\$servers" | tr ',' ' '); do
  vsock-peer server "\${s%%:*}" "\${s#*:}" &
done
sleep 0.3
echo PEER-READY
for c in \$(echo "\$clients" | tr ',' ' '); do
  set -- \$(echo "\$c" | tr ':' ' ')
  vsock-peer client 2 "\$1" "\$2" "\$3" "\${4:-100}" &
done
while true; do sleep 3600; done
INIT
chmod 755 "$work/init"

(cd "$work" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$out.tmp"
mv "$out.tmp" "$out"
