#!/bin/bash
# Prepare this Debian host (as root) for tools/vmrun.py:
#  * install qemu-system-x86, kmod (depmod, guest modprobe) and busybox-static
#    (initramfs PID 1), without recommends; apt is skipped if all are present;
#  * download (not install) the kernel package linux-image-amd64 points to,
#    extract it into $VHOST_BRICK_VM_DIR (default /var/cache/vhost-brick-vm),
#    build its modules.dep and an uncompressed vmlinux for a fast PVH boot.
# Idempotent: a finished kernel is recorded in $DIR/kernel-version.
set -euo pipefail

DIR=${VHOST_BRICK_VM_DIR:-/var/cache/vhost-brick-vm}
TOOLS=$(cd "$(dirname "$0")" && pwd)
PACKAGES="qemu-system-x86 kmod busybox-static"
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
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}
pkg=$(kernel_package)
if [ -z "$pkg" ] && [ -z "$updated" ]; then
    apt-get update -q
    pkg=$(kernel_package)
fi
if [ -z "$pkg" ]; then
    echo "vm-setup: cannot tell which kernel linux-image-amd64 depends on" >&2
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
echo "Kernel $kver ready: python3 $TOOLS/vmrun.py 'uname -r'"
