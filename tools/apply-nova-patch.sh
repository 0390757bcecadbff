#!/bin/sh
# Apply contrib/nova/vhost-volumes.patch to the Nova installed in the
# site-packages directory $1, once. Fails, saying so, if the patch
# neither applies nor is applied already (a Nova it was not made for).
set -eu
patch_file=$(cd "$(dirname "$0")/.." && pwd)/contrib/nova/vhost-volumes.patch
cd "$1"
if patch -p1 -R -s -f --dry-run <"$patch_file" >/dev/null 2>&1; then
    echo "apply-nova-patch: already applied to $1/nova"
    exit 0
fi
if ! patch -p1 -f --no-backup-if-mismatch <"$patch_file"; then
    echo "apply-nova-patch: $patch_file does not apply to $1/nova" >&2
    exit 1
fi
