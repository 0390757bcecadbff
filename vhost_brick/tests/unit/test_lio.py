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

import contextlib
import errno
import os
import stat
from unittest import mock

import fixtures

from vhost_brick import exception
from vhost_brick import lio
from vhost_brick.tests import base
from vhost_brick.tests.unit import fake_rtslib


WWN = 'naa.5001405000000001'
NEXUS = 'naa.5001405000000002'
DEVICE = '/dev/disk/by-id/fake-disk-a'
OTHER_DEVICE = '/dev/disk/by-id/fake-disk-b'
RDEV = {DEVICE: 0x700, OTHER_DEVICE: 0x701, '/dev/loop0': 0x700}


class LioTestCase(base.TestCase):
    """The backend against an in-memory rtslib and fake block devices."""

    def setUp(self):
        super().setUp()
        fake_rtslib.reset()
        self.useFixture(fixtures.MockPatchObject(
            lio, '_rtslib', return_value=fake_rtslib))
        self.prepare = self.useFixture(fixtures.MockPatchObject(
            lio, '_prepare')).mock
        self.useFixture(fixtures.MockPatch('os.path.isdir',
                                           return_value=True))
        self.busy = set()
        real_stat, real_open = os.stat, os.open

        def fake_stat(path, *args, **kwargs):
            if path in RDEV:
                return os.stat_result(
                    (stat.S_IFBLK | 0o660, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            return real_stat(path, *args, **kwargs)

        def fake_open(path, flags, *args, **kwargs):
            if path in RDEV:
                if flags & os.O_EXCL and path in self.busy:
                    raise OSError(errno.EBUSY, 'Device or resource busy')
                return real_open(os.devnull, os.O_RDONLY)
            return real_open(path, flags, *args, **kwargs)
        self.useFixture(fixtures.MockPatch('os.stat', side_effect=fake_stat))
        self.useFixture(fixtures.MockPatchObject(
            lio.validation, '_sectors', return_value=2048))
        self.useFixture(fixtures.MockPatch('os.open', side_effect=fake_open))
        self.useFixture(fixtures.MockPatchObject(
            lio, '_same_device',
            side_effect=lambda a, b: RDEV.get(a, a) == RDEV.get(b, b)))
        self.claims = []
        self.useFixture(fixtures.MockPatchObject(
            lio.vhostdev, 'claim', side_effect=self.fake_claim))
        self.useFixture(fixtures.MockPatchObject(
            lio, '_find_backstore',
            side_effect=lambda rtslib, name: fake_rtslib.STATE.storage.get(
                name)))
        self.useFixture(fixtures.MockPatchObject(
            lio, '_free_hba_index', return_value=0))

    @contextlib.contextmanager
    def fake_claim(self, wwn):
        if wwn in fake_rtslib.STATE.held:
            raise exception.EndpointInUse(wwn=wwn)
        self.claims.append(wwn)
        yield

    def add_foreign_objects(self):
        """An iSCSI target, a loopback target, a foreign vhost endpoint."""
        state = fake_rtslib.STATE
        foreign_disk = fake_rtslib.BlockStorageObject('disk0', dev='/dev/sdz')
        fake_rtslib.FileIOStorageObject('file0', dev='/srv/file0')
        for fabric, wwn in (('iscsi', 'iqn.2003-01.org.example:t1'),
                            ('loopback', 'naa.5001405aaaaaaaaa'),
                            ('vhost', 'naa.5001405bbbbbbbbb')):
            target = fake_rtslib.Target(fake_rtslib.FabricModule(fabric),
                                        wwn, mode='create')
            fake_rtslib.LUN(fake_rtslib.TPG(target, 1), 0, foreign_disk)
        return state


class CreateTestCase(LioTestCase):

    def test_create_builds_backstore_target_tpg_nexus_and_lun(self):
        result = lio.create(DEVICE, wwn=WWN, nexus=NEXUS)
        self.assertEqual(
            {'storage': [('block', 'vhost-brick-5001405000000001', DEVICE)],
             'targets': [('vhost', WWN, 1, NEXUS,
                          ((0, 'vhost-brick-5001405000000001'),))]},
            fake_rtslib.snapshot())
        self.assertEqual(
            {'wwn': WWN, 'tpgt': 1, 'nexus': NEXUS,
             'luns': [{'lun': 0, 'device_path': DEVICE,
                       'backstore': 'vhost-brick-5001405000000001'}]},
            result)

    def test_create_without_wwn_and_nexus_generates_both(self):
        result = lio.create(DEVICE)
        self.assertRegex(result['wwn'], r'^naa\.5001405[0-9a-f]{9}$')
        self.assertRegex(result['nexus'], r'^naa\.5001405[0-9a-f]{9}$')
        self.assertNotEqual(result['wwn'], result['nexus'])

    def test_generated_wwn_skips_one_already_taken(self):
        taken = lio.create(OTHER_DEVICE)['wwn']
        with mock.patch.object(lio.validation, 'generate_wwn',
                               side_effect=[taken, WWN, NEXUS]):
            self.assertEqual(WWN, lio.create(DEVICE)['wwn'])

    def test_create_replaces_rtslib_random_nexus(self):
        result = lio.create(DEVICE, wwn=WWN, nexus=NEXUS)
        self.assertEqual(NEXUS, result['nexus'])

    def test_retry_with_same_wwn_and_device_returns_existing(self):
        first = lio.create(DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        self.assertEqual(first, lio.create(DEVICE, wwn=WWN))
        self.assertEqual(first, lio.create('/dev/loop0', wwn=WWN))
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_wwn_taken_by_another_device_raises_endpoint_exists(self):
        lio.create(OTHER_DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        err = self.assertRaises(exception.EndpointExists, lio.create,
                                DEVICE, wwn=WWN)
        self.assertIn(OTHER_DEVICE, str(err))
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_retry_with_another_nexus_raises_endpoint_exists(self):
        lio.create(DEVICE, wwn=WWN, nexus=NEXUS)
        self.assertRaises(exception.EndpointExists, lio.create, DEVICE,
                          wwn=WWN, nexus='naa.5001405000000003')

    def test_device_held_exclusively_raises_device_in_use(self):
        self.busy.add(DEVICE)
        err = self.assertRaises(exception.DeviceInUse, lio.create, DEVICE,
                                wwn=WWN)
        self.assertIn('held open exclusively', str(err))
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())

    def test_device_backing_a_lio_backstore_names_it(self):
        fake_rtslib.BlockStorageObject('disk0', dev='/dev/loop0')
        self.busy.add(DEVICE)
        err = self.assertRaises(exception.DeviceInUse, lio.create, DEVICE)
        self.assertIn('block/disk0', str(err))

    def test_failure_at_each_step_leaves_nothing_behind(self):
        for step in ('storage', 'target', 'tpg', 'nexus', 'lun'):
            fake_rtslib.reset()
            state = self.add_foreign_objects()
            before = fake_rtslib.snapshot()
            state.fail_on[step] = fake_rtslib.RTSLibError('%s failed' % step)
            err = self.assertRaises(exception.BackendError, lio.create,
                                    DEVICE, wwn=WWN, nexus=NEXUS)
            self.assertIn('%s failed' % step, str(err))
            self.assertEqual(before, fake_rtslib.snapshot(), step)

    def test_os_error_is_translated_and_rolled_back(self):
        fake_rtslib.STATE.fail_on['lun'] = OSError(errno.ENOSPC, 'full')
        err = self.assertRaises(exception.BackendError, lio.create, DEVICE,
                                wwn=WWN)
        self.assertIsInstance(err.__cause__, OSError)
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())

    def test_missing_vhost_module_raises_kernel_support_missing(self):
        fake_rtslib.STATE.fail_on['target'] = fake_rtslib.RTSLibError(
            'Could not create VhostFabricModule in configFS')
        err = self.assertRaises(exception.KernelSupportMissing, lio.create,
                                DEVICE, wwn=WWN)
        self.assertIn('modprobe vhost_scsi', str(err))

    def test_orphan_backstore_of_same_wwn_is_replaced(self):
        fake_rtslib.BlockStorageObject('vhost-brick-5001405000000001',
                                       dev=OTHER_DEVICE)
        lio.create(DEVICE, wwn=WWN)
        self.assertEqual(
            [('block', 'vhost-brick-5001405000000001', DEVICE)],
            fake_rtslib.snapshot()['storage'])

    def test_helper_side_validation(self):
        self.assertRaises(exception.InvalidDevice, lio.create, 'relative')
        self.assertRaises(exception.InvalidWWN, lio.create, DEVICE,
                          wwn='naa.6001405bd4e8476d')
        self.assertRaises(exception.InvalidNexus, lio.create, DEVICE,
                          nexus='naa.1')
        self.prepare.assert_not_called()


class DeleteTestCase(LioTestCase):

    def test_delete_removes_target_and_own_backstore(self):
        self.add_foreign_objects()
        before = fake_rtslib.snapshot()
        lio.create(DEVICE, wwn=WWN)
        self.assertTrue(lio.delete(WWN))
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_delete_claims_the_endpoint_while_removing_luns(self):
        lio.create(DEVICE, wwn=WWN)
        lio.delete(WWN)
        self.assertEqual([WWN], self.claims)

    def test_delete_unknown_wwn_returns_false(self):
        self.add_foreign_objects()
        before = fake_rtslib.snapshot()
        self.assertFalse(lio.delete(WWN))
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_delete_unknown_wwn_removes_our_orphan_backstore(self):
        fake_rtslib.BlockStorageObject('vhost-brick-5001405000000001',
                                       dev=DEVICE)
        self.assertFalse(lio.delete(WWN))
        self.assertEqual([], fake_rtslib.snapshot()['storage'])

    def test_delete_held_endpoint_raises_and_removes_nothing(self):
        lio.create(DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        fake_rtslib.STATE.held.add(WWN)
        self.assertRaises(exception.EndpointInUse, lio.delete, WWN)
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_hypervisor_attaching_after_claim_gets_luns_back(self):
        lio.create(DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        real_claim = self.fake_claim

        @contextlib.contextmanager
        def claim_then_race(wwn):
            with real_claim(wwn):
                yield
            fake_rtslib.STATE.held.add(wwn)
        lio.vhostdev.claim.side_effect = claim_then_race
        self.assertRaises(exception.EndpointInUse, lio.delete, WWN)
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_lun_removal_failure_puts_removed_luns_back(self):
        lio.create(DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        fake_rtslib.STATE.fail_on['delete_lun'] = OSError(errno.EIO, 'io')
        self.assertRaises(exception.BackendError, lio.delete, WWN)
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_delete_foreign_endpoint_keeps_its_backstore(self):
        state = self.add_foreign_objects()
        lio.delete('naa.5001405bbbbbbbbb')
        self.assertNotIn(('vhost', 'naa.5001405bbbbbbbbb'), state.targets)
        self.assertIn('disk0', state.storage)
        self.assertIn(('iscsi', 'iqn.2003-01.org.example:t1'), state.targets)

    def test_delete_removes_a_lun_left_without_its_link(self):
        lio.create(DEVICE, wwn=WWN)
        lun = fake_rtslib.STATE.targets[('vhost', WWN)].tpgs[0].luns[0]
        lun.break_link()
        with mock.patch('os.rmdir', side_effect=lambda path: lun.delete()) \
                as rmdir:
            self.assertTrue(lio.delete(WWN))
        rmdir.assert_called_once_with(lun.path)
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())

    def test_delete_endpoint_without_nexus_needs_no_claim(self):
        target = fake_rtslib.Target(fake_rtslib.FabricModule('vhost'), WWN,
                                    mode='create')
        fake_rtslib.TPG(target, 1)._nexus = ''
        self.assertTrue(lio.delete(WWN))
        self.assertEqual([], self.claims)


class ReadTestCase(LioTestCase):

    def test_list_returns_vhost_endpoints_only(self):
        self.add_foreign_objects()
        lio.create(DEVICE, wwn=WWN, nexus=NEXUS)
        self.assertEqual(
            [(WWN, [(DEVICE, 'vhost-brick-5001405000000001')]),
             ('naa.5001405bbbbbbbbb', [('/dev/sdz', 'disk0')])],
            sorted((ep['wwn'], [(lun['device_path'], lun['backstore'])
                                for lun in ep['luns']])
                   for ep in lio.list_endpoints()))

    def test_list_without_vhost_fabric_is_empty(self):
        with mock.patch('os.path.isdir', return_value=False):
            self.assertEqual([], lio.list_endpoints())

    def test_show(self):
        created = lio.create(DEVICE, wwn=WWN)
        self.assertEqual(created, lio.show(WWN))

    def test_lun_without_its_link_is_listed_without_device(self):
        lio.create(DEVICE, wwn=WWN)
        fake_rtslib.STATE.targets[('vhost', WWN)].tpgs[0].luns[0].break_link()
        self.assertEqual([{'lun': 0, 'device_path': '', 'backstore': ''}],
                         lio.show(WWN)['luns'])

    def test_show_unknown_raises_not_found(self):
        self.assertRaises(exception.EndpointNotFound, lio.show, WWN)

    def test_reads_change_nothing(self):
        self.add_foreign_objects()
        before = fake_rtslib.snapshot()
        lio.list_endpoints()
        lio.show('naa.5001405bbbbbbbbb')
        self.assertEqual(before, fake_rtslib.snapshot())


class KernelSupportTestCase(base.TestCase):

    def test_reports_each_piece(self):
        with mock.patch('os.path.ismount', return_value=False), \
                mock.patch('os.path.isdir', return_value=True), \
                mock.patch('os.path.exists', return_value=False):
            report = lio.kernel_support()
        self.assertFalse(report['configfs'])
        self.assertTrue(report['vhost_scsi'])
        self.assertFalse(report['vhost_device'])
        self.assertEqual({'configfs', 'target_core_mod',
                          'target_core_iblock', 'vhost_scsi',
                          'vhost_device', 'rtslib_fb'}, set(report))

    def test_backstore_name_is_derived_from_the_wwn(self):
        self.assertEqual('vhost-brick-5001405000000001',
                         lio.backstore_name(WWN))

    def test_rtslib_import_failure_raises_kernel_support_missing(self):
        with mock.patch.object(lio.importlib, 'import_module',
                               side_effect=ImportError('No libudev')):
            self.assertRaises(exception.KernelSupportMissing, lio._rtslib)


class ConfigfsScanTestCase(base.TestCase):
    """The two raw configfs scans, against a directory tree."""

    def setUp(self):
        super().setUp()
        self.core = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch('vhost_brick.lio.CORE',
                                             self.core))

    def test_free_hba_index_skips_empty_hba_directories(self):
        for hba in ('iblock_0', 'iblock_1', 'iblock_3', 'fileio_2'):
            os.mkdir(os.path.join(self.core, hba))
        self.assertEqual(2, lio._free_hba_index())

    def test_free_hba_index_of_an_empty_core(self):
        self.assertEqual(0, lio._free_hba_index())

    def test_find_backstore_looks_up_with_its_index(self):
        os.makedirs(os.path.join(self.core, 'iblock_7', 'vhost-brick-1'))
        rtslib = mock.Mock()
        self.assertIs(rtslib.BlockStorageObject.return_value,
                      lio._find_backstore(rtslib, 'vhost-brick-1'))
        rtslib.BlockStorageObject.assert_called_once_with('vhost-brick-1',
                                                          index=7)

    def test_find_backstore_absent(self):
        self.assertIsNone(lio._find_backstore(mock.Mock(), 'vhost-brick-1'))


class PrepareTestCase(base.TestCase):

    def test_configfs_and_rtsroot_are_prepared_once_per_process(self):
        self.useFixture(fixtures.MonkeyPatch('vhost_brick.lio._prepared',
                                             False))
        rtslib = mock.Mock()
        with mock.patch('os.path.isdir', return_value=True), \
                mock.patch('os.makedirs') as makedirs:
            lio._prepare(rtslib)
            lio._prepare(rtslib)
        rtslib.RTSRoot.assert_called_once_with()
        makedirs.assert_called_once_with(lio.DBROOT, exist_ok=True)
