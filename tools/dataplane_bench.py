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

"""fio in a guest on one block device, given to it four ways.

Usage, as root on a host with LIO (tools/dataplane-bench.sh runs it in
the throw-away VM)::

    python3 tools/dataplane_bench.py [--accel tcg|kvm] [--device PATH]
        [--runtime SECONDS] [--size MIB] [--ways NAME,...]

The ways, each in a guest of its own booting this host's kernel (its root
is this host's over virtio-9p, as tools/vmrun.py boots one):

* ``vhost``: a vhost_brick endpoint, ``-device vhost-scsi-pci,wwpn=...``:
  the kernel serves the guest's queues (vhost_scsi, LIO's iblock);
* ``virtio-blk``: QEMU's ``virtio-blk-pci`` on the device, ``cache=none``,
  ``aio=native``, an iothread: the usual local disk, the baseline;
* ``virtio-scsi``: QEMU's ``virtio-scsi-pci`` (same iothread) with
  ``scsi-hd`` on the device: the same guest driver as vhost, served by
  QEMU;
* ``iscsi``: the device through LIO's iSCSI target and open-iscsi's
  initiator on this host (Cinder's LVM volume with ``lioadm``, attached
  by os-brick), then virtio-blk as above.

In each, fio (libaio, O_DIRECT) runs 4 KiB random reads and writes at
queue depth 1 and 32 and 1 MiB sequential reads and writes, one after
another; the table gives IOPS, bandwidth and completion-latency
percentiles, and each way's IOPS as a ratio to virtio-blk's.

Under TCG the guest's every instruction is emulated: the figures say
nothing about real speed (the first line of the output says so), only
that the bench runs. ``--accel kvm`` on a host with working KVM gives
figures that mean something. The default device is a RAM disk (``brd``),
so the storage is not what is measured; ``--device`` names another,
whose contents fio overwrites.
"""

import argparse
import contextlib
import glob
import io
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iscsi_host  # noqa: E402
import vmrun  # noqa: E402

from vhost_brick import attach  # noqa: E402
from vhost_brick import executor  # noqa: E402

GUEST_MEM = '1G'
GUEST_VCPUS = 2
# acpi=noirq: virtio_pci's ACPI interrupt-link setup takes a minute under
# nested TCG (doc/source/testing.rst); MSI-X does not need it.
GUEST_KERNEL_ARGS = 'acpi=noirq'
ISCSI_IQN = 'iqn.2026-12.org.vhost-brick:dataplane'
BEGIN, END = '@@FIO-JSON-BEGIN@@', '@@FIO-JSON-END@@'
# (name, fio --rw, block size, queue depth)
JOBS = (
    ('4k randread qd1', 'randread', '4k', 1),
    ('4k randread qd32', 'randread', '4k', 32),
    ('4k randwrite qd1', 'randwrite', '4k', 1),
    ('4k randwrite qd32', 'randwrite', '4k', 32),
    ('1M read qd8', 'read', '1M', 8),
    ('1M write qd8', 'write', '1M', 8),
)


def blockdev_args(device):
    """The device as QEMU's block layer opens it, and an iothread."""
    return ['-object', 'iothread,id=io0', '-blockdev', json.dumps({
        'driver': 'host_device', 'filename': device, 'node-name': 'disk0',
        'aio': 'native', 'cache': {'direct': True, 'no-flush': False}})]


@contextlib.contextmanager
def vhost_endpoint(device, vhost):
    endpoint = vhost.create_endpoint(device)
    try:
        yield attach.qemu_device_args(endpoint, vcpus=GUEST_VCPUS)
    finally:
        vhost.delete_endpoint(endpoint.wwn)


@contextlib.contextmanager
def virtio_blk(device, vhost):
    yield blockdev_args(device) + [
        '-device', 'virtio-blk-pci,drive=disk0,iothread=io0,num-queues=%d'
        % GUEST_VCPUS]


@contextlib.contextmanager
def virtio_scsi(device, vhost):
    yield blockdev_args(device) + [
        '-device', 'virtio-scsi-pci,id=scsi0,iothread=io0,num_queues=%d'
        % GUEST_VCPUS, '-device', 'scsi-hd,bus=scsi0.0,drive=disk0']


@contextlib.contextmanager
def iscsi_then_virtio_blk(device, vhost):
    """The device through LIO's iSCSI target and open-iscsi, on this host.

    What Cinder's LVM driver does with ``target_helper = lioadm`` and
    os-brick's iSCSI connector, reduced to its data path: an iblock
    backstore, an iSCSI target on 127.0.0.1 with an ACL for this host's
    initiator, ``iscsiadm`` login through ``iscsid``, then QEMU's
    virtio-blk on the SCSI disk that appears.
    """
    import rtslib_fb
    os.makedirs('/etc/target', exist_ok=True)  # rtslib-fb 2.2's dbroot
    with iscsi_host.iscsid():
        storage = rtslib_fb.BlockStorageObject('dataplane-iscsi', dev=device)
        target = rtslib_fb.Target(rtslib_fb.FabricModule('iscsi'),
                                  ISCSI_IQN)
        try:
            tpg = rtslib_fb.TPG(target, 1)
            tpg.set_attribute('authentication', '0')
            lun = rtslib_fb.LUN(tpg, 0, storage)
            rtslib_fb.MappedLUN(rtslib_fb.NodeACL(
                tpg, iscsi_host.initiator_name()), 0, lun)
            rtslib_fb.NetworkPortal(tpg, '127.0.0.1', 3260)
            tpg.enable = True
            iscsiadm('-m', 'discovery', '-t', 'sendtargets',
                     '-p', '127.0.0.1')
            iscsiadm('-m', 'node', '-T', ISCSI_IQN, '-p', '127.0.0.1',
                     '--login')
            try:
                yield blockdev_args(iscsi_disk()) + [
                    '-device', 'virtio-blk-pci,drive=disk0,iothread=io0,'
                    'num-queues=%d' % GUEST_VCPUS]
            finally:
                iscsiadm('-m', 'node', '-T', ISCSI_IQN, '-p', '127.0.0.1',
                         '--logout')
                iscsiadm('-m', 'node', '-o', 'delete', '-T', ISCSI_IQN)
        finally:
            target.delete()
            storage.delete()


def iscsiadm(*args):
    subprocess.run(('iscsiadm',) + args, check=True,
                   stdout=subprocess.DEVNULL)


def iscsi_disk(timeout=60):
    """/dev/sdX of the one iSCSI session (no udev: found in sysfs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        disks = glob.glob('/sys/class/iscsi_session/session*/device/'
                          'target*/*/block/*')
        if disks:
            return '/dev/' + os.path.basename(disks[0])
        time.sleep(0.2)
    raise RuntimeError('no disk of the iSCSI session after %ds' % timeout)


# (name, the guest's disk, a context giving QEMU's arguments), in the
# order of the table; the first is the baseline.
WAYS = (('virtio-blk', '/dev/vda', virtio_blk),
        ('vhost', '/dev/sda', vhost_endpoint),
        ('virtio-scsi', '/dev/sda', virtio_scsi),
        ('iscsi', '/dev/vda', iscsi_then_virtio_blk))
BASELINE = WAYS[0][0]


def fio_command(disk, runtime, size_mib):
    args = ['fio', '--output-format=json', '--ioengine=libaio', '--direct=1',
            '--filename=' + disk, '--size=%dM' % size_mib, '--time_based',
            '--runtime=%d' % runtime, '--ramp_time=1', '--randrepeat=0']
    for name, rw, block_size, depth in JOBS:
        args += ['--name=' + name.replace(' ', '-'), '--stonewall',
                 '--rw=' + rw, '--bs=' + block_size,
                 '--iodepth=%d' % depth]
    return ' '.join(args)


def guest_script(disk, runtime, size_mib):
    """What the guest runs: find its disk, run fio, print its JSON."""
    return ('modprobe -a virtio_blk virtio_scsi sd_mod; '
            'for i in $(seq 600); do [ -b %(disk)s ] && break; sleep 0.1; '
            'done; echo %(begin)s; %(fio)s; rc=$?; echo %(end)s; exit $rc'
            % {'disk': disk, 'begin': BEGIN, 'end': END,
               'fio': fio_command(disk, runtime, size_mib)})


def run_way(qemu_args, disk, args):
    """Boot a guest with qemu_args, run fio there; its parsed report."""
    out = io.BytesIO()
    rc = vmrun.run(guest_script(disk, args.runtime, args.size),
                   mem=GUEST_MEM, smp=GUEST_VCPUS, accel=args.accel,
                   timeout=args.guest_timeout, out=out, qemu_args=qemu_args,
                   kernel_args=GUEST_KERNEL_ARGS)
    text = out.getvalue().decode(errors='replace')
    if rc != 0 or BEGIN not in text or END not in text:
        raise RuntimeError('the guest failed (status %d):\n%s' % (rc, text))
    return json.loads(text.split(BEGIN, 1)[1].split(END, 1)[0])


def figures(report):
    """{job name: (IOPS, MiB/s, p50 us, p99 us)} of a fio JSON report."""
    result = {}
    for job in report['jobs']:
        name = job['jobname'].replace('-', ' ')
        side = job['read'] if job['read']['io_bytes'] else job['write']
        percentiles = side['clat_ns'].get('percentile', {})
        result[name] = (side['iops'], side['bw'] / 1024.0,
                        percentiles.get('50.000000', 0) / 1000.0,
                        percentiles.get('99.000000', 0) / 1000.0)
    return result


def print_table(results):
    print('%-18s %-12s %10s %9s %9s %9s %8s' % (
        'job', 'way', 'IOPS', 'MiB/s', 'p50 us', 'p99 us',
        'x ' + BASELINE))
    for name, _rw, _bs, _depth in JOBS:
        baseline = results[BASELINE][name][0] if BASELINE in results else 0
        for way, by_job in results.items():
            iops, bandwidth, p50, p99 = by_job[name]
            print('%-18s %-12s %10.1f %9.2f %9.0f %9.0f %8s' % (
                name, way, iops, bandwidth, p50, p99,
                '%.2fx' % (iops / baseline) if baseline else '-'))


def ram_disk(size_mib):
    """A brd RAM disk of size_mib, made for this run."""
    if os.path.exists('/dev/ram0'):
        raise SystemExit('/dev/ram0 exists already: pass --device')
    subprocess.run(['modprobe', 'brd', 'rd_nr=1',
                    'rd_size=%d' % (size_mib * 1024)], check=True)
    return '/dev/ram0'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--accel', choices=('tcg', 'kvm'), default='tcg')
    parser.add_argument('--device', help='block device fio overwrites '
                        '(default: a RAM disk made for the run)')
    parser.add_argument('--runtime', type=int, default=5,
                        help='seconds per fio job (default 5)')
    parser.add_argument('--size', type=int, default=256,
                        help='MiB of the device fio uses (default 256)')
    parser.add_argument('--guest-timeout', type=int, default=900)
    parser.add_argument('--ways', default=','.join(way[0] for way in WAYS),
                        help='which ways, comma-separated (default: all)')
    args = parser.parse_args(argv)
    chosen = args.ways.split(',')
    unknown = set(chosen) - {way[0] for way in WAYS}
    if unknown:
        parser.error('unknown ways: %s' % ', '.join(sorted(unknown)))
    if args.accel == 'tcg':
        print('TCG: every guest instruction is emulated; these figures say '
              'nothing about real speed, only that the bench runs. Run '
              'with --accel kvm on a host with working KVM.')
    else:
        print('KVM: figures of this host, its kernel and its device.')
    sys.stdout.flush()
    subprocess.run(['modprobe', '-a', 'vhost_scsi', 'target_core_iblock'],
                   check=True)
    device = args.device or ram_disk(args.size)
    vhost = executor.VhostExecutor(root_helper=None)
    results = {}
    for way, disk, qemu_args in WAYS:
        if way not in chosen:
            continue
        started = time.monotonic()
        with qemu_args(device, vhost) as arguments:
            results[way] = figures(run_way(arguments, disk, args))
        print('%s: done in %.0f s' % (way, time.monotonic() - started),
              flush=True)
    print_table(results)
    return 0


if __name__ == '__main__':
    sys.exit(main())
