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

"""The root side's device policy, lock and disk identity, on a real
kernel: every refusal is typed, names its rule, and changes nothing."""

import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import fixtures

from vhost_brick import exception
from vhost_brick.privileged import backstores
from vhost_brick.privileged import devices
from vhost_brick.privileged import lio
from vhost_brick.privileged import operations
from vhost_brick.privileged import state
from vhost_brick.tests import base as test_base
from vhost_brick.tests.functional import base
from vhost_brick.tests import hostile


RECORD = state.EndpointRecord(state.DEFAULT_STATE_PATH)


def write_partition_table(path, start=2048, sectors=8192):
    """An MBR with one Linux partition, as sfdisk would write it."""
    entry = struct.pack('<B3sB3sII', 0, b'\0\0\0', 0x83, b'\0\0\0', start,
                        sectors)
    with open(path, 'r+b') as disk:
        disk.seek(446)
        disk.write(entry)
        disk.seek(510)
        disk.write(b'\x55\xaa')


class PolicyTestCase(base.FunctionalTestCase):

    def assertRefused(self, device_path, rule,
                      error=exception.DeviceNotAllowed):
        """create_endpoint and the CLI refuse device_path by rule."""
        before = base.configfs_snapshot()
        recorded = RECORD.load()
        err = self.assertRaises(error, self.executor.create_endpoint,
                                device_path)
        self.assertEqual(rule, err.kwargs['rule'], str(err))
        result = subprocess.run(
            ['vhost-brick-helper', 'create', '--device=' + device_path],
            capture_output=True, text=True)
        report = json.loads(result.stderr.splitlines()[-1])
        self.assertEqual((error.helper_exit_code, error.__name__, rule),
                         (result.returncode, report['error'],
                          report['kwargs']['rule']))
        self.assertEqual(before, base.configfs_snapshot())
        self.assertEqual(recorded, RECORD.load())
        return err

    def make_loop(self):
        return self.useFixture(base.LoopDevice())

    def partitioned_disk(self, whole_filesystem=False):
        """A loop device with one partition, p1, and an ext2 filesystem.

        The filesystem is on the whole disk or on p1.
        """
        fd, backing = tempfile.mkstemp(prefix='vhost-brick-parted-')
        os.ftruncate(fd, 32 << 20)
        os.close(fd)
        self.addCleanup(os.unlink, backing)
        if whole_filesystem:
            base.run('mkfs.ext2', '-q', backing)
        write_partition_table(backing)
        disk = base.run('losetup', '--find', '--show', '--partscan', backing)
        self.addCleanup(base.run, 'losetup', '--detach', disk)
        if not whole_filesystem:
            base.run('mkfs.ext2', '-q', disk + 'p1')
        return disk

    def mount(self, device):
        mountpoint = self.useFixture(fixtures.TempDir()).path
        base.run('mount', device, mountpoint)
        self.addCleanup(base.run, 'umount', mountpoint)


class AlwaysRefusedTestCase(PolicyTestCase):
    """Refused whatever allowed_devices says (the default allows /dev/**)."""

    def test_a_mounted_device(self):
        disk = self.make_disk()
        base.run('mkfs.ext2', '-q', disk)
        self.mount(disk)
        self.assertRefused(disk, devices.MOUNTED, exception.DeviceInUse)

    def test_a_partition_of_a_mounted_disk(self):
        disk = self.partitioned_disk(whole_filesystem=True)
        self.mount(disk)
        self.assertRefused(disk + 'p1', devices.MOUNTED,
                           exception.DeviceInUse)

    def test_a_disk_with_a_mounted_partition(self):
        disk = self.partitioned_disk()
        self.mount(disk + 'p1')
        self.assertRefused(disk, devices.MOUNTED, exception.DeviceInUse)

    def test_a_swap_device(self):
        disk = self.make_disk()
        base.run('mkswap', disk)
        base.run('swapon', disk)
        self.addCleanup(base.run, 'swapoff', disk)
        self.assertRefused(disk, devices.SWAP, exception.DeviceInUse)

    def test_a_device_with_holders(self):
        disk = self.make_disk()
        base.run('dmsetup', 'create', 'vhost-brick-holder', '--table',
                 '0 2048 linear %s 0' % disk)
        self.addCleanup(base.run, 'dmsetup', 'remove', 'vhost-brick-holder')
        err = self.assertRefused(disk, devices.HOLDERS,
                                 exception.DeviceInUse)
        self.assertIn('dm-', str(err))

    def test_a_device_another_fabric_uses_through_fileio(self):
        # fileio does not claim its device: only the configfs scan sees it.
        disk = self.make_disk()
        rtslib = lio._rtslib()
        storage = rtslib.FileIOStorageObject('foreign-fileio', dev=disk,
                                             size=1 << 20)
        self.addCleanup(storage.delete)
        err = self.assertRefused(disk, devices.LIO_BACKSTORE,
                                 exception.DeviceInUse)
        self.assertIn('foreign-fileio', str(err))

    def test_a_device_another_fabric_exports_through_iblock(self):
        disk = self.make_disk()
        rtslib = lio._rtslib()
        storage = rtslib.BlockStorageObject('foreign-block', dev=disk)
        self.addCleanup(storage.delete)
        err = self.assertRefused(disk, devices.LIO_BACKSTORE,
                                 exception.DeviceInUse)
        self.assertIn('foreign-block', str(err))

    def scratch(self):
        files = self.useFixture(hostile.ScratchFiles())
        files.link_to(self.make_disk())
        return files.path

    def test_the_shared_table_of_refused_devices(self):
        tmp = self.scratch()
        for description, path, rule in hostile.REFUSED_DEVICES:
            err = self.assertRefused(path.replace('{tmp}', tmp), rule)
            self.assertIsInstance(err, exception.InvalidDevice, description)

    def test_a_node_made_with_mknod_outside_dev(self):
        disk = self.make_disk()
        node = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'node')
        os.mknod(node, 0o600 | 0o060000, os.stat(disk).st_rdev)
        self.assertRefused(node, devices.OUTSIDE_DEV)

    def test_a_symlink_in_a_directory_under_dev_others_can_write(self):
        link = '/dev/shm/vhost-brick-link'
        os.symlink(self.make_disk(), link)
        self.addCleanup(os.unlink, link)
        self.assertRefused(link, devices.UNSAFE_DIRECTORY)


class AllowedDevicesTestCase(PolicyTestCase):

    def setUp(self):
        super().setUp()
        self.volumes = '/dev/vhost-brick-volumes'
        os.mkdir(self.volumes, 0o755)
        self.addCleanup(os.rmdir, self.volumes)
        self.useFixture(base.RootConfig(allowed_devices=self.volumes + '/*'))

    def volume(self):
        disk = self.make_disk()
        link = os.path.join(self.volumes, os.path.basename(disk))
        os.symlink(disk, link)
        self.addCleanup(os.unlink, link)
        return disk, link

    def test_a_device_no_pattern_names_is_refused(self):
        disk, _link = self.volume()
        err = self.assertRefused(disk, devices.ALLOWED_DEVICES)
        self.assertIn(self.volumes + '/*', str(err))

    def test_a_device_a_pattern_names_is_exported_under_that_name(self):
        disk, link = self.volume()
        ep = self.create(link)
        self.assertEqual(link, ep.luns[0].device_path)
        info = os.path.join(backstores.path_of(ep.luns[0].backstore),
                            'info')
        with open(info) as served:
            self.assertIn('UDEV PATH: %s ' % disk, served.read())


class LockTestCase(PolicyTestCase):

    def test_a_held_lock_fails_a_call_in_bounded_time_naming_its_holder(self):
        self.useFixture(base.RootConfig(lock_timeout=2))
        disk = self.make_disk()
        holder = self.useFixture(test_base.HostLockHolder())
        before = base.configfs_snapshot()
        started = time.monotonic()
        err = self.assertRaises(exception.LockTimeout,
                                self.executor.create_endpoint, disk)
        self.assertLess(time.monotonic() - started, 30)
        self.assertIn('pid %d ' % holder.pid, err.kwargs['holder'])
        self.assertEqual(before, base.configfs_snapshot())

    def test_an_unprivileged_user_cannot_open_the_lock(self):
        with operations._host_lock(5):
            pass
        result = subprocess.run(
            ['setpriv', '--reuid=nobody', '--regid=nogroup',
             '--clear-groups', sys.executable, '-c',
             'import os, sys; os.open(sys.argv[1], os.O_RDONLY)',
             operations.LOCK_FILE], capture_output=True, text=True)
        self.assertNotEqual(0, result.returncode)
        self.assertIn('PermissionError', result.stderr)


def simulate_reboot(wwn):
    """LIO forgets the endpoint; the record survives, as after a boot."""
    lio.delete(wwn)


class IdentityTestCase(PolicyTestCase):

    def test_serial_and_read_only_survive_a_reboot_and_restore(self):
        disk = self.make_disk()
        ep = self.create(disk, serial='volume-4242', read_only=True)
        self.assertEqual(('volume-4242', True),
                         (ep.luns[0].serial, ep.luns[0].read_only))
        simulate_reboot(ep.wwn)
        report = self.executor.restore()
        self.assertEqual([ep], list(report.restored))
        self.assertEqual(ep, self.executor.get_endpoint(ep.wwn))
        serial = os.path.join(backstores.path_of(ep.luns[0].backstore),
                              'wwn', 'vpd_unit_serial')
        with open(serial) as shown:
            self.assertEqual('T10 VPD Unit Serial Number: volume-4242',
                             shown.read().strip())

    def test_a_generated_serial_survives_too(self):
        ep = self.create(self.make_disk())
        simulate_reboot(ep.wwn)
        [restored] = self.executor.restore().restored
        self.assertEqual(ep.luns[0].serial, restored.luns[0].serial)

    def test_restore_refuses_a_loop_device_re_pointed_at_another_file(self):
        loop = self.make_loop()
        ep = self.executor.create_endpoint(loop.path)
        self.addCleanup(RECORD.discard, ep.wwn)
        simulate_reboot(ep.wwn)
        other = self.useFixture(base.LoopDevice())
        base.run('losetup', '--detach', loop.path)
        base.run('losetup', '--detach', other.path)
        base.run('losetup', loop.path, other.backing_file)
        self.addCleanup(base.run, 'losetup', loop.path, loop.backing_file)
        self.addCleanup(base.run, 'losetup', other.path, other.backing_file)
        self.addCleanup(base.run, 'losetup', '--detach', loop.path)
        before = base.configfs_snapshot()
        report = self.executor.restore()
        [failure] = report.failed
        self.assertEqual(ep.wwn, failure.item)
        self.assertIsInstance(failure.error, exception.DeviceNotAllowed)
        self.assertEqual(devices.IDENTITY, failure.error.kwargs['rule'])
        self.assertNotIn(ep.wwn, base.vhost_targets())
        self.assertEqual(before, base.configfs_snapshot())
        self.assertEqual('present', RECORD.get(ep.wwn)['status'])
