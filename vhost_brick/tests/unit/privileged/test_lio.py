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
import logging
import os
import stat
from unittest import mock

import fixtures

from vhost_brick import exception
from vhost_brick.privileged import backstores
from vhost_brick.privileged import configfs
from vhost_brick.privileged import devices
from vhost_brick.privileged import lio
from vhost_brick.privileged import state
from vhost_brick.tests import base
from vhost_brick.tests.unit import fake_rtslib


WWN = 'naa.5001405000000001'
NEXUS = 'naa.5001405000000002'
DEVICE = '/dev/disk/by-id/fake-disk-a'
OTHER_DEVICE = '/dev/disk/by-id/fake-disk-b'
RDEV = {DEVICE: 0x700, OTHER_DEVICE: 0x701, '/dev/loop0': 0x700,
        '/dev/sdz': 0x810}


class LioTestCase(base.TestCase):
    """The backend against an in-memory rtslib and fake block devices."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        fake_rtslib.reset(self.root)
        for name, path in (('TARGET_ROOT', self.root),
                           ('CORE', self.root + '/core'),
                           ('VHOST_FABRIC', self.root + '/vhost')):
            self.useFixture(fixtures.MonkeyPatch(
                'vhost_brick.privileged.configfs.' + name, path))
        self.useFixture(fixtures.MonkeyPatch('os.mkdir', fake_rtslib.mkdir))
        self.useFixture(fixtures.MonkeyPatch('os.rmdir', fake_rtslib.rmdir))
        self.useFixture(fixtures.MonkeyPatch('os.symlink',
                                             fake_rtslib.symlink))
        self.useFixture(fixtures.MockPatchObject(
            lio, '_rtslib', return_value=fake_rtslib))
        self.prepare = self.useFixture(fixtures.MockPatchObject(
            lio, '_prepare')).mock
        self.modprobe = self.useFixture(fixtures.MockPatchObject(
            lio, '_modprobe')).mock
        self.busy = set()
        real_stat, real_open = os.stat, os.open

        def fake_stat(path, *args, **kwargs):
            if path in RDEV:
                return os.stat_result(
                    (stat.S_IFBLK | 0o660, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            return real_stat(path, *args, **kwargs)

        def fake_open(path, flags, *args, **kwargs):
            if path.endswith('/nexus') and flags & os.O_WRONLY:
                fake_rtslib.STATE.maybe_fail('nexus')
            if flags & os.O_WRONLY:
                fake_rtslib.check_write(path)
            if path in RDEV:
                if flags & os.O_EXCL and path in self.busy:
                    raise OSError(errno.EBUSY, 'Device or resource busy')
                return real_open(os.devnull, os.O_RDONLY)
            if not flags & (os.O_WRONLY | os.O_RDWR):
                shown = fake_rtslib.shown(path, RDEV.get)
                if shown != path:
                    try:
                        return real_open(shown, flags, *args, **kwargs)
                    finally:
                        os.unlink(shown)
            return real_open(path, flags, *args, **kwargs)
        self.useFixture(fixtures.MockPatch('os.stat', side_effect=fake_stat))
        self.useFixture(fixtures.MockPatchObject(
            lio.validation, '_sectors', return_value=2048))
        self.fua_from_cache = self.useFixture(fixtures.MockPatchObject(
            backstores.devices, 'acknowledges_fua_from_cache',
            return_value=False)).mock
        self.useFixture(fixtures.MockPatch('os.open', side_effect=fake_open))
        self.useFixture(fixtures.MockPatchObject(
            lio, '_same_device',
            side_effect=lambda a, b: RDEV.get(a, a) == RDEV.get(b, b)))
        self.claims = []
        self.useFixture(fixtures.MockPatchObject(
            lio.vhostdev, 'claim', side_effect=self.fake_claim))
        self.claimers = []
        self.named = set()
        test = self

        class FakeClaimer:
            """A vhostdev.Claimer whose claims are fake_claim's."""

            def __init__(self):
                test.claimers.append(self)

            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                pass

            def named_by_hypervisors(self):
                return test.named

            def claim(self, wwn):
                return lio.vhostdev.claim(wwn)
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.vhostdev.Claimer', FakeClaimer))

    def create(self, device_path, wwn=None, nexus=None, serial='serial-1',
               read_only=False, discard=None):
        """lio.create of a device admitted as it is; a fresh WWN if none.

        The fakes have no sysfs for devices.admit to read.
        """
        return lio.create(self.device(device_path), wwn or lio.unused_wwn(),
                          nexus, serial, read_only, discard)

    def device(self, device_path):
        return devices.Device(device_path, device_path, RDEV[device_path],
                              None)

    @property
    def hba(self):
        return os.path.join(self.root, 'core', backstores.HBA)

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
        result = self.create(DEVICE, wwn=WWN, nexus=NEXUS)
        self.assertEqual(
            {'storage': [('block', 'vhost-brick-5001405000000001', DEVICE)],
             'targets': [('vhost', WWN, 1, NEXUS,
                          ((0, 'vhost-brick-5001405000000001'),))]},
            fake_rtslib.snapshot())
        self.assertEqual(
            {'wwn': WWN, 'tpgt': 1, 'nexus': NEXUS,
             'luns': [{'lun': 0, 'device_path': DEVICE,
                       'backstore': 'vhost-brick-5001405000000001',
                       'serial': 'serial-1', 'read_only': False,
                       'discard': True}]},
            result)

    def test_the_kernel_is_given_the_checked_node_and_readers_the_path(self):
        device = devices.Device(DEVICE, '/dev/loop0', RDEV['/dev/loop0'],
                                None)
        lio.create(device, WWN, NEXUS, 'serial-1')
        backstore = os.path.join(self.hba, backstores.name_of(WWN))
        with open(os.path.join(backstore, 'control')) as control:
            self.assertEqual('udev_path=/dev/loop0,readonly=0',
                             control.read())
        with open(os.path.join(backstore, 'udev_path')) as udev_path:
            self.assertEqual(DEVICE, udev_path.read())

    def test_serial_and_read_only_are_applied_and_reported(self):
        result = self.create(DEVICE, wwn=WWN, serial='volume-42',
                             read_only=True)
        self.assertEqual('volume-42', result['luns'][0]['serial'])
        self.assertTrue(result['luns'][0]['read_only'])
        self.assertEqual(result, lio.show(WWN))

    def test_a_backstore_serving_another_device_is_rolled_back(self):
        # The node was swapped after the check: the kernel opened 0x701.
        device = devices.Device(DEVICE, OTHER_DEVICE, RDEV[DEVICE], None)
        err = self.assertRaises(exception.DeviceNotAllowed, lio.create,
                                device, WWN, NEXUS, 'serial-1')
        self.assertEqual(devices.CHANGED, err.kwargs['rule'])
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())
        self.assertFalse(os.path.exists(self.hba))

    def test_create_reports_the_endpoint_as_configfs_then_shows_it(self):
        result = self.create(DEVICE, wwn=WWN)
        self.assertEqual(lio.show(WWN), result)

    def test_create_without_nexus_generates_one(self):
        result = self.create(DEVICE, wwn=WWN)
        self.assertRegex(result['nexus'], r'^naa\.5001405[0-9a-f]{9}$')
        self.assertNotEqual(result['wwn'], result['nexus'])

    def test_unused_wwn_skips_one_already_taken(self):
        taken = self.create(OTHER_DEVICE)['wwn']
        with mock.patch.object(lio.validation, 'generate_wwn',
                               side_effect=[taken, WWN]):
            self.assertEqual(WWN, lio.unused_wwn())

    def test_create_gives_the_tpg_its_nexus_without_a_random_one(self):
        # rtslib-fb would first write a random nexus, to be dropped again.
        with mock.patch.object(fake_rtslib.STATE, 'random_wwn') as random:
            result = self.create(DEVICE, wwn=WWN, nexus=NEXUS)
        random.assert_not_called()
        self.assertEqual(NEXUS, result['nexus'])

    def test_create_of_an_existing_wwn_raises_endpoint_exists(self):
        self.create(DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        self.assertRaises(exception.EndpointExists, self.create,
                          OTHER_DEVICE, wwn=WWN)
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_device_used_by_a_foreign_storage_object_is_refused(self):
        fake_rtslib.FileIOStorageObject('file0', dev='/dev/loop0')
        before = fake_rtslib.snapshot()
        err = self.assertRaises(exception.DeviceInUse, self.create, DEVICE)
        self.assertEqual(devices.LIO_BACKSTORE, err.kwargs['rule'])
        self.assertIn('fileio_0/file0', str(err))
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_lio_users_names_every_storage_object_of_the_device(self):
        self.create(DEVICE, wwn=WWN)
        fake_rtslib.BlockStorageObject('disk0', dev='/dev/loop0')
        self.assertEqual(
            ['iblock_0/disk0',
             'iblock_%d/%s' % (backstores.HBA_INDEX, backstores.name_of(WWN))],
            backstores.users(RDEV[DEVICE]))
        self.assertEqual(['iblock_0/disk0'],
                         backstores.users(RDEV[DEVICE], include_own=False))

    def test_lio_users_without_lio_is_empty(self):
        with mock.patch.object(configfs, 'CORE', '/nonexistent/core'):
            self.assertEqual([], backstores.users(RDEV[DEVICE]))

    def test_a_wwn_the_installed_rtslib_cannot_make_is_invalid(self):
        # rtslib-fb 2.1: NAA types 1, 2 and 5 only.
        fake_rtslib.STATE.naa_types = r'naa\.[125][0-9a-fA-F]{15}$'
        err = self.assertRaises(exception.InvalidWWN, self.create, DEVICE,
                                wwn='naa.c0ffee0000000001')
        self.assertIn('rtslib-fb 2.2', str(err))
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())

    def test_failure_at_each_step_leaves_nothing_behind(self):
        for step in ('storage', 'target', 'tpg', 'nexus', 'lun'):
            fake_rtslib.reset()
            state = self.add_foreign_objects()
            before = fake_rtslib.snapshot()
            state.fail_on[step] = fake_rtslib.RTSLibError('%s failed' % step)
            err = self.assertRaises(exception.BackendError, self.create,
                                    DEVICE, wwn=WWN, nexus=NEXUS)
            self.assertIn('%s failed' % step, str(err))
            self.assertEqual(before, fake_rtslib.snapshot(), step)
            self.assertFalse(os.path.exists(self.hba), step)

    def test_os_error_is_translated_and_rolled_back(self):
        fake_rtslib.STATE.fail_on['lun'] = OSError(errno.ENOSPC, 'full')
        err = self.assertRaises(exception.BackendError, self.create, DEVICE,
                                wwn=WWN)
        self.assertIsInstance(err.__cause__, OSError)
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())

    def test_the_first_create_loads_vhost_scsi_and_makes_the_fabric(self):
        self.create(DEVICE, wwn=WWN)
        self.modprobe.assert_called_once_with('vhost_scsi')
        self.assertTrue(os.path.isdir(configfs.VHOST_FABRIC))

    def test_a_fabric_the_kernel_will_not_make_is_kernel_support_missing(self):
        # What mkdir of target/vhost gets without vhost_scsi loaded.
        fake_rtslib.STATE.fail_on['fabric'] = OSError(errno.EINVAL,
                                                      'Invalid argument')
        err = self.assertRaises(exception.KernelSupportMissing, self.create,
                                DEVICE, wwn=WWN)
        self.assertIn('modprobe vhost_scsi', str(err))
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())
        self.assertFalse(os.path.exists(self.hba))

    def test_orphan_backstore_of_same_wwn_is_replaced(self):
        backstores.create('vhost-brick-5001405000000001',
                          self.device(OTHER_DEVICE), 'serial-0', False, None)
        self.create(DEVICE, wwn=WWN)
        self.assertEqual(
            [('block', 'vhost-brick-5001405000000001', DEVICE)],
            fake_rtslib.snapshot()['storage'])

    def test_helper_side_validation(self):
        device = self.device(DEVICE)
        for args, error in (
                ((device, 'naa.6001405bd4e8476d', None, 's'),
                 exception.InvalidWWN),
                ((device, WWN, 'naa.1', 's'), exception.InvalidNexus),
                ((device, WWN, None, 'a b'), exception.InvalidSerial),
                ((device, WWN, None, 's', 'yes'), exception.Invalid)):
            self.assertRaises(error, lio.create, *args)
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())


class GuestAttributesTestCase(LioTestCase):
    """What the guest is told of discard and FUA, from the device."""

    def attribute(self, name, wwn=WWN):
        path = os.path.join(self.hba, backstores.name_of(wwn), 'attrib', name)
        with open(path) as attribute:
            return attribute.read()

    def test_a_device_with_discard_gives_the_guest_discard(self):
        result = self.create(DEVICE, wwn=WWN)
        self.assertEqual('1', self.attribute('emulate_tpu'))
        self.assertTrue(result['luns'][0]['discard'])

    def test_a_device_without_discard_gives_the_guest_none(self):
        fake_rtslib.STATE.no_discard.add(DEVICE)
        result = self.create(DEVICE, wwn=WWN)
        self.assertEqual('0', self.attribute('emulate_tpu'))
        self.assertFalse(result['luns'][0]['discard'])

    def test_discard_false_hides_the_devices_discard(self):
        result = self.create(DEVICE, wwn=WWN, discard=False)
        self.assertEqual('0', self.attribute('emulate_tpu'))
        self.assertFalse(result['luns'][0]['discard'])

    def test_discard_true_on_a_device_without_is_refused_leaving_nothing(self):
        fake_rtslib.STATE.no_discard.add(DEVICE)
        before = fake_rtslib.snapshot()
        err = self.assertRaises(exception.DiscardNotSupported, self.create,
                                DEVICE, wwn=WWN, discard=True)
        self.assertEqual(DEVICE, err.kwargs['device'])
        self.assertEqual(before, fake_rtslib.snapshot())
        self.assertFalse(os.path.exists(self.hba))

    def test_discard_is_set_after_enable_and_before_the_lun_links(self):
        steps = []
        real_write, real_symlink = configfs.write, os.symlink

        def write(path, value):
            steps.append(os.path.basename(path))
            return real_write(path, value)

        def symlink(source, link):
            steps.append('lun link')
            return real_symlink(source, link)
        with mock.patch.object(configfs, 'write', side_effect=write), \
                mock.patch('os.symlink', side_effect=symlink):
            self.create(DEVICE, wwn=WWN)
        self.assertLess(steps.index('enable'), steps.index('emulate_tpu'))
        self.assertLess(steps.index('emulate_tpu'), steps.index('lun link'))

    def test_fua_is_not_offered_when_the_cache_would_acknowledge_it(self):
        self.fua_from_cache.return_value = True
        self.create(DEVICE, wwn=WWN)
        self.fua_from_cache.assert_called_once_with(RDEV[DEVICE])
        self.assertEqual('0', self.attribute('emulate_fua_write'))

    def test_fua_stays_the_kernels_when_the_device_honours_it(self):
        self.create(DEVICE, wwn=WWN)
        self.assertEqual('1', self.attribute('emulate_fua_write'))

    def test_show_reports_the_discard_the_guest_has(self):
        self.create(DEVICE, wwn=WWN, discard=False)
        self.assertFalse(lio.show(WWN)['luns'][0]['discard'])

    def test_a_retry_asking_other_discard_is_refused(self):
        self.create(DEVICE, wwn=WWN)
        self.assertRaises(exception.EndpointExists, lio.existing, WWN,
                          DEVICE, discard=False)

    def test_a_retry_leaving_discard_to_the_device_finds_the_endpoint(self):
        created = self.create(DEVICE, wwn=WWN, discard=False)
        self.assertEqual(created, lio.existing(WWN, DEVICE,
                                               serial='serial-1'))


class IdentityTestCase(LioTestCase):
    """A serial is refused when its guest-visible identity is taken."""

    def setUp(self):
        super().setUp()
        self.index = state.IdentityIndex(
            self.useFixture(fixtures.TempDir()).path)

    def identities(self):
        """What one call of the helper checks serials with."""
        return backstores.Identities(self.index)

    def create_checked(self, device_path, wwn, serial, identities=None):
        return lio.create(self.device(device_path), wwn, None, serial,
                          identities=identities or self.identities())

    def foreign_object(self, name, serial, company_id=None):
        storage = fake_rtslib.BlockStorageObject(name, dev=OTHER_DEVICE)
        with open(os.path.join(storage.path, 'wwn', 'vpd_unit_serial'),
                  'w') as attribute:
            attribute.write(serial)
        if company_id is not None:
            with open(os.path.join(storage.path, 'wwn', 'company_id'),
                      'w') as attribute:
                attribute.write('%#08x\n' % company_id)
        return storage

    def test_the_designator_is_lios_from_the_first_25_hex_digits(self):
        self.assertEqual(
            'naa.60014056f1a0b2e1d3c4c559f005b0e2',
            backstores.naa_designator('6f1a0b2e-1d3c-4c55-9f00-5b0e2f8b1a11'))

    def test_the_designator_skips_other_characters_and_pads_with_zeros(self):
        self.assertEqual('naa.6001405' + 'dbd'.ljust(25, '0'),
                         backstores.naa_designator('db-disk'))

    def test_the_designator_ignores_the_case_of_hex_digits(self):
        self.assertEqual(backstores.naa_designator('ABC-1'),
                         backstores.naa_designator('abc-1'))

    def test_the_designator_carries_the_company_id(self):
        self.assertEqual('naa.6abcdef1' + '0' * 24,
                         backstores.naa_designator('1', 0xabcdef))

    def test_a_serial_without_text_has_no_designator(self):
        self.assertIsNone(backstores.naa_designator(''))

    def test_a_serial_colliding_with_an_endpoints_is_refused(self):
        self.create_checked(DEVICE, WWN, 'vol-1')
        before = fake_rtslib.snapshot()
        err = self.assertRaises(exception.SerialInUse, self.create_checked,
                                OTHER_DEVICE, NEXUS, 'lv-1')
        self.assertEqual('naa.6001405' + '1'.ljust(25, '0'),
                         err.kwargs['designator'])
        self.assertEqual('%s/%s' % (backstores.HBA, backstores.name_of(WWN)),
                         err.kwargs['owner'])
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_serials_differing_only_in_trailing_zeros_collide(self):
        self.create_checked(DEVICE, WWN, 'a1')
        self.assertRaises(exception.SerialInUse, self.create_checked,
                          OTHER_DEVICE, NEXUS, 'a10')

    def test_a_serial_colliding_with_a_foreign_objects_is_refused(self):
        self.foreign_object('targetcli-disk', 'vol-1')
        err = self.assertRaises(exception.SerialInUse, self.create_checked,
                                DEVICE, WWN, 'x-1')
        self.assertIn('targetcli-disk', err.kwargs['owner'])
        self.assertEqual([], os.listdir(os.path.join(self.root, 'vhost'))
                         if os.path.isdir(os.path.join(self.root, 'vhost'))
                         else [])

    def test_another_company_id_gives_another_identity(self):
        self.foreign_object('targetcli-disk', 'vol-1', company_id=0xabcdef)
        self.create_checked(DEVICE, WWN, 'vol-1')
        self.assertEqual('vol-1', lio.show(WWN)['luns'][0]['serial'])

    def test_distinct_designators_are_accepted(self):
        self.create_checked(DEVICE, WWN, 'vol-1')
        self.create_checked(OTHER_DEVICE, NEXUS, 'vol-2')
        self.assertEqual(['vol-1', 'vol-2'],
                         [ep['luns'][0]['serial']
                          for ep in lio.list_endpoints()])

    def test_our_leftover_backstore_for_the_same_wwn_does_not_refuse(self):
        backstores.create(backstores.name_of(WWN), self.device(DEVICE),
                          'vol-1', False, None)
        self.create_checked(DEVICE, WWN, 'vol-1')
        self.assertEqual('vol-1', lio.show(WWN)['luns'][0]['serial'])

    def test_a_batch_reads_the_storage_objects_once(self):
        identities = self.identities()
        with mock.patch.object(backstores, '_names_in_our_hba',
                               wraps=backstores._names_in_our_hba) as ours:
            self.create_checked(DEVICE, WWN, 'vol-1', identities)
            self.assertRaises(exception.SerialInUse, self.create_checked,
                              OTHER_DEVICE, NEXUS, 'lv-1', identities)
        # The second create saw the first through its claim.
        self.assertEqual(1, ours.call_count)

    def test_a_create_reads_no_serial_of_our_indexed_backstores(self):
        self.create_checked(DEVICE, WWN, 'vol-1')
        with mock.patch.object(configfs, 'read_serial',
                               wraps=configfs.read_serial) as read:
            self.create_checked(OTHER_DEVICE, NEXUS, 'vol-2')
        self.assertEqual([], read.call_args_list)

    def test_a_create_indexes_its_serial_digits(self):
        self.create_checked(DEVICE, WWN, 'vol-1')
        self.assertEqual([(backstores.name_of(WWN), '1'.ljust(25, '0'))],
                         self.index.entries())

    def test_a_backstore_the_index_lacks_is_read_and_indexed(self):
        # As one restored, or made by a version without the index.
        lio.create(self.device(DEVICE), WWN, None, 'vol-1')
        self.assertRaises(exception.SerialInUse, self.create_checked,
                          OTHER_DEVICE, NEXUS, 'lv-1')
        self.assertEqual([(backstores.name_of(WWN), '1'.ljust(25, '0'))],
                         self.index.entries())

    def test_the_entry_of_a_deleted_backstore_is_dropped(self):
        self.create_checked(DEVICE, WWN, 'vol-1')
        lio.delete(WWN)
        self.create_checked(OTHER_DEVICE, NEXUS, 'lv-1')
        self.assertEqual([(backstores.name_of(NEXUS), '1'.ljust(25, '0'))],
                         self.index.entries())
        self.assertEqual('lv-1', lio.show(NEXUS)['luns'][0]['serial'])

    def test_an_entry_the_backstore_contradicts_does_not_refuse(self):
        self.create_checked(DEVICE, WWN, 'vol-2')
        name = backstores.name_of(WWN)
        self.index.update(new=[(name, '1'.ljust(25, '0'))],
                          stale=[(name, '2'.ljust(25, '0'))])
        self.create_checked(OTHER_DEVICE, NEXUS, 'lv-1')
        self.assertEqual('lv-1', lio.show(NEXUS)['luns'][0]['serial'])

    def test_a_failed_create_leaves_no_entry(self):
        fake_rtslib.STATE.fail_on['lun'] = OSError(errno.ENOSPC, 'full')
        self.assertRaises(exception.BackendError, self.create_checked,
                          DEVICE, WWN, 'vol-1')
        self.assertEqual([], self.index.entries())

    def test_an_owner_deleted_since_the_walk_no_longer_refuses(self):
        identities = self.identities()
        self.create_checked(DEVICE, WWN, 'vol-1', identities)
        lio.delete(WWN)
        self.create_checked(OTHER_DEVICE, NEXUS, 'lv-1', identities)
        self.assertEqual('lv-1', lio.show(NEXUS)['luns'][0]['serial'])

    def test_a_create_without_identities_does_not_check(self):
        # What restore does: it brings back what was accepted before.
        self.create_checked(DEVICE, WWN, 'vol-1')
        lio.create(self.device(OTHER_DEVICE), NEXUS, None, 'lv-1')
        self.assertEqual('lv-1', lio.show(NEXUS)['luns'][0]['serial'])


class StatsTestCase(LioTestCase):
    """LIO's counters of an endpoint's LUNs, as the kernel keeps them."""

    def counter(self, directory, path, value):
        with open(os.path.join(directory, 'statistics', path), 'w') as f:
            f.write('%d\n' % value)

    def lun_dir(self, wwn=WWN):
        return os.path.join(self.root, 'vhost', wwn, 'tpgt_1', 'lun', 'lun_0')

    def test_stats_reads_the_ports_and_the_devices_counters(self):
        self.create(DEVICE, wwn=WWN)
        for path, value in (('scsi_tgt_port/in_cmds', 120),
                            ('scsi_tgt_port/read_mbytes', 3),
                            ('scsi_tgt_port/write_mbytes', 5)):
            self.counter(self.lun_dir(), path, value)
        storage = os.path.join(self.hba, backstores.name_of(WWN))
        for path, value in (('scsi_tgt_dev/resets', 1),
                            ('scsi_tgt_dev/aborts_complete', 2),
                            ('scsi_tgt_dev/aborts_no_task', 4)):
            self.counter(storage, path, value)
        self.assertEqual(
            {'wwn': WWN, 'luns': [{
                'lun': 0, 'commands': 120, 'read_mbytes': 3,
                'write_mbytes': 5, 'resets': 1, 'aborts_complete': 2,
                'aborts_no_task': 4}]},
            lio.stats(WWN))

    def test_stats_of_an_unknown_endpoint_is_not_found(self):
        self.assertRaises(exception.EndpointNotFound, lio.stats, WWN)

    def test_stats_skips_a_lun_left_without_its_link(self):
        self.create(DEVICE, wwn=WWN)
        fake_rtslib.STATE.targets[('vhost', WWN)].tpgs[0].luns[0].break_link()
        self.assertEqual({'wwn': WWN, 'luns': []}, lio.stats(WWN))

    def test_list_stats_counts_every_vhost_endpoint_ours_or_not(self):
        self.add_foreign_objects()
        self.create(DEVICE, wwn=WWN)
        self.assertEqual([WWN, 'naa.5001405bbbbbbbbb'],
                         [found['wwn'] for found in lio.list_stats()])

    def test_stats_change_nothing(self):
        self.create(DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        lio.stats(WWN)
        lio.list_stats()
        self.assertEqual(before, fake_rtslib.snapshot())


class ExistingTestCase(LioTestCase):
    """lio.existing: is a create a retry of the one that made wwn?"""

    def test_unknown_wwn_is_none(self):
        self.assertIsNone(lio.existing(WWN, DEVICE))

    def test_retry_with_same_device_returns_the_endpoint(self):
        first = self.create(DEVICE, wwn=WWN, nexus=NEXUS)
        self.assertEqual(first, lio.existing(WWN, DEVICE, nexus=NEXUS,
                                             serial='serial-1'))
        self.assertEqual(first, lio.existing(WWN, '/dev/loop0'))

    def test_another_device_raises_endpoint_exists(self):
        self.create(OTHER_DEVICE, wwn=WWN)
        err = self.assertRaises(exception.EndpointExists, lio.existing,
                                WWN, DEVICE)
        self.assertIn(OTHER_DEVICE, str(err))

    def test_another_nexus_raises_endpoint_exists(self):
        self.create(DEVICE, wwn=WWN, nexus=NEXUS)
        self.assertRaises(exception.EndpointExists, lio.existing, WWN,
                          DEVICE, nexus='naa.5001405000000003')

    def test_another_serial_raises_endpoint_exists(self):
        self.create(DEVICE, wwn=WWN)
        self.assertRaises(exception.EndpointExists, lio.existing, WWN,
                          DEVICE, serial='other')

    def test_another_read_only_flag_raises_endpoint_exists(self):
        self.create(DEVICE, wwn=WWN)
        self.assertRaises(exception.EndpointExists, lio.existing, WWN,
                          DEVICE, read_only=True)


class DeleteTestCase(LioTestCase):

    def test_delete_removes_target_and_own_backstore(self):
        self.add_foreign_objects()
        before = fake_rtslib.snapshot()
        self.create(DEVICE, wwn=WWN)
        self.assertTrue(lio.delete(WWN))
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_delete_claims_the_endpoint_while_removing_luns(self):
        self.create(DEVICE, wwn=WWN)
        lio.delete(WWN)
        self.assertEqual([WWN], self.claims)

    def test_delete_unknown_wwn_returns_false(self):
        self.add_foreign_objects()
        before = fake_rtslib.snapshot()
        self.assertFalse(lio.delete(WWN))
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_delete_unknown_wwn_removes_our_orphan_backstore(self):
        backstores.create('vhost-brick-5001405000000001',
                          self.device(DEVICE), 'serial-0', False, None)
        self.assertFalse(lio.delete(WWN))
        self.assertEqual([], fake_rtslib.snapshot()['storage'])

    def test_delete_held_endpoint_raises_and_removes_nothing(self):
        self.create(DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        fake_rtslib.STATE.held.add(WWN)
        self.assertRaises(exception.EndpointInUse, lio.delete, WWN)
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_delete_of_an_endpoint_a_hypervisor_names_is_refused(self):
        # A paused guest's QEMU, or one whose guest has not started the
        # device: the claim would succeed.
        self.create(DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        self.named.add(WWN)
        self.assertRaises(exception.EndpointInUse, lio.delete, WWN)
        self.assertEqual(before, fake_rtslib.snapshot())
        self.assertEqual([], self.claims)

    def test_hypervisor_attaching_after_claim_gets_luns_back(self):
        self.create(DEVICE, wwn=WWN)
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
        self.create(DEVICE, wwn=WWN)
        tpg = fake_rtslib.STATE.targets[('vhost', WWN)].tpgs[0]
        fake_rtslib.LUN(tpg, 1, fake_rtslib.BlockStorageObject(
            'disk0', dev='/dev/sdz'))
        before = fake_rtslib.snapshot()
        second = '%s/lun/lun_1/' % tpg.path
        real_unlink = os.unlink

        def unlink(path, **kwargs):
            if path.startswith(second):
                raise OSError(errno.EIO, 'io', path)
            real_unlink(path, **kwargs)
        self.useFixture(fixtures.MonkeyPatch('os.unlink', unlink))
        self.assertRaises(exception.BackendError, lio.delete, WWN)
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_delete_of_a_target_root_may_not_write_changes_nothing(self):
        # libvirt's DAC driver chowns the target's directory to QEMU's
        # user while a domain uses it; the daemon has no CAP_DAC_OVERRIDE.
        self.create(DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        target_dir = fake_rtslib.STATE.targets[('vhost', WWN)].path
        real_access = os.access
        self.useFixture(fixtures.MockPatch(
            'os.access', side_effect=lambda path, mode, **kwargs: (
                path != target_dir and real_access(path, mode, **kwargs))))
        err = self.assertRaises(exception.EndpointNotOwned, lio.delete, WWN)
        self.assertEqual(target_dir, err.kwargs['path'])
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_delete_foreign_endpoint_keeps_its_backstore(self):
        state = self.add_foreign_objects()
        lio.delete('naa.5001405bbbbbbbbb')
        self.assertNotIn(('vhost', 'naa.5001405bbbbbbbbb'), state.targets)
        self.assertIn('disk0', state.storage)
        self.assertIn(('iscsi', 'iqn.2003-01.org.example:t1'), state.targets)

    def test_delete_removes_a_lun_left_without_its_link(self):
        self.create(DEVICE, wwn=WWN)
        fake_rtslib.STATE.targets[('vhost', WWN)].tpgs[0].luns[0].break_link()
        self.assertTrue(lio.delete(WWN))
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())

    def test_delete_removes_node_acls_and_their_mapped_luns(self):
        # vhost_brick makes none; targetcli can, and rtslib-fb's delete
        # removed them.
        self.create(DEVICE, wwn=WWN)
        tpg = fake_rtslib.STATE.targets[('vhost', WWN)].tpgs[0].path
        mapped = tpg + '/acls/naa.5001405ccccccccc/lun_0'
        os.makedirs(mapped)
        os.symlink(tpg + '/lun/lun_0', mapped + '/link')
        self.assertTrue(lio.delete(WWN))
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())

    def test_delete_endpoint_without_nexus_needs_no_claim(self):
        target = fake_rtslib.Target(fake_rtslib.FabricModule('vhost'), WWN,
                                    mode='create')
        tpg = fake_rtslib.TPG(target, 1)
        fake_rtslib.utils.fwrite(tpg.path + '/nexus', 'NULL')
        self.assertTrue(lio.delete(WWN))
        self.assertEqual([], self.claims)


class VersionsTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.site = self.useFixture(fixtures.TempDir()).path
        package = os.path.join(self.site, 'rtslib_fb')
        os.mkdir(package)
        self.module = mock.Mock(__file__=os.path.join(package,
                                                      '__init__.py'),
                                spec=['__file__'])
        self.import_module = self.useFixture(fixtures.MockPatch(
            'importlib.import_module', return_value=self.module)).mock

    def test_versions_are_the_running_kernel_and_installed_rtslib(self):
        os.mkdir(os.path.join(self.site, 'rtslib_fb-2.2.4.dist-info'))
        os.mkdir(os.path.join(self.site, 'rtslib_fb'
                              '-2.2.4.dist-info-not-this'))
        self.assertEqual({'kernel_release': os.uname().release,
                          'rtslib_fb_version': '2.2.4'}, lio.versions())

    def test_an_egg_info_names_the_version_too(self):
        os.mkdir(os.path.join(self.site, 'rtslib_fb-2.1.75.egg-info'))
        self.assertEqual('2.1.75', lio.versions()['rtslib_fb_version'])

    def test_without_metadata_the_module_version_counts(self):
        self.module.__version__ = '2.1.75'
        self.assertEqual('2.1.75', lio.versions()['rtslib_fb_version'])

    def test_without_rtslib_its_version_is_none(self):
        self.import_module.side_effect = ImportError
        self.assertIsNone(lio.versions()['rtslib_fb_version'])


class ReadTestCase(LioTestCase):
    """show and list read configfs directly, without rtslib."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatchObject(
            lio, '_rtslib', side_effect=AssertionError('rtslib imported')))

    def vhost_target(self, wwn, *tags):
        target = fake_rtslib.Target(fake_rtslib.FabricModule('vhost'), wwn,
                                    mode='create')
        return [fake_rtslib.TPG(target, tag) for tag in tags]

    def test_list_returns_vhost_endpoints_only(self):
        with mock.patch.object(lio, '_rtslib', return_value=fake_rtslib):
            self.add_foreign_objects()
            self.create(DEVICE, wwn=WWN, nexus=NEXUS)
        self.assertEqual(
            [(WWN, [(DEVICE, 'vhost-brick-5001405000000001')]),
             ('naa.5001405bbbbbbbbb', [('/dev/sdz', 'disk0')])],
            [(ep['wwn'], [(lun['device_path'], lun['backstore'])
                          for lun in ep['luns']])
             for ep in lio.list_endpoints()])

    def test_list_gives_every_tpg_sorted_by_wwn_then_tag(self):
        self.vhost_target('naa.5001405ccccccccc', 3, 1)
        self.vhost_target('naa.5001405aaaaaaaaa', 2)
        self.assertEqual(
            [('naa.5001405aaaaaaaaa', 2), ('naa.5001405ccccccccc', 1),
             ('naa.5001405ccccccccc', 3)],
            [(ep['wwn'], ep['tpgt']) for ep in lio.list_endpoints()])

    def test_list_without_vhost_fabric_is_empty(self):
        self.assertEqual([], lio.list_endpoints())

    def test_list_without_lio_is_empty(self):
        with mock.patch.object(configfs, 'VHOST_FABRIC', '/nonexistent/vhost'):
            self.assertEqual([], lio.list_endpoints())

    def test_target_deleted_while_listing_is_skipped(self):
        [gone] = self.vhost_target('naa.5001405aaaaaaaaa', 1)
        [kept] = self.vhost_target('naa.5001405ccccccccc', 1)
        real_scandir = os.scandir

        def scandir_then_delete(path):
            if path != configfs.VHOST_FABRIC:
                return real_scandir(path)
            entries = list(real_scandir(path))
            gone.target.delete()
            return iter(entries)
        with mock.patch('os.scandir', side_effect=scandir_then_delete):
            self.assertEqual([kept.target.wwn],
                             [ep['wwn'] for ep in lio.list_endpoints()])

    def test_show_gives_the_lowest_numbered_tpg(self):
        [tpg3, _tpg1] = self.vhost_target('naa.5001405ccccccccc', 3, 1)
        fake_rtslib.utils.fwrite(tpg3.path + '/nexus', 'NULL')
        self.assertEqual(1, lio.show('naa.5001405ccccccccc')['tpgt'])

    def test_show_is_what_create_returned(self):
        with mock.patch.object(lio, '_rtslib', return_value=fake_rtslib):
            created = self.create(DEVICE, wwn=WWN)
        self.assertEqual(created, lio.show(WWN))

    def test_target_without_tpg_shows_as_empty_tpg_1(self):
        self.vhost_target(WWN)
        self.assertEqual({'wwn': WWN, 'tpgt': 1, 'nexus': '', 'luns': []},
                         lio.show(WWN))
        self.assertEqual([], lio.list_endpoints())

    def test_tpg_without_nexus_has_empty_nexus(self):
        [tpg] = self.vhost_target(WWN, 1)
        fake_rtslib.utils.fwrite(tpg.path + '/nexus', 'NULL')
        self.assertEqual('', lio.show(WWN)['nexus'])

    def test_nexus_unreadable_with_enodev_is_empty(self):
        # The kernel's answer to reading the nexus of a TPG that has none.
        # The open succeeds; the read fails.
        self.vhost_target(WWN, 1)
        real_read = os.read

        def enodev_for_nexus(fd, size):
            if os.readlink('/proc/self/fd/%d' % fd).endswith('/nexus'):
                raise OSError(errno.ENODEV, 'No such device')
            return real_read(fd, size)
        with mock.patch('os.read', side_effect=enodev_for_nexus):
            self.assertEqual('', lio.show(WWN)['nexus'])

    def test_lun_without_its_link_is_listed_without_device(self):
        with mock.patch.object(lio, '_rtslib', return_value=fake_rtslib):
            self.create(DEVICE, wwn=WWN)
        fake_rtslib.STATE.targets[('vhost', WWN)].tpgs[0].luns[0].break_link()
        self.assertEqual([{'lun': 0, 'device_path': '', 'backstore': '',
                           'serial': '', 'read_only': False,
                           'discard': False}],
                         lio.show(WWN)['luns'])

    def test_show_unknown_raises_not_found(self):
        self.vhost_target('naa.5001405ccccccccc', 1)
        self.assertRaises(exception.EndpointNotFound, lio.show, WWN)

    def test_show_without_vhost_fabric_raises_not_found(self):
        self.assertRaises(exception.EndpointNotFound, lio.show, WWN)

    def test_reads_change_and_load_nothing(self):
        self.add_foreign_objects()
        before = fake_rtslib.snapshot()
        lio.list_endpoints()
        lio.show('naa.5001405bbbbbbbbb')
        self.assertEqual(before, fake_rtslib.snapshot())
        self.prepare.assert_not_called()


class BackstoreLayoutTestCase(LioTestCase):
    """Our backstores share one HBA; older ones had an HBA each."""

    def path(self, wwn=WWN):
        return os.path.join(self.hba, backstores.name_of(wwn))

    def old_layout_endpoint(self):
        """An endpoint as versions before HBA_INDEX made it."""
        storage = fake_rtslib.BlockStorageObject(backstores.name_of(WWN),
                                                 dev=DEVICE)
        target = fake_rtslib.Target(fake_rtslib.FabricModule('vhost'), WWN,
                                    mode='create')
        fake_rtslib.LUN(fake_rtslib.TPG(target, 1), 0, storage)
        return storage

    def test_backstore_is_made_in_the_shared_hba(self):
        self.create(DEVICE, wwn=WWN)
        with open(os.path.join(self.path(), 'udev_path')) as udev_path:
            self.assertEqual(DEVICE, udev_path.read())
        with open(os.path.join(self.path(), 'enable')) as enable:
            self.assertEqual('1', enable.read())
        with open(os.path.join(self.path(), 'wwn', 'vpd_unit_serial')) as sn:
            self.assertEqual('serial-1', sn.read())

    def test_endpoints_share_one_hba(self):
        self.create(DEVICE, wwn=WWN)
        self.create(OTHER_DEVICE, wwn=NEXUS)
        self.assertEqual(['iblock_%d' % backstores.HBA_INDEX],
                         os.listdir(os.path.join(self.root, 'core')))
        self.assertEqual(sorted([backstores.name_of(WWN),
                                 backstores.name_of(NEXUS)]),
                         sorted(os.listdir(self.hba)))

    def test_backstore_is_found_by_its_path_without_a_scan(self):
        self.create(DEVICE, wwn=WWN)
        with mock.patch('os.listdir', side_effect=AssertionError('scan')), \
                mock.patch('os.scandir', side_effect=AssertionError('scan')):
            self.assertEqual(self.path(), backstores.find(
                backstores.name_of(WWN)))
            self.assertIsNone(backstores.find(backstores.name_of(NEXUS)))

    def test_delete_keeps_the_hba_while_other_backstores_use_it(self):
        self.create(DEVICE, wwn=WWN)
        self.create(OTHER_DEVICE, wwn=NEXUS)
        lio.delete(WWN)
        self.assertEqual([backstores.name_of(NEXUS)], os.listdir(self.hba))

    def test_deleting_the_last_endpoint_removes_the_hba(self):
        self.create(DEVICE, wwn=WWN)
        lio.delete(WWN)
        self.assertEqual([], os.listdir(os.path.join(self.root, 'core')))

    def test_backstore_a_foreign_lun_links_survives_delete(self):
        logger = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        self.create(DEVICE, wwn=WWN)
        foreign = fake_rtslib.Target(fake_rtslib.FabricModule('loopback'),
                                     'naa.5001405aaaaaaaaa', mode='create')
        fake_rtslib.LUN(fake_rtslib.TPG(foreign, 1), 0,
                        fake_rtslib.BlockStorageObject(
                            backstores.name_of(WWN),
                            index=backstores.HBA_INDEX))
        self.assertTrue(lio.delete(WWN))
        snapshot = fake_rtslib.snapshot()
        self.assertEqual([('block', backstores.name_of(WWN), DEVICE)],
                         snapshot['storage'])
        self.assertEqual([('loopback', 'naa.5001405aaaaaaaaa',
                           ((0, backstores.name_of(WWN)),))],
                         [(fabric, wwn, luns) for fabric, wwn, _tag,
                          _nexus, luns in snapshot['targets']])
        self.assertIn('Leaving backstore %s' % self.path(), logger.output)

    def test_delete_removes_an_old_layout_backstore_with_its_hba(self):
        self.old_layout_endpoint()
        self.assertTrue(lio.delete(WWN))
        self.assertEqual([], os.listdir(os.path.join(self.root, 'core')))

    def test_delete_of_an_unknown_wwn_scans_nothing(self):
        with mock.patch('glob.glob', side_effect=AssertionError('scan')), \
                mock.patch('os.listdir', side_effect=AssertionError('scan')):
            self.assertFalse(lio.delete(WWN))

    def test_orphan_backstores_include_the_old_layout(self):
        fake_rtslib.BlockStorageObject(backstores.name_of(WWN), dev=DEVICE)
        backstores.create(backstores.name_of(NEXUS),
                          self.device(OTHER_DEVICE), 'serial-0', False, None)
        self.assertEqual(sorted([backstores.name_of(WWN),
                                 backstores.name_of(NEXUS)]),
                         lio.orphan_backstores())

    def test_linked_backstores_are_not_orphans(self):
        self.add_foreign_objects()
        self.old_layout_endpoint()
        self.create(OTHER_DEVICE, wwn=NEXUS)
        self.assertEqual([], lio.orphan_backstores())

    def test_orphan_backstores_without_lio_is_empty(self):
        with mock.patch.object(configfs, 'CORE', '/nonexistent/core'):
            self.assertEqual([], lio.orphan_backstores())

    def test_delete_backstore_removes_an_old_layout_one_with_its_hba(self):
        storage = fake_rtslib.BlockStorageObject(backstores.name_of(WWN),
                                                 dev=DEVICE)
        lio.delete_backstore(storage.name)
        self.assertEqual([], os.listdir(os.path.join(self.root, 'core')))

    def test_delete_backstore_of_foreign_name_is_refused(self):
        fake_rtslib.BlockStorageObject('disk0', dev=DEVICE)
        self.assertRaises(exception.BackendError, lio.delete_backstore,
                          'disk0')
        self.assertEqual(['disk0'], list(fake_rtslib.STATE.storage))


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

    def test_a_loaded_vhost_scsi_counts_before_configfs_shows_it(self):
        # The fabric's configfs directory appears at the first target.
        loaded = {'/sys/module/vhost_scsi'}
        with mock.patch('os.path.isdir', side_effect=loaded.__contains__):
            self.assertTrue(lio.kernel_support()['vhost_scsi'])
        with mock.patch('os.path.isdir', return_value=False):
            self.assertFalse(lio.kernel_support()['vhost_scsi'])

    def test_backstore_name_is_derived_from_the_wwn(self):
        self.assertEqual('vhost-brick-5001405000000001',
                         backstores.name_of(WWN))

    def test_rtslib_import_failure_raises_kernel_support_missing(self):
        with mock.patch.object(lio.importlib, 'import_module',
                               side_effect=ImportError('No libudev')):
            self.assertRaises(exception.KernelSupportMissing, lio._rtslib)


class PrepareTestCase(base.TestCase):

    def test_configfs_and_rtsroot_are_prepared_once_per_process(self):
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.lio._prepared', False))
        rtslib = mock.Mock()
        with mock.patch('os.path.isdir', return_value=True), \
                mock.patch('os.makedirs') as makedirs:
            lio._prepare(rtslib)
            lio._prepare(rtslib)
        rtslib.RTSRoot.assert_called_once_with()
        makedirs.assert_called_once_with(lio.DBROOT, exist_ok=True)
