#!/bin/bash
# Prepare this Debian host (as root) for tools/vmrun.py:
#  * install qemu-system-x86, kmod (depmod, guest modprobe), busybox-static
#    (initramfs PID 1) and zstd, without recommends; apt is skipped if all
#    are present;
#  * download (not install) a Debian kernel package, extract it, build its
#    modules.dep and an uncompressed vmlinux for a fast PVH boot.
# Usage: vm-setup.sh [6.1|6.12]
#   6.1 (the default): the kernel linux-image-amd64 points to, Debian 12's
#       own, in $VHOST_BRICK_VM_DIR (default /var/cache/vhost-brick-vm);
#   6.12: the one linux-image-6.12-amd64 (bookworm-security) points to, beside
#       it in $VHOST_BRICK_VM_DIR/kernel-6.12 (tools/vmrun.py --kernel 6.12).
# Idempotent: a finished kernel is recorded in its directory's kernel-version.
set -euo pipefail

SERIES=${1:-6.1}
DIR=${VHOST_BRICK_VM_DIR:-/var/cache/vhost-brick-vm}
case "$SERIES" in
    6.1) META=linux-image-amd64 ;;
    6.12) META=linux-image-6.12-amd64; DIR=$DIR/kernel-6.12 ;;
    *) echo "vm-setup: unknown kernel series $SERIES (6.1 or 6.12)" >&2
       exit 2 ;;
esac
TOOLS=$(cd "$(dirname "$0")" && pwd)
# zstd: Debian compresses its 6.12 kernels with it.
PACKAGES="qemu-system-x86 kmod busybox-static zstd"
export DEBIAN_FRONTEND=noninteractive
updated=

missing=
for pkg in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' ||
        missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "Installing:$missing"
    apt-get update -q
    updated=1
    apt-get install -y -q --no-install-recommends $PACKAGES
else
    echo "Packages already installed: $PACKAGES"
fi

kernel_package() {
    apt-cache depends "$META" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}
pkg=$(kernel_package)
if [ -z "$pkg" ] && [ -z "$updated" ]; then
    apt-get update -q
    pkg=$(kernel_package)
fi
if [ -z "$pkg" ]; then
    echo "vm-setup: cannot tell which kernel $META depends on" >&2
    exit 1
fi
kver=${pkg#linux-image-}

if [ "$(cat "$DIR/kernel-version" 2>/dev/null)" = "$kver" ] &&
        [ -f "$DIR/kroot/boot/vmlinux-$kver" ]; then
    echo "Kernel $kver already prepared in $DIR"
    exit 0
fi

echo "Preparing kernel $kver in $DIR"
rm -rf "$DIR/kernel-version" "$DIR/kroot" "$DIR"/initramfs-*.cpio
mkdir -p "$DIR/kroot"
debs=$(mktemp -d "$DIR/debs.XXXXXX")
trap 'rm -rf "$debs"' EXIT
chown _apt "$debs" 2>/dev/null || true  # apt-get download drops to _apt
echo "Downloading $pkg"
(cd "$debs" && apt-get download -q "$pkg")
echo "Extracting $(basename "$debs"/*.deb)"
dpkg-deb -x "$debs"/*.deb "$DIR/kroot"
echo "Running depmod"
depmod -b "$DIR/kroot" "$kver"
echo "Extracting vmlinux from vmlinuz"
python3 "$TOOLS/vmrun.py" extract-vmlinux "$DIR/kroot/boot/vmlinuz-$kver" \
    "$DIR/kroot/boot/vmlinux-$kver"
echo "$kver" >"$DIR/kernel-version"
echo "Kernel $kver ready: python3 $TOOLS/vmrun.py --kernel $SERIES 'uname -r'"
