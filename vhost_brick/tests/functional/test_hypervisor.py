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
from vhost_brick import executor
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
    """A running guest reads and writes its disk through an endpoint.

    A nested boot takes minutes under TCG, so the class boots one guest,
    which reads sector 0, writes its marker at sector 16 and then waits;
    each test checks one thing while the guest holds the endpoint, and
    none ends it. The class cleanup lets the guest power off and deletes
    the endpoint, which must then succeed.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not base.ENABLED:
            return
        base.load_kernel_modules()
        cls.sector0 = 'sector0-' + os.urandom(8).hex()
        cls.marker = 'sector16-' + os.urandom(8).hex()
        cls.disk = base.LoopDevice(size=64 << 20, data=cls.sector0.encode())
        cls.disk.setUp()
        cls.addClassCleanup(cls.disk.cleanUp)
        cls.class_executor = executor.VhostExecutor(root_helper=None)
        cls.endpoint = cls.class_executor.create_endpoint(cls.disk.path)
        cls.addClassCleanup(cls.delete_endpoint)
        cls.guest = guest.NestedGuest(cls.endpoint, cls.marker).start()
        cls.addClassCleanup(cls.power_off_guest)
        cls.guest.expect('written')

    @classmethod
    def power_off_guest(cls):
        cls.guest.release()
        status = cls.guest.stop()
        if status:
            raise AssertionError('nested guest exited %d' % status)

    @classmethod
    def delete_endpoint(cls):
        cls.class_executor.delete_endpoint(cls.endpoint.wwn)
        if cls.endpoint.wwn in base.vhost_targets():
            raise AssertionError('%s is still in configfs after its delete'
                                 % cls.endpoint.wwn)

    def test_the_guest_sees_the_disk_lio_exports(self):
        self.assertEqual('disk=LIO-ORG IBLOCK',
                         self.guest.printed('disk=').strip())

    def test_the_guest_reads_the_backing_device(self):
        self.assertEqual('sector0=' + self.sector0,
                         self.guest.printed('sector0='))

    def test_the_guest_write_reaches_the_backing_device(self):
        with open(self.disk.backing_file, 'rb') as backing:
            backing.seek(16 * 512)
            self.assertEqual(self.marker, backing.read(512).rstrip(b'\0')
                             .decode(errors='replace'))

    def test_the_kernel_serves_the_guest_disk(self):
        [(kind, _task)] = self.guest.vhost_workers()
        self.assertEqual(expected_worker_kind(), kind)

    def test_delete_is_refused_while_the_guest_holds_the_endpoint(self):
        before = base.configfs_snapshot()
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, self.endpoint.wwn)
        self.assertEqual(before, base.configfs_snapshot())
        self.assertEqual(self.endpoint,
                         self.executor.get_endpoint(self.endpoint.wwn))

    def test_a_paused_guest_keeps_its_endpoint(self):
        # QEMU's "stop" (a pause, a snapshot, the end of a migration)
        # releases the endpoint in the kernel; deleting it then would
        # kill the guest at "cont".
        self.guest.monitor('stop')
        self.addCleanup(self.guest.monitor, 'cont')
        self.assertIn('paused', self.guest.monitor('info status'))
        before = base.configfs_snapshot()
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, self.endpoint.wwn)
        self.assertEqual(before, base.configfs_snapshot())


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
