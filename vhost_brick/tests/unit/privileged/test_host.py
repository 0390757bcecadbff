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

import os
from unittest import mock

import fixtures

from vhost_brick import exception
from vhost_brick.privileged import backstores
from vhost_brick.privileged import configfs
from vhost_brick.privileged import devices
from vhost_brick.privileged import host
from vhost_brick.privileged import lio
from vhost_brick.privileged import state
from vhost_brick.tests.unit import fake_rtslib
from vhost_brick.tests.unit.privileged import test_lio


WWN = test_lio.WWN
NEXUS = test_lio.NEXUS
DEVICE = test_lio.DEVICE
OTHER_DEVICE = test_lio.OTHER_DEVICE
ALLOWED = ('/dev/**',)


def linked_backstores():
    return {lun.storage_object.name
            for target in fake_rtslib.STATE.targets.values()
            for tpg in target.tpgs for lun in tpg.luns}


class HostTestCase(test_lio.LioTestCase):
    """Helper operations against the fake rtslib and a real state file."""

    def setUp(self):
        super().setUp()
        self.record = state.EndpointRecord(
            self.useFixture(fixtures.TempDir()).path)
        self.useFixture(fixtures.MockPatchObject(
            configfs, 'linked_storage_names', side_effect=linked_backstores))
        self.identities = {}
        self.admitted = []
        self.useFixture(fixtures.MockPatchObject(
            devices, 'admit', side_effect=self.fake_admit))

    def fake_admit(self, device_path, allowed_devices):
        """devices.admit without sysfs: busy devices are held."""
        self.assertEqual(ALLOWED, allowed_devices)
        if device_path not in test_lio.RDEV:
            raise exception.InvalidDevice(device=device_path,
                                          reason='no such file')
        if device_path in self.busy:
            raise exception.DeviceInUse(device=device_path,
                                        rule=devices.HELD_EXCLUSIVELY,
                                        reason='busy')
        self.admitted.append(device_path)
        return devices.Device(device_path, device_path,
                              test_lio.RDEV[device_path],
                              self.identities.get(device_path))

    def status(self, wwn=WWN):
        entry = self.record.load().get(wwn)
        return entry and entry['status']


class CreateDeleteTestCase(HostTestCase):

    def test_create_records_the_endpoint_its_serial_and_identity(self):
        self.identities[DEVICE] = 'wwid naa.600140512345678'
        endpoint = host.create(self.record, ALLOWED, DEVICE, wwn=WWN,
                               nexus=NEXUS, serial='volume-1')
        # The discard policy is recorded, not what the device gave.
        lun = dict(endpoint['luns'][0], identity='wwid naa.600140512345678',
                   discard=None)
        self.assertEqual(dict(endpoint, status='present', luns=[lun]),
                         self.record.load()[WWN])
        self.assertEqual('volume-1', lun['serial'])

    def test_create_generates_a_serial_when_none_is_given(self):
        endpoint = host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        self.assertRegex(endpoint['luns'][0]['serial'], r'^[0-9a-f-]{36}$')
        self.assertEqual(endpoint['luns'][0]['serial'],
                         self.record.get(WWN)['luns'][0]['serial'])

    def test_refused_device_changes_nothing(self):
        self.busy.add(DEVICE)
        before = fake_rtslib.snapshot()
        err = self.assertRaises(exception.DeviceInUse, host.create,
                                self.record, ALLOWED, DEVICE, wwn=WWN)
        self.assertEqual(devices.HELD_EXCLUSIVELY, err.kwargs['rule'])
        self.assertEqual(before, fake_rtslib.snapshot())
        self.assertEqual({}, self.record.load())

    def test_busy_device_names_the_lio_object_that_holds_it(self):
        fake_rtslib.BlockStorageObject('disk0', dev='/dev/loop0')
        self.busy.add(DEVICE)
        err = self.assertRaises(exception.DeviceInUse, host.create,
                                self.record, ALLOWED, DEVICE)
        self.assertEqual(devices.LIO_BACKSTORE, err.kwargs['rule'])
        self.assertIn('iblock_0/disk0', str(err))

    def test_retry_returns_the_endpoint_without_admitting_again(self):
        first = host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        self.busy.add(DEVICE)  # as our own backstore holds it
        self.assertEqual(first, host.create(self.record, ALLOWED, DEVICE,
                                            wwn=WWN))
        self.assertEqual([DEVICE], self.admitted)

    def test_failed_create_records_nothing(self):
        fake_rtslib.STATE.fail_on['lun'] = fake_rtslib.RTSLibError('no')
        self.assertRaises(exception.BackendError, host.create, self.record,
                          ALLOWED, DEVICE, wwn=WWN)
        self.assertEqual({}, self.record.load())

    def test_refused_retry_keeps_the_record(self):
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        self.assertRaises(exception.EndpointExists, host.create,
                          self.record, ALLOWED, OTHER_DEVICE, wwn=WWN)
        self.assertEqual('present', self.status())

    def test_delete_forgets_the_endpoint(self):
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        self.assertTrue(host.delete(self.record, WWN))
        self.assertEqual({}, self.record.load())

    def test_refused_delete_keeps_the_record(self):
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        fake_rtslib.STATE.held.add(WWN)
        self.assertRaises(exception.EndpointInUse, host.delete,
                          self.record, WWN)
        self.assertEqual('present', self.status())

    def test_invalid_input_touches_neither_lio_nor_the_record(self):
        for call in ((host.create, self.record, ALLOWED, '/dev/null'),
                     (host.create, self.record, ALLOWED, DEVICE,
                      'naa.6' + '0' * 15),
                     (host.delete, self.record, 'naa.1')):
            self.assertRaises(exception.Invalid, *call)
        self.assertFalse(os.path.exists(self.record.directory))
        self.prepare.assert_not_called()


class CrashTestCase(HostTestCase):
    """A helper killed midway leaves an intent the next call finishes."""

    def kill_at(self, step):
        fake_rtslib.STATE.fail_on[step] = SystemExit('SIGKILL')

    def build_until_killed(self):
        """lio's build of endpoint WWN, in a fabric already made."""
        lio._ensure_vhost_fabric()
        self.assertRaises(SystemExit, lio._build, self.device(DEVICE), WWN,
                          NEXUS, 's', False, None)

    def test_intent_is_recorded_before_a_create_touches_lio(self):
        seen = []
        self.prepare.side_effect = lambda rtslib: seen.append(self.status())
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        self.assertEqual(['creating'], seen)

    def test_intent_is_recorded_before_a_delete_removes_anything(self):
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        seen = []
        real_remove_luns = lio._remove_luns

        def remove_luns(luns):
            seen.append(self.status())
            return real_remove_luns(luns)
        self.useFixture(fixtures.MockPatchObject(
            lio, '_remove_luns', side_effect=remove_luns))
        host.delete(self.record, WWN)
        self.assertEqual(['deleting'], seen)

    def test_create_after_a_crashed_create_converges(self):
        for step in ('storage', 'target', 'tpg', 'nexus', 'lun'):
            fake_rtslib.reset()
            self.record.discard(WWN)
            self.record.set(WWN, state.CREATING)
            # What the killed helper built before dying at this step:
            self.kill_at(step)
            self.build_until_killed()
            endpoint = host.create(self.record, ALLOWED, DEVICE, wwn=WWN,
                                   nexus=NEXUS)
            self.assertEqual(DEVICE, endpoint['luns'][0]['device_path'],
                             step)
            self.assertEqual('present', self.status(), step)

    def test_delete_after_a_crashed_delete_converges(self):
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        self.record.set(WWN, state.DELETING)
        fake_rtslib.STATE.targets[('vhost', WWN)].tpgs[0].luns[0].delete()
        self.assertTrue(host.delete(self.record, WWN))
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())
        self.assertEqual({}, self.record.load())

    def test_cleanup_removes_half_built_endpoint(self):
        self.record.set(WWN, state.CREATING)
        self.kill_at('lun')
        self.build_until_killed()
        self.assertEqual({'endpoints': [WWN], 'backstores': []},
                         host.cleanup(self.record))
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())
        self.assertEqual({}, self.record.load())


class CleanupTestCase(HostTestCase):

    def test_unrecorded_orphan_backstore_is_removed(self):
        fake_rtslib.BlockStorageObject(backstores.name_of(WWN), dev=DEVICE)
        self.assertEqual({'endpoints': [],
                          'backstores': [backstores.name_of(WWN)]},
                         host.cleanup(self.record))
        self.assertEqual([], fake_rtslib.snapshot()['storage'])

    def test_orphan_backstore_with_its_lun_less_target_is_removed(self):
        fake_rtslib.BlockStorageObject(backstores.name_of(WWN), dev=DEVICE)
        fake_rtslib.TPG(fake_rtslib.Target(fake_rtslib.FabricModule('vhost'),
                                           WWN, mode='create'), 1)
        self.assertEqual([WWN], host.cleanup(self.record)['endpoints'])
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())

    def test_complete_endpoints_and_foreign_objects_are_kept(self):
        self.add_foreign_objects()
        fake_rtslib.TPG(fake_rtslib.Target(fake_rtslib.FabricModule('vhost'),
                                           'naa.5001405ccccccccc',
                                           mode='create'), 1)
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        self.assertEqual({'endpoints': [], 'backstores': []},
                         host.cleanup(self.record))
        self.assertEqual(before, fake_rtslib.snapshot())


class RestoreTestCase(HostTestCase):

    def reboot(self):
        """LIO forgets everything; the state file survives."""
        fake_rtslib.reset()

    def test_restore_recreates_with_same_wwn_nexus_serial_and_flag(self):
        created = host.create(self.record, ALLOWED, DEVICE, wwn=WWN,
                              nexus=NEXUS, serial='volume-1', read_only=True)
        self.reboot()
        report = host.restore(self.record, ALLOWED)
        self.assertEqual({'restored': [created], 'already_present': [],
                          'failed': []}, report)
        self.assertEqual(created, lio.show(WWN))
        self.assertEqual('volume-1', created['luns'][0]['serial'])
        self.assertTrue(created['luns'][0]['read_only'])

    def test_restore_brings_back_serials_whose_identities_collide(self):
        # Recorded by a version that did not refuse them.
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN, serial='vol-1')
        with mock.patch.object(backstores.Identities, 'claim'):
            host.create(self.record, ALLOWED, OTHER_DEVICE, wwn=NEXUS,
                        serial='lv-1')
        self.reboot()
        report = host.restore(self.record, ALLOWED)
        self.assertEqual([], report['failed'])
        self.assertEqual(['lv-1', 'vol-1'], sorted(
            ep['luns'][0]['serial'] for ep in report['restored']))

    def test_create_refuses_a_serial_whose_identity_is_taken(self):
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN, serial='vol-1')
        self.assertRaises(exception.SerialInUse, host.create, self.record,
                          ALLOWED, OTHER_DEVICE, wwn=NEXUS, serial='lv-1')
        self.assertEqual([WWN], list(self.record.load()))

    def test_restore_reapplies_the_recorded_discard_policy(self):
        created = host.create(self.record, ALLOWED, DEVICE, wwn=WWN,
                              discard=False)
        self.reboot()
        report = host.restore(self.record, ALLOWED)
        self.assertEqual([created], report['restored'])
        self.assertFalse(lio.show(WWN)['luns'][0]['discard'])

    def test_restore_of_an_entry_before_discard_mirrors_the_device(self):
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        entry = self.record.get(WWN)
        del entry['luns'][0]['discard']
        self.record.set(WWN, state.PRESENT, nexus=entry['nexus'],
                        tpgt=entry['tpgt'], luns=entry['luns'])
        self.reboot()
        [restored] = host.restore(self.record, ALLOWED)['restored']
        self.assertTrue(restored['luns'][0]['discard'])
        self.assertIsNone(self.record.get(WWN)['luns'][0]['discard'])

    def test_a_restore_where_discard_is_gone_reports_it_typed(self):
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN, discard=True)
        self.reboot()
        fake_rtslib.STATE.no_discard.add(DEVICE)
        [failure] = host.restore(self.record, ALLOWED)['failed']
        self.assertEqual('DiscardNotSupported', failure['error']['error'])
        self.assertEqual([], fake_rtslib.snapshot()['storage'])

    def test_restore_skips_present_endpoints(self):
        created = host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        before = fake_rtslib.snapshot()
        self.assertEqual([created],
                         host.restore(self.record,
                                      ALLOWED)['already_present'])
        self.assertEqual(before, fake_rtslib.snapshot())

    def test_restore_refuses_a_device_that_is_now_another_disk(self):
        self.identities[DEVICE] = 'loop dev=2049 ino=12 offset=0 sizelimit=0'
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        recorded = self.record.get(WWN)
        self.reboot()
        self.identities[DEVICE] = 'loop dev=2049 ino=99 offset=0 sizelimit=0'
        report = host.restore(self.record, ALLOWED)
        [failure] = report['failed']
        self.assertEqual(WWN, failure['item'])
        self.assertEqual('DeviceNotAllowed', failure['error']['error'])
        self.assertEqual(devices.IDENTITY,
                         failure['error']['kwargs']['rule'])
        self.assertEqual([], report['restored'])
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())
        self.assertEqual(recorded, self.record.get(WWN))

    def test_restore_of_a_device_without_identity_checks_none(self):
        created = host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        self.reboot()
        self.identities[DEVICE] = 'serial gained-one'
        self.assertEqual([created],
                         host.restore(self.record, ALLOWED)['restored'])

    def test_restore_fixes_the_serial_of_a_format_2_entry(self):
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN, nexus=NEXUS)
        entry = self.record.get(WWN)
        for key in ('serial', 'read_only', 'identity'):
            del entry['luns'][0][key]
        self.record.set(WWN, state.PRESENT, **host._fields(entry))
        self.reboot()
        [restored] = host.restore(self.record, ALLOWED)['restored']
        lun = self.record.get(WWN)['luns'][0]
        self.assertEqual(restored['luns'][0]['serial'], lun['serial'])
        self.assertFalse(lun['read_only'])

    def test_missing_device_is_reported_and_the_rest_restored(self):
        gone = host.create(self.record, ALLOWED, '/dev/loop0', wwn=WWN)
        kept = host.create(self.record, ALLOWED, OTHER_DEVICE,
                           wwn='naa.5001405000000009')
        self.reboot()
        entry = self.record.get(WWN)
        entry['luns'][0]['device_path'] = '/dev/vanished'
        self.record.set(WWN, state.PRESENT, **host._fields(entry))
        report = host.restore(self.record, ALLOWED)
        self.assertEqual([kept], report['restored'])
        [failure] = report['failed']
        self.assertEqual(gone['wwn'], failure['item'])
        self.assertEqual('InvalidDevice', failure['error']['error'])
        self.assertIn('/dev/vanished', failure['error']['message'])

    def test_restore_never_touches_foreign_objects(self):
        host.create(self.record, ALLOWED, DEVICE, wwn=WWN)
        self.reboot()
        self.add_foreign_objects()
        before = fake_rtslib.snapshot()
        host.restore(self.record, ALLOWED)
        after = fake_rtslib.snapshot()
        self.assertEqual([obj for obj in after['targets']
                          if obj[1] != WWN], before['targets'])


class BatchTestCase(HostTestCase):
    """create_many and delete_many: all-or-nothing per endpoint."""

    OTHER_WWN = 'naa.5001405000000009'

    def specs(self):
        return [{'device_path': DEVICE, 'wwn': WWN},
                {'device_path': OTHER_DEVICE, 'wwn': self.OTHER_WWN}]

    def test_create_many_creates_and_records_each(self):
        report = host.create_many(self.record, ALLOWED, self.specs())
        self.assertEqual([], report['failed'])
        self.assertEqual([WWN, self.OTHER_WWN],
                         [ep['wwn'] for ep in report['created']])
        self.assertEqual(['present', 'present'],
                         [self.status(WWN), self.status(self.OTHER_WWN)])

    def test_one_failure_is_reported_and_the_rest_created(self):
        fake_rtslib.STATE.fail_on['lun'] = fake_rtslib.RTSLibError('no')
        report = host.create_many(self.record, ALLOWED, self.specs())
        [failure] = report['failed']
        self.assertEqual({'device_path': DEVICE, 'wwn': WWN, 'nexus': None,
                          'serial': None, 'read_only': False,
                          'discard': None},
                         failure['item'])
        self.assertEqual('BackendError', failure['error']['error'])
        self.assertEqual([self.OTHER_WWN],
                         [ep['wwn'] for ep in report['created']])
        # The failed endpoint left nothing behind, in LIO or the record.
        self.assertEqual([self.OTHER_WWN],
                         [t[1] for t in fake_rtslib.snapshot()['targets']])
        self.assertEqual([self.OTHER_WWN], list(self.record.load()))

    def test_a_serial_colliding_within_the_batch_is_refused_and_unrecorded(
            self):
        specs = self.specs()
        specs[0]['serial'], specs[1]['serial'] = 'vol-1', 'lv-1'
        report = host.create_many(self.record, ALLOWED, specs)
        [failure] = report['failed']
        self.assertEqual('SerialInUse', failure['error']['error'])
        self.assertEqual(self.OTHER_WWN, failure['item']['wwn'])
        self.assertEqual([WWN], list(self.record.load()))
        self.assertEqual([WWN],
                         [t[1] for t in fake_rtslib.snapshot()['targets']])

    def test_unexpected_error_is_reported_as_backend_error(self):
        fake_rtslib.STATE.fail_on['target'] = RuntimeError('surprise')
        report = host.create_many(self.record, ALLOWED, self.specs())
        [failure] = report['failed']
        self.assertEqual('BackendError', failure['error']['error'])
        self.assertIn('surprise', failure['error']['message'])
        self.assertEqual(1, len(report['created']))

    def test_invalid_batch_changes_nothing(self):
        specs = self.specs() + [{'device_path': DEVICE}]
        self.assertRaises(exception.Invalid, host.create_many, self.record,
                          ALLOWED, specs)
        self.assertEqual({'storage': [], 'targets': []},
                         fake_rtslib.snapshot())
        self.assertEqual({}, self.record.load())

    def test_delete_many_reports_deleted_absent_and_held(self):
        host.create_many(self.record, ALLOWED, self.specs())
        fake_rtslib.STATE.held.add(self.OTHER_WWN)
        report = host.delete_many(
            self.record, [WWN, 'naa.5001405000000005', self.OTHER_WWN])
        self.assertEqual([WWN], report['deleted'])
        self.assertEqual(['naa.5001405000000005'], report['absent'])
        [failure] = report['failed']
        self.assertEqual(self.OTHER_WWN, failure['item'])
        self.assertEqual('EndpointInUse', failure['error']['error'])
        self.assertEqual([self.OTHER_WWN], list(self.record.load()))
        self.assertEqual('present', self.status(self.OTHER_WWN))

    def test_delete_many_claims_every_endpoint_with_one_device(self):
        host.create_many(self.record, ALLOWED, self.specs())
        host.delete_many(self.record, [WWN, self.OTHER_WWN])
        self.assertEqual([WWN, self.OTHER_WWN], self.claims)
        self.assertEqual(1, len(self.claimers))

    def test_invalid_wwn_batch_deletes_nothing(self):
        host.create_many(self.record, ALLOWED, self.specs())
        before = fake_rtslib.snapshot()
        self.assertRaises(exception.InvalidWWN, host.delete_many,
                          self.record, [WWN, 'naa.1'])
        self.assertEqual(before, fake_rtslib.snapshot())
