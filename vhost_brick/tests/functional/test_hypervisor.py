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

"""A real hypervisor reads and writes a disk through an endpoint."""

import os

from vhost_brick import exception
from vhost_brick.tests.functional import base
from vhost_brick.tests.functional import guest


# Debian's 6.12 has the switch back to kernel-thread workers (upstream
# 6.16: "vhost: add a module parameter to fork from owner"); N means
# kernel threads.
FORK_FROM_OWNER = '/sys/module/vhost/parameters/fork_from_owner_default'


def expected_worker_kind():
    """What this kernel makes a vhost worker: see NestedGuest."""
    major, minor = (int(part) for part in
                    os.uname().release.split('.')[:2])
    if (major, minor) < (6, 4):
        return 'kernel thread'
    try:
        with open(FORK_FROM_OWNER) as switch:
            if switch.read().strip() == 'N':
                return 'kernel thread'
    except FileNotFoundError:
        pass
    return 'qemu thread'


class HypervisorTestCase(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        self.sector0 = 'sector0-' + os.urandom(8).hex()
        self.marker = 'sector16-' + os.urandom(8).hex()
        self.disk = self.useFixture(base.LoopDevice(
            size=64 << 20, data=self.sector0.encode()))
        self.endpoint = self.executor.create_endpoint(self.disk.path)
        self.addCleanup(self.executor.delete_endpoint, self.endpoint.wwn)
        self.guest = guest.NestedGuest(self.endpoint, self.marker).start()
        self.addCleanup(self.guest.stop)
        self.addCleanup(self.guest.release)

    def backing_sector16(self):
        with open(self.disk.backing_file, 'rb') as backing:
            backing.seek(16 * 512)
            return backing.read(512).rstrip(b'\0').decode(errors='replace')

    def test_guest_reads_and_writes_through_the_endpoint(self):
        self.assertEqual('disk=LIO-ORG IBLOCK',
                         self.guest.expect('disk=').strip())
        self.assertEqual('sector0=' + self.sector0,
                         self.guest.expect('sector0='))
        self.guest.expect('written')
        self.assertEqual(self.marker, self.backing_sector16())

    def test_the_kernel_serves_the_guest_disk(self):
        self.guest.expect('written')
        [(kind, _task)] = self.guest.vhost_workers()
        self.assertEqual(expected_worker_kind(), kind)

    def test_delete_is_refused_while_the_guest_holds_the_endpoint(self):
        self.guest.expect('written')
        before = base.configfs_snapshot()
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, self.endpoint.wwn)
        self.assertEqual(before, base.configfs_snapshot())
        self.assertEqual(self.endpoint,
                         self.executor.get_endpoint(self.endpoint.wwn))
        self.guest.release()
        self.guest.expect('host said go')
        self.assertEqual(0, self.guest.stop())
        self.executor.delete_endpoint(self.endpoint.wwn)
        self.assertNotIn(self.endpoint.wwn, base.vhost_targets())

    def test_a_paused_guest_keeps_its_endpoint(self):
        # QEMU's "stop" (a pause, a snapshot, the end of a migration)
        # releases the endpoint in the kernel; deleting it then would
        # kill the guest at "cont".
        self.guest.expect('written')
        self.guest.monitor('stop')
        self.assertIn('paused', self.guest.monitor('info status'))
        before = base.configfs_snapshot()
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, self.endpoint.wwn)
        self.assertEqual(before, base.configfs_snapshot())
        self.guest.monitor('cont')
        self.guest.release()
        self.guest.expect('host said go')
        self.assertEqual(0, self.guest.stop())


class NotYetBootedGuestTestCase(base.FunctionalTestCase):
    """QEMU started, its guest not running: the endpoint is not claimed."""

    def test_delete_is_refused_until_qemu_exits(self):
        disk = self.make_disk()
        endpoint = self.executor.create_endpoint(disk)
        self.addCleanup(self.executor.delete_endpoint, endpoint.wwn)
        qemu = guest.NestedGuest(endpoint, 'never-booted', paused=True)
        qemu.start()
        self.addCleanup(qemu.stop)
        self.assertIn('prelaunch', qemu.monitor('info status'))
        before = base.configfs_snapshot()
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, endpoint.wwn)
        self.assertEqual(before, base.configfs_snapshot())
        qemu.monitor('quit')
        self.assertEqual(0, qemu.stop())
        self.executor.delete_endpoint(endpoint.wwn)
        self.assertNotIn(endpoint.wwn, base.vhost_targets())


class ReadOnlyTestCase(base.FunctionalTestCase):

    def test_the_guest_sees_a_read_only_lun_and_cannot_write_it(self):
        sector0 = 'sector0-' + os.urandom(8).hex()
        disk = self.useFixture(base.LoopDevice(size=64 << 20,
                                               data=sector0.encode()))
        endpoint = self.create(disk.path, read_only=True)
        nested = guest.NestedGuest(endpoint, 'must-not-land').start()
        self.addCleanup(nested.stop)
        self.addCleanup(nested.release)
        self.assertEqual('sector0=' + sector0, nested.expect('sector0='))
        self.assertEqual('ro=1', nested.expect('ro='))
        nested.expect('write failed')
        with open(disk.backing_file, 'rb') as backing:
            backing.seek(16 * 512)
            self.assertEqual(bytes(512), backing.read(512))
