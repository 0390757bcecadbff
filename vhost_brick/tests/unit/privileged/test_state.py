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

import json
import os
from unittest import mock

import fixtures

from vhost_brick import exception
from vhost_brick.privileged import state
from vhost_brick.tests import base


WWN = 'naa.5001405000000001'
OTHER_WWN = 'naa.5001405000000003'
NEXUS = 'naa.5001405000000002'


class EndpointRecordTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.state_path = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'state')
        self.record = state.EndpointRecord(self.state_path)
        self.dir = os.path.join(self.state_path, state.DIR_NAME)

    def test_absent_directory_is_an_empty_record(self):
        self.assertEqual({}, self.record.load())
        self.assertIsNone(self.record.get(WWN))

    def test_set_then_get_and_load(self):
        self.record.set(WWN, state.PRESENT, nexus=NEXUS)
        entry = {'wwn': WWN, 'status': 'present', 'nexus': NEXUS}
        self.assertEqual(entry, self.record.get(WWN))
        self.assertEqual({WWN: entry}, self.record.load())

    def test_one_versioned_file_per_endpoint_private_to_root(self):
        self.record.set(WWN, state.CREATING)
        self.record.set(OTHER_WWN, state.PRESENT)
        self.assertEqual(sorted([WWN + '.json', OTHER_WWN + '.json']),
                         sorted(os.listdir(self.dir)))
        with open(self.record.path(WWN)) as f:
            self.assertEqual(state.FORMAT_VERSION, json.load(f)['version'])
        self.assertEqual(0o700, os.stat(self.dir).st_mode & 0o777)

    def test_set_writes_only_that_endpoints_file(self):
        self.record.set(OTHER_WWN, state.PRESENT)
        other = os.stat(self.record.path(OTHER_WWN))
        with mock.patch('os.open', wraps=os.open) as opened:
            self.record.set(WWN, state.PRESENT)
        self.assertEqual(os.path.join(self.dir, state.TEMP_PREFIX + WWN),
                         opened.call_args_list[0].args[0])
        after = os.stat(self.record.path(OTHER_WWN))
        self.assertEqual((other.st_ino, other.st_mtime_ns),
                         (after.st_ino, after.st_mtime_ns))

    def test_discard(self):
        self.record.set(WWN, state.PRESENT)
        self.record.set(OTHER_WWN, state.PRESENT)
        self.record.discard(WWN)
        self.record.discard(WWN)
        self.assertEqual([OTHER_WWN], list(self.record.load()))

    def test_set_replaces_atomically_and_syncs(self):
        self.record.set(WWN, state.PRESENT)
        with mock.patch('os.fsync') as fsync, \
                mock.patch('os.rename', wraps=os.rename) as rename:
            self.record.set(WWN, state.DELETING)
        self.assertEqual(2, fsync.call_count)  # the file, then the dir
        temp, final = rename.call_args.args
        self.assertEqual(self.dir, os.path.dirname(temp))
        self.assertEqual(self.record.path(WWN), final)

    def test_discard_syncs_the_directory(self):
        self.record.set(WWN, state.PRESENT)
        with mock.patch('os.fsync') as fsync:
            self.record.discard(WWN)
        fsync.assert_called_once()

    def test_failed_write_keeps_the_old_file_and_leaves_no_temp(self):
        self.record.set(WWN, state.PRESENT)
        # A full disk shows at the latest when the data is synced.
        with mock.patch('os.fsync', side_effect=OSError(28, 'No space')):
            self.assertRaises(exception.BackendError, self.record.set,
                              WWN, state.DELETING)
        self.assertEqual('present', self.record.get(WWN)['status'])
        self.assertEqual([WWN + '.json'], os.listdir(self.dir))

    def write_raw(self, wwn, text, mode=0o600):
        """A state file of this content, in a private directory."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd = os.open(self.record.path(wwn), os.O_WRONLY | os.O_CREAT, mode)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.chmod(self.record.path(wwn), mode)

    def test_corrupt_file_is_reported_not_overwritten(self):
        self.write_raw(WWN, '{"version": 2, "wwn')
        err = self.assertRaises(exception.BackendError, self.record.get, WWN)
        self.assertIn('cannot read', str(err))
        self.assertRaises(exception.BackendError, self.record.load)

    def test_unknown_format_version_is_refused(self):
        self.write_raw(WWN, json.dumps({'version': 99, 'wwn': WWN}))
        err = self.assertRaises(exception.BackendError, self.record.get, WWN)
        self.assertIn('unknown format', str(err))

    def test_format_2_is_still_read(self):
        self.write_raw(WWN, json.dumps({'version': 2, 'wwn': WWN,
                                        'status': 'present'}))
        self.assertEqual({'wwn': WWN, 'status': 'present'},
                         self.record.get(WWN))

    def test_a_directory_others_can_read_is_refused(self):
        self.record.set(WWN, state.PRESENT)
        os.chmod(self.dir, 0o755)
        fresh = state.EndpointRecord(self.state_path)
        for call in (fresh.load, lambda: fresh.get(WWN),
                     lambda: fresh.set(WWN, state.DELETING),
                     lambda: fresh.discard(WWN)):
            err = self.assertRaises(exception.BackendError, call)
            self.assertIn('not private to root', str(err))

    def test_a_symlink_in_place_of_the_directory_is_refused(self):
        elsewhere = self.useFixture(fixtures.TempDir()).path
        os.chmod(elsewhere, 0o700)
        os.makedirs(self.state_path)
        os.symlink(elsewhere, self.dir)
        self.assertRaises(exception.BackendError, self.record.load)
        self.assertRaises(exception.BackendError, self.record.set, WWN,
                          state.PRESENT)
        self.assertEqual([], os.listdir(elsewhere))

    def test_a_state_file_symlink_is_not_followed(self):
        self.record.set(OTHER_WWN, state.PRESENT)
        os.symlink(self.record.path(OTHER_WWN), self.record.path(WWN))
        self.assertRaises(exception.BackendError, self.record.get, WWN)

    def test_a_state_file_others_can_write_is_refused(self):
        self.write_raw(WWN, json.dumps({'version': 3, 'wwn': WWN}),
                       mode=0o666)
        err = self.assertRaises(exception.BackendError, self.record.get, WWN)
        self.assertIn('not private to root', str(err))

    def test_the_first_record_makes_private_directories(self):
        self.record.set(WWN, state.PRESENT)
        self.assertEqual((0o700, 0o700),
                         (os.stat(self.state_path).st_mode & 0o777,
                          os.stat(self.dir).st_mode & 0o777))

    def test_load_ignores_temporaries_and_remove_temporaries_deletes_them(
            self):
        self.record.set(WWN, state.PRESENT)
        temp = os.path.join(self.dir, state.TEMP_PREFIX + WWN)
        with open(temp, 'w') as f:
            f.write('{"trunc')
        self.assertEqual([WWN], list(self.record.load()))
        self.assertEqual([os.path.basename(temp)],
                         self.record.remove_temporaries())
        self.assertEqual([WWN + '.json'], os.listdir(self.dir))


class IdentityIndexTestCase(base.TestCase):

    NAME = 'vhost-brick-5001405000000001'
    DIGITS = '1'.ljust(25, '0')

    def setUp(self):
        super().setUp()
        self.state_path = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'state')
        self.index = state.IdentityIndex(self.state_path)
        self.dir = os.path.join(self.state_path, state.IDENTITY_DIR_NAME)

    def test_absent_directory_has_no_entries(self):
        self.assertEqual([], self.index.entries())

    def test_an_entry_is_an_empty_file_in_a_private_directory(self):
        self.index.update(new=[(self.NAME, self.DIGITS)])
        self.assertEqual([(self.NAME, self.DIGITS)], self.index.entries())
        entry = os.path.join(self.dir, self.NAME + '.' + self.DIGITS)
        self.assertEqual((0, 0o600), (os.stat(entry).st_size,
                                      os.stat(entry).st_mode & 0o777))
        self.assertEqual(0o700, os.stat(self.dir).st_mode & 0o777)

    def test_update_drops_the_stale_then_adds_the_new_with_one_sync(self):
        other = '2'.ljust(25, '0')
        self.index.update(new=[(self.NAME, self.DIGITS)])
        with mock.patch('os.fsync') as fsync:
            self.index.update(new=[(self.NAME, other)],
                              stale=[(self.NAME, self.DIGITS)])
        fsync.assert_called_once()
        self.assertEqual([(self.NAME, other)], self.index.entries())

    def test_an_entry_dropped_again_is_no_error(self):
        self.index.update(stale=[(self.NAME, self.DIGITS)])
        self.assertEqual([], self.index.entries())

    def test_a_directory_others_can_write_is_refused(self):
        self.index.update(new=[(self.NAME, self.DIGITS)])
        os.chmod(self.dir, 0o777)
        fresh = state.IdentityIndex(self.state_path)
        for call in (fresh.entries, fresh.update):
            err = self.assertRaises(exception.BackendError, call)
            self.assertIn('not private to root', str(err))

    def test_an_entry_symlink_is_not_followed(self):
        self.index.update()
        target = os.path.join(self.useFixture(fixtures.TempDir()).path, 'f')
        os.symlink(target, os.path.join(self.dir,
                                        self.NAME + '.' + self.DIGITS))
        self.assertRaises(OSError, self.index.update,
                          new=[(self.NAME, self.DIGITS)])
        self.assertFalse(os.path.lexists(target))
