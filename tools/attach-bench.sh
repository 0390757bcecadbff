#!/bin/bash
# Run tools/attach_bench.py in the throw-away VM, as root: one command.
# Arguments go to attach_bench.py (e.g. --sequential 10 --concurrent 4).
# Installs Debian's open-iscsi, lvm2 and sudo (the VM sees the host's
# packages) and, in a virtualenv, vhost_brick with Cinder and os-brick.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${VHOST_BRICK_VM_DIR:-/var/cache/vhost-brick-vm}
VENV=$DIR/attach-venv
export DEBIAN_FRONTEND=noninteractive
"$REPO/tools/vm-setup.sh" >/dev/null
"$REPO/tools/apt-ensure.sh" open-iscsi lvm2 sudo
python3 -m venv "$VENV"
# Cinder as the cinder tox environment installs it; the test requirements
# for the Cinder host the functional tests set up. Once they are there,
# only vhost_brick is installed again (Cinder's ~150 packages took up to
# half an hour to resolve and install on these machines).
if "$VENV/bin/python" -c 'import cinder, fixtures' 2>/dev/null; then
    install=(--no-deps "$REPO")
else
    install=("$REPO" -r "$REPO/test-requirements.txt" 'cinder>=29.0.0')
fi
"$VENV/bin/pip" install --disable-pip-version-check "${install[@]}" \
    >"$DIR/attach-pip.log" 2>&1 || { cat "$DIR/attach-pip.log"; exit 1; }
cd "$REPO"
exec python3 tools/vmrun.py --timeout 5400 --mem 2G \
    "modprobe -a configfs target_core_iblock vhost_scsi loop dm_mod; PATH=$VENV/bin:\$PATH $VENV/bin/python tools/attach_bench.py $*"
