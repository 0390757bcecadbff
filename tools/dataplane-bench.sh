#!/bin/bash
# Run tools/dataplane_bench.py in the throw-away VM, as root: one command.
# Arguments go to dataplane_bench.py (e.g. --runtime 10); --accel kvm boots
# the VM and the fio guests with KVM, for figures that mean something.
# Installs Debian's fio and open-iscsi (the VM and its guests see the
# host's packages).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${VHOST_BRICK_VM_DIR:-/var/cache/vhost-brick-vm}
VENV=$DIR/dataplane-venv
ACCEL=tcg
args=("$@")
for i in "${!args[@]}"; do
    case ${args[$i]} in
        --accel=*) ACCEL=${args[$i]#--accel=} ;;
        --accel) ACCEL=${args[$((i + 1))]:-} ;;
    esac
done
export DEBIAN_FRONTEND=noninteractive
"$REPO/tools/vm-setup.sh" >/dev/null
"$REPO/tools/apt-ensure.sh" fio open-iscsi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --disable-pip-version-check "$REPO" \
    >"$DIR/dataplane-pip.log" 2>&1 || { cat "$DIR/dataplane-pip.log"; exit 1; }
cd "$REPO"
exec python3 tools/vmrun.py --timeout 3600 --mem 3G --accel "$ACCEL" \
    "$VENV/bin/python tools/dataplane_bench.py $*"
