#!/bin/bash
# Live-migrate a nested guest between two throw-away VMs sharing one disk
# (tools/two_host_migration.py): one command, as root. Installs the VM
# kernel and packages (tools/vm-setup.sh) and, in a virtualenv,
# vhost_brick with the test requirements (the nested guest's helpers).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${VHOST_BRICK_VM_DIR:-/var/cache/vhost-brick-vm}
VENV=$DIR/migration-venv
"$REPO/tools/vm-setup.sh" >/dev/null
"$REPO/tools/apt-ensure.sh" iproute2
python3 -m venv "$VENV"
"$VENV/bin/pip" install --disable-pip-version-check "$REPO" \
    -r "$REPO/test-requirements.txt" \
    >"$DIR/migration-pip.log" 2>&1 || { cat "$DIR/migration-pip.log"; exit 1; }
cd "$REPO"
PATH=$VENV/bin:$PATH exec "$VENV/bin/python" tools/two_host_migration.py "$@"
