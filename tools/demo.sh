#!/bin/bash
# The README's one-command demo, for a fresh Debian machine, as root.
#
# Sets up what it needs (QEMU, the Debian kernel, vhost_brick in a venv),
# boots that kernel in a throw-away VM (so the host needs no LIO) and
# there shows vhost_brick's main job end to end: a loop device, an
# endpoint created by VhostExecutor, a guest reading the disk through
# vhost-scsi, and the endpoint deleted again.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${VHOST_BRICK_VM_DIR:-/var/cache/vhost-brick-vm}
VENV=$DIR/demo-venv

echo "== Setting up (packages, guest kernel) =="
"$REPO/tools/vm-setup.sh"
echo "== Installing vhost_brick into $VENV =="
python3 -m venv "$VENV"
"$VENV/bin/pip" install --disable-pip-version-check "$REPO" \
    >"$DIR/demo-pip.log" 2>&1 || { cat "$DIR/demo-pip.log"; exit 1; }

echo "== Booting a throw-away VM with Debian's kernel =="
export PATH="$VENV/bin:$PATH"
cd "$REPO"
exec python3 tools/vmrun.py --timeout 600 \
    "$VENV/bin/python tools/demo_guest.py"
