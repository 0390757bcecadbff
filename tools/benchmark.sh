#!/bin/bash
# Run tools/benchmark.py in the throw-away VM, as root: one command.
# Arguments go to benchmark.py (e.g. --levels 10,100,1000 --reps 5).
# Installs Debian's targetcli-fb (a baseline; the guest sees host packages)
# and, in its virtualenv, os-brick (its privsep daemon is a peer).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${VHOST_BRICK_VM_DIR:-/var/cache/vhost-brick-vm}
VENV=$DIR/bench-venv
export DEBIAN_FRONTEND=noninteractive
"$REPO/tools/vm-setup.sh" >/dev/null
if ! dpkg-query -W -f='${Status}' targetcli-fb 2>/dev/null |
        grep -q 'ok installed'; then
    apt-get install -y -q --no-install-recommends targetcli-fb >/dev/null ||
        { apt-get update -q >/dev/null &&
          apt-get install -y -q --no-install-recommends targetcli-fb \
              >/dev/null; }
fi
python3 -m venv "$VENV"
# os-brick: its privsep daemon is the peer of vhost_brick's.
"$VENV/bin/pip" install --disable-pip-version-check "$REPO" \
    "$(grep -o '^os-brick[^ #]*' "$REPO/test-requirements.txt")" \
    >"$DIR/bench-pip.log" 2>&1 || { cat "$DIR/bench-pip.log"; exit 1; }
cd "$REPO"
# 2G: with 1G the guest SIGKILLed the run at N=1000 (memory); 2G completes.
# --tcg-stats: a flush of TCG's code cache slows whatever is timed next, so
# the run says how many it had (see norandmaps in vmrun.py).
exec python3 tools/vmrun.py --timeout 5400 --mem 2G --tcg-stats \
    "PATH=$VENV/bin:\$PATH $VENV/bin/python tools/benchmark.py $*"
