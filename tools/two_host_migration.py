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

"""Live-migrate a guest between two hosts that share one disk.

Usage, as root on the host (tools/two-host-migration.sh sets up and runs
it)::

    python3 tools/two_host_migration.py [--timeout 2400]

Two throw-away VMs boot side by side, each with Debian's kernel, its own
LIO and vhost_brick: the two compute hosts. They share one raw disk image
(virtio-blk, no host cache), their "SAN LUN", and a network of their own
(a QEMU socket netdev between them: 10.254.0.1 and 10.254.0.2). Each host
exports the LUN as os-brick's connector would, named after the volume id
(same WWN, same unit serial on both). On the source a nested guest
(QEMU, TCG, ``migratable``) boots from the endpoint, prints its disk's
identity and writes numbered blocks, printing each number once its
write and flush were acknowledged; the destination starts QEMU with
``-incoming tcp:``; the source migrates over the hosts' network and
deletes its endpoint once its QEMU is gone. On the destination the guest
prints its disk's identity again and writes on; then every acknowledged
number must be on the LUN, and the destination deletes its endpoint.

Raw QEMU, not libvirt: the hosts are initramfs VMs over the host's root,
with no libvirtd configured for a network of its own; the libvirt side of
a migration is test_libvirt_migration.py's (two libvirtd on one kernel).

Each VM runs this script with ``--role``; they meet through files in a
directory both mount (``--share``). The exit status is 0 if the
migration completed, no write failed, every acknowledged write is on the
LUN, the guest saw the same identity on both hosts, and both endpoints
were deleted.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
# The checkout's test modules (the nested guest), which tools/ sits beside.
sys.path[:0] = [TOOLS, REPO]
import vmrun  # noqa: E402

from vhost_brick.tests.functional import base  # noqa: E402
from vhost_brick.tests.functional import guest  # noqa: E402

VOLUME_ID = '5e1f0a7c-28d4-4b6e-9f3a-0c9d2b7e4a11'
LUN_SIZE = 64 << 20
LUN_SECTOR0 = 'two-host-lun-sector0'
PORT = 4444
ADDRESSES = {'source': '10.254.0.1', 'destination': '10.254.0.2'}
# Where each VM sees the shared LUN: the first virtio-blk disk.
LUN = '/dev/vda'
BOOT_TIMEOUT = 900


def wait_for(path, timeout):
    """Wait for a file the other host writes; return its JSON."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError('%s did not appear within %ss'
                                 % (path, timeout))
        time.sleep(1)
    with open(path) as f:
        return json.load(f)


def publish(path, data):
    with open(path + '.tmp', 'w') as f:
        json.dump(data, f)
    os.rename(path + '.tmp', path)


def host_up(address):
    """The host's LUN and network (eth0 at address), drivers loaded.

    Nothing loads them in the VM (no udev), nor renames eth0.
    """
    subprocess.run(['modprobe', '-a', 'virtio_blk', 'virtio_net'],
                   check=True)
    deadline = time.monotonic() + 60
    while not (os.path.exists(LUN) and os.path.exists('/sys/class/net/eth0')):
        if time.monotonic() > deadline:
            raise AssertionError('%s or eth0 did not appear' % LUN)
        time.sleep(0.2)
    for command in (['ip', 'link', 'set', 'lo', 'up'],
                    ['ip', 'link', 'set', 'eth0', 'up'],
                    ['ip', 'addr', 'add', address + '/24', 'dev', 'eth0']):
        subprocess.run(command, check=True)


def export():
    """The LUN's endpoint, as the os-brick connector names it."""
    from vhost_brick import executor
    from vhost_brick.integrations import volume
    vhost = executor.VhostExecutor(root_helper=None)
    return vhost, volume.export(vhost, LUN, VOLUME_ID)


def identity(nested):
    status, lines = nested.run(guest.IDENTITY)
    found = [line.split()[1:] for line in lines
             if line.startswith('identity ')]
    if status or not found:
        raise AssertionError('no identity: %s' % lines)
    return found[0]


def source(share):
    host_up(ADDRESSES['source'])
    vhost, endpoint = export()
    nested = guest.NestedGuest(endpoint, 'two-hosts', migratable=True)
    nested.start()
    try:
        nested.expect('written', BOOT_TIMEOUT)
        seen = identity(nested)
        nested.run(guest.NUMBERED_WRITER + ' & true')
        nested.expect('acked 5', 300)
        wait_for(os.path.join(share, 'destination-ready'), BOOT_TIMEOUT)
        info = nested.migrate('tcp:%s:%d' % (ADDRESSES['destination'],
                                             PORT))
        nested.monitor('quit')
        nested.stop()
    finally:
        nested.kill()
    finish(share, 'source', vhost, endpoint, nested, identity=seen,
           migration=info,
           acknowledged=guest.acknowledged(nested.console.output))


def finish(share, role, vhost, endpoint, nested, **results):
    """Delete the host's endpoint (its QEMU is gone); publish results."""
    vhost.delete_endpoint(endpoint.wwn)
    publish(os.path.join(share, role + '.json'), dict(
        results, endpoint=endpoint.to_dict(),
        failed_writes=guest.failed_writes(nested.console.output),
        endpoint_deleted=all(ep.wwn != endpoint.wwn
                             for ep in vhost.list_endpoints())))


def destination(share):
    host_up(ADDRESSES['destination'])
    vhost, endpoint = export()
    nested = guest.NestedGuest(endpoint, 'two-hosts', migratable=True,
                               incoming='tcp:0:%d' % PORT)
    nested.start()
    try:
        if 'inmigrate' not in nested.monitor('info status'):
            raise AssertionError('QEMU is not waiting for the guest')
        publish(os.path.join(share, 'destination-ready'), {})
        from_source = wait_for(os.path.join(share, 'source.json'),
                               BOOT_TIMEOUT + 600)
        last_on_source = max(from_source['acknowledged'])
        nested.expect('acked %d' % (last_on_source + 5), 300)
        seen = identity(nested)
        status, lines = nested.run('touch /stop; wait')
        if status:
            raise AssertionError('the writer did not stop: %s' % lines)
        on_destination = guest.acknowledged(nested.console.output)
        last = max(on_destination)
        missing = [n for n in range(1, last + 1) if read_block(n) !=
                   'seq %08d' % n]
        nested.release()
        nested.stop()
    finally:
        nested.kill()
    finish(share, 'destination', vhost, endpoint, nested, identity=seen,
           acknowledged=on_destination, missing_on_lun=missing)


def read_block(number):
    """A numbered write on the LUN, read past the page cache."""
    return base.read_sector(LUN, guest.NUMBERED_BLOCK + number)


def boot_hosts(args):
    """Boot both VMs; return each one's exit status and the results."""
    work = tempfile.mkdtemp(prefix='two-hosts-')
    share = os.path.join(work, 'share')
    os.mkdir(share)
    lun = os.path.join(work, 'lun.img')
    with open(lun, 'wb') as image:
        image.write(LUN_SECTOR0.encode().ljust(512, b'\0'))
        image.truncate(LUN_SIZE)
    port = 20000 + os.getpid() % 20000
    status = {}

    def host(role, netdev, mac):
        qemu_args = [
            '-drive', 'file=%s,format=raw,if=none,id=lun,cache=none,'
            'file.locking=off' % lun,
            '-device', 'virtio-blk-pci,drive=lun,serial=san-lun',
            '-netdev', 'socket,id=net,%s=127.0.0.1:%d' % (netdev, port),
            '-device', 'virtio-net-pci,netdev=net,mac=%s' % mac]
        command = '%s %s --role %s --share %s' % (
            sys.executable, os.path.abspath(__file__), role, share)
        with open(os.path.join(work, role + '.log'), 'wb') as log:
            status[role] = vmrun.run(
                command, mem='1G', smp=1, timeout=args.timeout,
                shares=[share], qemu_args=qemu_args, out=log,
                kernel_args='acpi=noirq')

    threads = [threading.Thread(target=host, args=(
        'source', 'listen', '52:54:00:fe:00:01'))]
    threads[0].start()
    time.sleep(2)  # the source's netdev listens; the destination connects
    threads.append(threading.Thread(target=host, args=(
        'destination', 'connect', '52:54:00:fe:00:02')))
    threads[1].start()
    for thread in threads:
        thread.join()
    results = {}
    for role in ('source', 'destination'):
        path = os.path.join(share, role + '.json')
        if os.path.exists(path):
            with open(path) as f:
                results[role] = json.load(f)
    return work, status, results


def report(status, results):
    """Print what happened; return the problems found."""
    problems = ['%s VM exited %s' % (role, rc)
                for role, rc in sorted(status.items()) if rc]
    if set(results) != {'source', 'destination'}:
        return problems + ['results missing: %s' % sorted(
            {'source', 'destination'} - set(results))]
    src, dst = results['source'], results['destination']
    migration = src['migration']
    print('migration: %s; %s in all, %s downtime (nested TCG guest, two '
          'TCG VMs on one machine)' % (migration.get('migration status'),
                                       migration.get('total time'),
                                       migration.get('downtime')))
    print('endpoint: source %s, destination %s'
          % (src['endpoint']['wwn'], dst['endpoint']['wwn']))
    print('identity seen by the guest (serial, WWID): before %s, after %s'
          % (' '.join(src['identity']), ' '.join(dst['identity'])))
    print('acknowledged writes: %d on the source, %d on the destination; '
          'missing on the LUN: %s' % (len(src['acknowledged']),
                                      len(dst['acknowledged']),
                                      dst['missing_on_lun'] or 'none'))
    print('endpoints deleted: source %s, destination %s'
          % (src['endpoint_deleted'], dst['endpoint_deleted']))
    checks = (
        (migration.get('migration status') == 'completed',
         'the migration did not complete'),
        (src['identity'] == dst['identity'],
         'the guest saw another disk identity after the migration'),
        (not src['failed_writes'] + dst['failed_writes'],
         'writes failed: %s' % (src['failed_writes'] +
                                dst['failed_writes'])),
        (not dst['missing_on_lun'], 'acknowledged writes missing'),
        (bool(dst['acknowledged']), 'no write on the destination'),
        (src['endpoint_deleted'] and dst['endpoint_deleted'],
         'an endpoint was left behind'))
    return problems + [message for ok, message in checks if not ok]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--role', choices=('source', 'destination'))
    parser.add_argument('--share')
    parser.add_argument('--timeout', type=float, default=2400)
    parser.add_argument('--keep', action='store_true',
                        help='keep the work directory (logs, LUN image)')
    args = parser.parse_args()
    if args.role:
        globals()[args.role](args.share)
        return 0
    started = time.monotonic()
    work, status, results = boot_hosts(args)
    problems = report(status, results)
    print('wall time: %.0f s; logs in %s' % (time.monotonic() - started,
                                             work))
    for problem in problems:
        print('FAILED: ' + problem)
    if not problems and not args.keep:
        shutil.rmtree(work)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
