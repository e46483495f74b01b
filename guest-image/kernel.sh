#!/usr/bin/env bash
# Fetch Debian's cloud kernel and turn it into what QEMU microvm boots directly.
#
# Outputs (under <repo>/build/kernel/, cached: nothing is redone when the .deb is unchanged):
#   vmlinux   ELF kernel with the Xen PVH note (QEMU direct boot of microvm needs ELF, not bzImage)
#   modules/  the lib/modules/<release> tree from the package
#   release   the kernel release string, e.g. 6.1.0-44-cloud-amd64
#   deb.sha256  hash of the package the outputs came from (the cache key)
#
# Packages: linux-image-cloud-amd64 (metapackage) and the linux-image-6.1.*-cloud-amd64 it depends on,
# fetched with `apt-get download` (apt-get update only when the download fails).
# Env: HULL_KERNEL_OUT overrides the output directory.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${HULL_KERNEL_OUT:-$repo/build/kernel}
debs=$repo/build/debs
mkdir -p "$out" "$debs"

log() { echo "kernel.sh: $*" >&2; }
die() { echo "kernel.sh: error: $*" >&2; exit 1; }

# Run a command; if it fails, refresh the apt lists once and retry.
apt_retry() {
  if ! "$@" >/dev/null 2>&1; then
    log "'$*' failed; running apt-get update and retrying"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    "$@" >/dev/null || die "'$*' failed after apt-get update"
  fi
}

# Which versioned image package does the metapackage point at?
versioned=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1 || true)
if [[ -z $versioned ]]; then
  apt-get update -qq >/dev/null || die "apt-get update failed"
  versioned=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1)
fi
[[ -n $versioned ]] || die "cannot resolve the versioned package of linux-image-cloud-amd64"

# Download (into build/debs) unless a .deb of that package is already there.
cd "$debs"
if ! compgen -G "linux-image-cloud-amd64_*.deb" >/dev/null; then
  apt_retry apt-get download linux-image-cloud-amd64
fi
if ! compgen -G "${versioned}_*.deb" >/dev/null; then
  apt_retry apt-get download "$versioned"
fi
deb=$(ls -1 "$debs/${versioned}"_*.deb | sort -V | tail -n1)
deb_hash=$(sha256sum "$deb" | cut -d' ' -f1)

if [[ -f $out/deb.sha256 && $(cat "$out/deb.sha256") == "$deb_hash" && -s $out/vmlinux && -s $out/release && -d $out/modules ]]; then
  log "cached: $(cat "$out/release") ($out)"
  exit 0
fi

log "extracting $(basename "$deb")"
tmp=$(mktemp -d "$out/../.kernel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/pkg"

bz=$(ls -1 "$tmp"/pkg/boot/vmlinuz-* | head -n1)
[[ -f $bz ]] || die "no /boot/vmlinuz-* in $deb"
release=${bz##*/vmlinuz-}
[[ -d $tmp/pkg/lib/modules/$release ]] || die "no lib/modules/$release in $deb"

# bzImage boot header: setup_sects (u8 at 0x1f1; 0 means 4), payload_offset (u32 at 0x248),
# payload_length (u32 at 0x24c); the protected-mode part starts at (setup_sects+1)*512.
u8()  { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
[[ $(dd if="$bz" bs=1 skip=$((0x202)) count=4 status=none) == HdrS ]] || die "$bz is not a bzImage (no HdrS)"
setup_sects=$(u8 "$bz" $((0x1f1)))
(( setup_sects == 0 )) && setup_sects=4
payload_offset=$(u32 "$bz" $((0x248)))
payload_length=$(u32 "$bz" $((0x24c)))
start=$(( (setup_sects + 1) * 512 + payload_offset ))

# The payload is an LZ4 legacy frame (magic 02 21 4c 18).
magic=$(od -An -tx1 -j "$start" -N4 "$bz" | tr -d ' ')
[[ $magic == 02214c18 ]] || die "payload is not LZ4 legacy (magic $magic); only LZ4 is handled"
dd if="$bz" of="$tmp/payload.lz4" iflag=skip_bytes,count_bytes skip="$start" count="$payload_length" bs=1M status=none
# lz4 legacy frames have no end marker; trailing bytes (the payload length word) make lz4 complain, so
# accept a non-zero status as long as the output is a complete ELF.
lz4 -dc "$tmp/payload.lz4" > "$tmp/vmlinux" 2>/dev/null || true
[[ $(head -c4 "$tmp/vmlinux" | od -An -tx1 | tr -d ' ') == 7f454c46 ]] || die "decompressed payload is not ELF"
# PVH entry note (Xen ELFNOTE_PHYS32_ENTRY) is what QEMU needs for direct ELF boot.
if command -v readelf >/dev/null; then
  notes=$(readelf -n "$tmp/vmlinux" 2>/dev/null || true)
  grep -qE 'Xen[[:space:]]+0x[0-9a-f]+[[:space:]]+.*\(0x00000012\)' <<<"$notes" || die "vmlinux has no Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)"
fi

rm -rf "$out/modules.new"
mv "$tmp/pkg/lib/modules/$release" "$out/modules.new"
mv -f "$tmp/vmlinux" "$out/vmlinux.new"
rm -rf "$out/modules"
mv "$out/modules.new" "$out/modules"
echo "$release" > "$out/release"
# vmlinux last: others poll for it, so it must appear only when the rest is in place.
mv -f "$out/vmlinux.new" "$out/vmlinux"
echo "$deb_hash" > "$out/deb.sha256"
log "built $out/vmlinux ($release)"
