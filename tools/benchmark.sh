#!/bin/bash
# Run the benchmarks in one boot of the throw-away VM, as root: one command.
#   tools/attach_bench.py: a Cinder LVM volume attached for a hypervisor
#     and detached, vhost against Cinder's default iSCSI (lioadm);
#   tools/benchmark.py: the control plane against the other ways to drive
#     LIO, and the privsep path against its peers.
# --attach-sequential N and --attach-concurrent M go to attach_bench.py
# (as --sequential and --concurrent); every other argument to
# benchmark.py (e.g. --levels 10,100,1000 --reps 5).
# Installs Debian's targetcli-fb (a baseline), open-iscsi, lvm2 and sudo
# (the VM sees the host's packages) and, in a virtualenv, vhost_brick with
# Cinder and os-brick (os-brick's privsep daemon is a peer of ours).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${VHOST_BRICK_VM_DIR:-/var/cache/vhost-brick-vm}
VENV=$DIR/bench-venv
attach_args=()
control_args=()
while [ $# -gt 0 ]; do
    case $1 in
        --attach-sequential|--attach-concurrent)
            attach_args+=("--${1#--attach-}" "${2:?$1 needs a value}")
            shift 2 ;;
        --attach-sequential=*|--attach-concurrent=*)
            attach_args+=("--${1#--attach-}"); shift ;;
        *) control_args+=("$1"); shift ;;
    esac
done
export DEBIAN_FRONTEND=noninteractive
"$REPO/tools/vm-setup.sh" >/dev/null
"$REPO/tools/apt-ensure.sh" targetcli-fb open-iscsi lvm2 sudo
python3 -m venv "$VENV"
# Cinder as the cinder tox environment installs it, and the test
# requirements for the Cinder host the attach rows set up. Once they are
# there, only vhost_brick is installed again (Cinder's ~150 packages took
# up to half an hour to resolve and install on these machines).
if "$VENV/bin/python" -c 'import cinder, fixtures' 2>/dev/null; then
    install=(--no-deps "$REPO")
else
    install=("$REPO" -r "$REPO/test-requirements.txt" 'cinder>=29.0.0')
fi
"$VENV/bin/pip" install --disable-pip-version-check "${install[@]}" \
    >"$DIR/bench-pip.log" 2>&1 || { cat "$DIR/bench-pip.log"; exit 1; }
cd "$REPO"
# The attach rows first: benchmark.py leaves its endpoints on null_blk
# devices, which every LVM command would then scan.
# 2G: with 1G the guest SIGKILLed the run at N=1000 (memory); 2G completes.
# --tcg-stats: a flush of TCG's code cache slows whatever is timed next, so
# the run says how many it had (see norandmaps in vmrun.py).
exec python3 tools/vmrun.py --timeout 9000 --mem 2G --tcg-stats \
    "modprobe -a configfs target_core_iblock vhost_scsi loop dm_mod &&
     export PATH=$VENV/bin:\$PATH &&
     $VENV/bin/python tools/attach_bench.py ${attach_args[*]} &&
     $VENV/bin/python tools/benchmark.py ${control_args[*]}"
