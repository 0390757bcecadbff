#!/bin/bash
# Install the Debian packages named as arguments unless all are there:
# apt-get update only when the first install cannot find them.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(dpkg-query -W -f='${Status}\n' "$@" 2>/dev/null |
        grep -c 'ok installed')" != $# ]; then
    apt-get install -y -q --no-install-recommends "$@" >/dev/null ||
        { apt-get update -q >/dev/null &&
          apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
fi
