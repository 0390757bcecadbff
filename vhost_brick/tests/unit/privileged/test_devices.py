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


import errno
import os
import stat
from unittest import mock

import fixtures

from vhost_brick import exception
from vhost_brick.privileged import devices
from vhost_brick.tests import base


SDA, SDA1, SDA2 = os.makedev(8, 0), os.makedev(8, 1), os.makedev(8, 2)
SDB, SDB1 = os.makedev(8, 16), os.makedev(8, 17)
DM0, LOOP0, NVME = os.makedev(253, 0), os.makedev(7, 0), os.makedev(259, 0)
VDA = os.makedev(252, 0)
NO_BLOCK_ROOT = os.makedev(0, 24)  # tmpfs, 9p, ...


def block_node(rdev):
    return os.stat_result((stat.S_IFBLK | 0o660, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                          {'st_rdev': rdev})


class FakeHost(fixtures.Fixture):
    """A sysfs tree, mountinfo and swaps of a small host.

    sda has partitions sda1 and sda2, sdb has sdb1, dm-0 is built on
    sda2, and there are loop0, an NVMe namespace and a virtio disk.
    ``nodes`` maps device node paths to numbers, for os.stat.
    """

    DISKS = {
        'sda': (SDA, {'device/wwid': 'naa.6001405aaaaaaaaa'}),
        'sda/sda1': (SDA1, {'partition': '1'}),
        'sda/sda2': (SDA2, {'partition': '2'}),
        'sdb': (SDB, {'device/wwid': 't10.ATA     DISK B'}),
        'sdb/sdb1': (SDB1, {'partition': '1'}),
        'dm-0': (DM0, {'dm/uuid': 'LVM-abcdef'}),
        'loop0': (LOOP0, {'loop/backing_file': '/srv/disk.img'}),
        'nvme0n1': (NVME, {'wwid': 'eui.0025385b71b0e1f4'}),
        'vda': (VDA, {'serial': 'volume-1'}),
    }

    def _setUp(self):
        self.root = self.useFixture(fixtures.TempDir()).path
        by_number = os.path.join(self.root, 'dev', 'block')
        os.makedirs(by_number)
        self.dirs = {}
        for name, (rdev, attributes) in self.DISKS.items():
            sysdir = os.path.join(self.root, 'devices', name)
            os.makedirs(os.path.join(sysdir, 'holders'))
            self.write(os.path.join(sysdir, 'dev'), '%d:%d\n' % (
                os.major(rdev), os.minor(rdev)))
            for attribute, value in attributes.items():
                self.write(os.path.join(sysdir, attribute), value + '\n')
            os.symlink(sysdir, os.path.join(by_number, '%d:%d' % (
                os.major(rdev), os.minor(rdev))))
            self.dirs[rdev] = sysdir
        self.add_holder(SDA2, 'dm-0')
        os.makedirs(os.path.join(self.dirs[DM0], 'slaves'))
        os.symlink(self.dirs[SDA2], os.path.join(self.dirs[DM0], 'slaves',
                                                 'sda2'))
        self.mountinfo = os.path.join(self.root, 'mountinfo')
        self.swaps = os.path.join(self.root, 'swaps')
        self.mounted = []
        self.swapped = []
        self.rewrite()
        for name, value in (('SYS_DEV_BLOCK', by_number),
                            ('MOUNTINFO', self.mountinfo),
                            ('SWAPS', self.swaps)):
            self.useFixture(fixtures.MonkeyPatch(
                'vhost_brick.privileged.devices.' + name, value))
        self.nodes = {}
        real_stat = os.stat

        def fake_stat(path, *args, **kwargs):
            if path in self.nodes:
                return block_node(self.nodes[path])
            return real_stat(path, *args, **kwargs)
        self.useFixture(fixtures.MockPatch('os.stat', side_effect=fake_stat))

    @staticmethod
    def write(path, text):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as attr:
            attr.write(text)

    def add_holder(self, rdev, holder):
        open(os.path.join(self.dirs[rdev], 'holders', holder), 'w').close()

    def rewrite(self):
        self.write(self.mountinfo, ''.join(
            '%d 1 %d:%d / /mnt%d rw - ext4 /dev/x rw\n'
            % (30 + i, os.major(rdev), os.minor(rdev), i)
            for i, rdev in enumerate([NO_BLOCK_ROOT] + self.mounted)))
        self.write(self.swaps, 'Filename\tType\tSize\tUsed\tPriority\n' +
                   ''.join('%s\tpartition\t1024\t0\t-2\n' % path
                           for path in self.swapped))


class MatchTestCase(base.TestCase):

    def test_star_stays_within_one_component(self):
        self.assertTrue(devices.matches('/dev/loop0', '/dev/*'))
        self.assertFalse(devices.matches('/dev/mapper/vg-lv', '/dev/*'))
        self.assertTrue(devices.matches('/dev/disk/by-id/wwn-0x5',
                                        '/dev/disk/by-id/*'))
        self.assertFalse(devices.matches('/dev/disk/by-id/a/b',
                                         '/dev/disk/by-id/*'))

    def test_double_star_matches_any_number_of_components(self):
        for path in ('/dev/loop0', '/dev/mapper/vg-lv',
                     '/dev/disk/by-id/wwn-0x5'):
            self.assertTrue(devices.matches(path, '/dev/**'), path)
        self.assertFalse(devices.matches('/srv/dev/loop0', '/dev/**'))

    def test_classes_and_question_marks_match_one_component(self):
        self.assertTrue(devices.matches('/dev/nullb1', '/dev/nullb[0-9]'))
        self.assertFalse(devices.matches('/dev/nullb10', '/dev/nullb?'))

    def test_matching_is_case_sensitive(self):
        self.assertFalse(devices.matches('/dev/SDA', '/dev/sd*'))


class UseTestCase(base.TestCase):
    """The rules that refuse a device the host itself uses."""

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(FakeHost())

    def refused(self, rdev, root_dev=NO_BLOCK_ROOT):
        err = self.assertRaises(exception.DeviceNotAllowed,
                                devices._check_use, '/dev/x', rdev, root_dev)
        return err.kwargs['rule']

    def test_a_free_disk_or_partition_is_allowed(self):
        for rdev in (SDB, SDB1, LOOP0, NVME, VDA):
            self.assertIsNone(devices._check_use('/dev/x', rdev,
                                                 NO_BLOCK_ROOT))

    def test_a_mounted_device_is_in_use(self):
        self.host.mounted.append(LOOP0)
        self.host.rewrite()
        err = self.assertRaises(exception.DeviceInUse, devices._check_use,
                                '/dev/x', LOOP0, NO_BLOCK_ROOT)
        self.assertEqual(devices.MOUNTED, err.kwargs['rule'])
        self.assertIn('loop0 is mounted', str(err))

    def test_a_disk_with_a_mounted_partition_is_in_use(self):
        self.host.mounted.append(SDB1)
        self.host.rewrite()
        self.assertEqual(devices.MOUNTED, self.refused(SDB))

    def test_a_partition_of_a_mounted_disk_is_in_use(self):
        self.host.mounted.append(SDB)
        self.host.rewrite()
        self.assertEqual(devices.MOUNTED, self.refused(SDB1))

    def test_a_sibling_of_a_mounted_partition_is_allowed(self):
        os.unlink(os.path.join(self.host.dirs[SDA2], 'holders', 'dm-0'))
        self.host.mounted.append(SDA1)
        self.host.rewrite()
        self.assertIsNone(devices._check_use('/dev/x', SDA2, NO_BLOCK_ROOT))
        self.assertEqual(devices.MOUNTED, self.refused(SDA))

    def test_a_swap_device_and_its_disk_are_in_use(self):
        self.host.nodes['/dev/sdb1'] = SDB1
        self.host.swapped.append('/dev/sdb1')
        self.host.rewrite()
        self.assertEqual(devices.SWAP, self.refused(SDB1))
        self.assertEqual(devices.SWAP, self.refused(SDB))

    def test_a_swap_file_refuses_no_device(self):
        self.host.swapped.append('/var/swapfile')  # not a block device
        self.host.rewrite()
        self.assertIsNone(devices._check_use('/dev/x', SDB, NO_BLOCK_ROOT))

    def test_a_device_with_holders_is_in_use(self):
        self.host.add_holder(LOOP0, 'dm-3')
        err = self.assertRaises(exception.DeviceInUse, devices._check_use,
                                '/dev/x', LOOP0, NO_BLOCK_ROOT)
        self.assertEqual(devices.HOLDERS, err.kwargs['rule'])
        self.assertIn('dm-3', str(err))

    def test_a_disk_whose_partition_has_holders_is_in_use(self):
        # sda2 is dm-0's physical volume.
        self.assertEqual(devices.HOLDERS, self.refused(SDA))

    def test_the_root_disk_and_its_partitions_are_refused(self):
        for rdev in (SDB, SDB1):
            self.assertEqual(devices.ROOT_DISK, self.refused(rdev, SDB1))

    def test_the_disks_under_a_device_mapper_root_are_refused(self):
        self.assertEqual(devices.ROOT_DISK, self.refused(SDA1, DM0))

    def test_other_disks_than_the_root_disk_are_allowed(self):
        self.assertIsNone(devices._check_use('/dev/x', SDB, DM0))
        self.assertIsNone(devices._check_use('/dev/x', LOOP0, SDB1))


class IdentityTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(FakeHost())

    def test_identities_survive_renaming(self):
        for rdev, expected in (
                (SDB, 'wwid t10.ATA     DISK B'),
                (DM0, 'dm-uuid LVM-abcdef'),
                (NVME, 'wwid eui.0025385b71b0e1f4'),
                (VDA, 'serial volume-1')):
            self.assertEqual(expected, devices.identity(-1, rdev))

    def test_a_partition_adds_its_number_to_its_disk(self):
        self.assertEqual('wwid t10.ATA     DISK B part1',
                         devices.identity(-1, SDB1))

    def test_a_loop_device_is_its_backing_file(self):
        info = devices._LOOP_INFO64.pack(2049, 12, 0, 512, 0, 0, 0, 0, 0,
                                         b'', b'', b'', 0, 0)
        with mock.patch('fcntl.ioctl', return_value=info) as ioctl:
            self.assertEqual('loop dev=2049 ino=12 offset=512 sizelimit=0',
                             devices.identity(5, LOOP0))
        ioctl.assert_called_once_with(5, devices.LOOP_GET_STATUS64,
                                      mock.ANY)

    def test_an_unbound_loop_device_has_no_identity(self):
        with mock.patch('fcntl.ioctl', side_effect=OSError(errno.ENXIO, 'x')):
            self.assertIsNone(devices.identity(5, LOOP0))

    def test_a_device_without_an_identity_has_none(self):
        os.unlink(os.path.join(self.host.dirs[SDB], 'device', 'wwid'))
        self.assertIsNone(devices.identity(-1, SDB))


class FuaTestCase(base.TestCase):
    """Which devices would acknowledge a FUA write from a volatile cache."""

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(FakeHost())

    def queue(self, rdev, write_cache, fua):
        queue = os.path.join(self.host.dirs[rdev], 'queue')
        self.host.write(os.path.join(queue, 'write_cache'), write_cache + '\n')
        self.host.write(os.path.join(queue, 'fua'), fua + '\n')

    def test_a_write_back_cache_without_fua_would(self):
        self.queue(LOOP0, 'write back', '0')
        self.assertTrue(devices.acknowledges_fua_from_cache(LOOP0))

    def test_a_write_back_cache_with_native_fua_would_not(self):
        self.queue(SDB, 'write back', '1')
        self.assertFalse(devices.acknowledges_fua_from_cache(SDB))

    def test_a_write_through_device_would_not(self):
        self.queue(SDB, 'write through', '0')
        self.assertFalse(devices.acknowledges_fua_from_cache(SDB))

    def test_a_partition_is_judged_by_its_disks_queue(self):
        self.queue(SDB, 'write back', '0')
        self.assertTrue(devices.acknowledges_fua_from_cache(SDB1))


class AdmitTestCase(base.TestCase):
    """admit's path rules, before any device is opened."""

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(FakeHost())
        self.dev = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                'dev')
        os.makedirs(os.path.join(self.dev, 'vg0'), mode=0o755)
        os.makedirs(os.path.join(self.dev, 'shm'))
        os.chmod(os.path.join(self.dev, 'shm'), 0o1777)
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.devices.DEV', self.dev))
        self.useFixture(fixtures.MockPatchObject(
            devices.validation, 'validate_device_path',
            side_effect=lambda path: path))
        self.opened = self.useFixture(fixtures.MockPatch('os.open')).mock

    def node(self, rel, rdev=SDB):
        path = os.path.join(self.dev, rel)
        open(path, 'w').close()
        self.host.nodes[path] = rdev
        return path

    def refused(self, path, allowed=('/**',)):
        err = self.assertRaises(exception.DeviceNotAllowed, devices.admit,
                                path, allowed)
        self.opened.assert_not_called()
        return err.kwargs['rule']

    def test_a_path_outside_dev_is_refused(self):
        outside = os.path.join(os.path.dirname(self.dev), 'disk')
        open(outside, 'w').close()
        self.assertEqual(devices.OUTSIDE_DEV, self.refused(outside))

    def test_a_dev_path_that_normalises_outside_is_refused(self):
        open(os.path.join(os.path.dirname(self.dev), 'disk'), 'w').close()
        self.assertEqual(devices.OUTSIDE_DEV,
                         self.refused(self.dev + '/../disk'))

    def test_a_link_in_dev_to_a_node_outside_is_refused(self):
        outside = os.path.join(os.path.dirname(self.dev), 'disk')
        open(outside, 'w').close()
        os.symlink(outside, os.path.join(self.dev, 'vg0', 'lv'))
        self.assertEqual(devices.OUTSIDE_DEV,
                         self.refused(self.dev + '/vg0/lv'))

    def test_a_path_through_a_directory_others_can_write_is_refused(self):
        node = self.node('vg0/lv')
        os.symlink(node, os.path.join(self.dev, 'shm', 'lv'))
        self.assertEqual(devices.UNSAFE_DIRECTORY,
                         self.refused(self.dev + '/shm/lv'))

    def test_a_path_that_no_pattern_allows_is_refused(self):
        node = self.node('sdb')
        err = self.assertRaises(exception.DeviceNotAllowed, devices.admit,
                                node, (self.dev + '/vg0/*',))
        self.assertEqual(devices.ALLOWED_DEVICES, err.kwargs['rule'])
        self.assertIn(self.dev + '/vg0/*', str(err))
        self.opened.assert_not_called()

    def test_patterns_match_the_callers_path_not_the_node(self):
        node = self.node('dm-0', DM0)
        os.symlink(node, os.path.join(self.dev, 'vg0', 'lv'))
        self.assertEqual(devices.ALLOWED_DEVICES, self.refused(
            self.dev + '/vg0/lv', allowed=(self.dev + '/dm-*',)))

    def test_a_device_held_exclusively_is_in_use(self):
        self.opened.side_effect = OSError(errno.EBUSY, 'busy')
        err = self.assertRaises(exception.DeviceInUse, devices.admit,
                                self.node('sdb'), ('/**',))
        self.assertEqual(devices.HELD_EXCLUSIVELY, err.kwargs['rule'])

    def test_a_node_replaced_before_the_open_is_refused(self):
        self.opened.return_value = 7
        with mock.patch('os.fstat', return_value=block_node(SDB1)), \
                mock.patch('os.close') as close:
            err = self.assertRaises(exception.DeviceNotAllowed,
                                    devices.admit, self.node('sdb'),
                                    ('/**',))
        self.assertEqual(devices.CHANGED, err.kwargs['rule'])
        close.assert_called_once_with(7)

    def test_an_admitted_device_is_the_node_it_resolved_to(self):
        node = self.node('dm-0', DM0)
        os.symlink('../dm-0', os.path.join(self.dev, 'vg0', 'lv'))
        self.opened.return_value = 7
        with mock.patch('os.fstat', return_value=block_node(DM0)), \
                mock.patch('os.close') as close:
            device = devices.admit(self.dev + '/vg0/lv',
                                   (self.dev + '/vg0/*',))
        self.assertEqual(devices.Device(self.dev + '/vg0/lv', node, DM0,
                                        'dm-uuid LVM-abcdef'), device)
        self.opened.assert_called_once_with(
            node, os.O_RDONLY | os.O_EXCL | os.O_NONBLOCK | os.O_NOFOLLOW |
            os.O_CLOEXEC)
        close.assert_called_once_with(7)
