#!/usr/bin/env python3
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Prove that a LIO vhost endpoint serves a real nested hypervisor.

Usage: python3 tools/nested_proof.py [--kernel-dir DIR]

On the host this builds the inner initramfs, boots the outer VM with
vmrun.py and runs itself there with --guest. Inside, with raw configfs
writes only (no vhost_brick, no rtslib), it exports a loop device as an
iblock backstore through a vhost target, then starts a nested
``qemu-system-x86_64 -accel kvm -device vhost-scsi-pci,wwpn=...`` booting
the same kernel (KVM works there because TCG emulates AMD SVM; vmrun.py
boots with kvm_amd.vgif=0, without which this hung ~1 run in 5). The inner
guest prints sector 0 of /dev/sda and writes a marker at sector 16; the
outer side checks both. Exit status 0 means PASS.
"""

import os
import shlex
import subprocess
import sys
import threading
import time

import vmrun

TARGET = '/sys/kernel/config/target'
INNER_TIMEOUT = 120  # seconds; the inner guest normally needs 7-12
INNER_MODULES = ('virtio_pci', 'virtio_scsi', 'sd_mod')
# The kernel hands unknown name=value boot parameters (marker16) to init's
# environment.
INNER_INIT = r"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
modprobe -a virtio_pci virtio_scsi sd_mod
for i in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done
echo disk=$(cat /sys/block/sda/device/vendor /sys/block/sda/device/model)
echo "sector0=$(dd if=/dev/sda bs=512 count=1 2>/dev/null | tr -d '\000')"
printf %s "$marker16" | dd of=/dev/sda bs=512 seek=16 conv=sync 2>/dev/null
sync
poweroff -f
"""


def _write(path, value):
    with open(path, 'w') as f:
        f.write(value)


def _wwn():
    return 'naa.5001405' + os.urandom(5).hex()[:9]


def guest(kernel_dir, initrd):
    """Run inside the outer VM: endpoint via configfs, nested QEMU, checks."""
    start = time.monotonic()
    subprocess.run(['modprobe', '-a', 'configfs', 'loop', 'vhost_scsi',
                    'target_core_iblock', 'kvm_amd'], check=True)
    if not os.path.ismount('/sys/kernel/config'):
        subprocess.run(['mount', '-t', 'configfs', 'configfs',
                        '/sys/kernel/config'], check=True)
    marker0 = 'sector0-marker-' + os.urandom(8).hex()
    marker16 = 'sector16-marker-' + os.urandom(8).hex()
    image = '/run/nested-proof.img'
    with open(image, 'wb') as f:
        f.write(marker0.encode())
        f.truncate(64 << 20)
    loop = subprocess.run(['losetup', '-f', '--show', image], check=True,
                          capture_output=True, text=True).stdout.strip()

    wwn, nexus = _wwn(), _wwn()
    backstore = TARGET + '/core/iblock_0/proof'
    tpg = '%s/vhost/%s/tpgt_1' % (TARGET, wwn)
    lun = tpg + '/lun/lun_0'
    os.makedirs(backstore)
    _write(backstore + '/control', 'udev_path=' + loop)
    _write(backstore + '/udev_path', loop)
    _write(backstore + '/enable', '1')
    os.makedirs(tpg)
    _write(tpg + '/nexus', nexus)
    os.mkdir(lun)
    os.symlink(backstore, lun + '/proof_link')
    configured = time.monotonic()
    print('endpoint %s (nexus %s) -> %s -> %s ready after %.1f s'
          % (wwn, nexus, loop, image, configured - start), flush=True)

    vmlinux = os.path.join(kernel_dir, 'kroot', 'boot',
                           'vmlinux-' + vmrun.kernel_version(kernel_dir))
    cmd = ['qemu-system-x86_64', '-accel', 'kvm', '-cpu', 'host',
           '-machine', 'pc', '-m', '256M', '-smp', '1', '-nodefaults',
           '-no-user-config', '-display', 'none', '-no-reboot',
           '-serial', 'stdio', '-kernel', vmlinux, '-initrd', initrd,
           '-append', 'console=ttyS0 panic=-1 quiet loglevel=1 marker16='
           + marker16,
           '-device', 'vhost-scsi-pci,wwpn=' + wwn]
    print('inner:', ' '.join(map(shlex.quote, cmd)), flush=True)
    inner = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             errors='replace')
    watchdog = threading.Timer(INNER_TIMEOUT, inner.kill)
    watchdog.start()
    lines = []
    for line in inner.stdout:
        lines.append(line.rstrip('\r\n'))
        print('inner| ' + lines[-1], flush=True)
    inner.wait()
    watchdog.cancel()
    finished = time.monotonic()
    with open(image, 'rb') as f:
        f.seek(16 * 512)
        written = f.read(512).rstrip(b'\0').decode(errors='replace')

    os.unlink(lun + '/proof_link')
    for path in (lun, tpg, os.path.dirname(tpg), backstore,
                 os.path.dirname(backstore)):
        os.rmdir(path)
    subprocess.run(['losetup', '-d', loop], check=True)

    read_ok = 'disk=LIO-ORG IBLOCK' in lines and 'sector0=' + marker0 in lines
    write_ok = written == marker16
    print('inner QEMU exit %d after %.1f s; sector 0 read in the guest: %s; '
          'sector 16 in the backing file: %s'
          % (inner.returncode, finished - configured,
             'OK' if read_ok else 'WRONG', 'OK' if write_ok else
             'MISMATCH (%r)' % written))
    print('outer guest total %.1f s' % (time.monotonic() - start))
    return 0 if read_ok and write_ok else 1


def main(argv):
    if argv[:1] == ['--guest']:
        return guest(argv[1], argv[2])
    if argv and (len(argv) != 2 or argv[0] != '--kernel-dir'):
        sys.exit('usage: %s [--kernel-dir DIR]' % sys.argv[0])
    kernel_dir = argv[1] if argv else vmrun.DEFAULT_KERNEL_DIR
    start = time.monotonic()
    try:
        initrd = vmrun.build_initramfs(kernel_dir, INNER_MODULES, INNER_INIT)
        command = ' '.join(map(shlex.quote, (
            sys.executable, os.path.abspath(__file__), '--guest', kernel_dir,
            initrd)))
        rc = vmrun.run(command, kernel_dir=kernel_dir, timeout=300)
    except vmrun.VMError as err:
        sys.exit('nested proof: error: %s' % err)
    print('nested proof: %s (exit %d), wall %.1f s'
          % ('PASS' if rc == 0 else 'FAIL', rc, time.monotonic() - start))
    return rc


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
