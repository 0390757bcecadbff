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
from vhost_brick import state
from vhost_brick.tests import base


WWN = 'naa.5001405000000001'


class StateFileTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                'state')
        self.record = state.StateFile(self.dir)

    def test_absent_file_is_an_empty_record(self):
        self.assertEqual({}, self.record.load())

    def test_set_then_load(self):
        self.record.set(WWN, state.PRESENT, nexus='naa.5001405000000002')
        self.assertEqual({WWN: {'wwn': WWN, 'status': 'present',
                                'nexus': 'naa.5001405000000002'}},
                         self.record.load())

    def test_file_is_versioned_json_private_to_root(self):
        self.record.set(WWN, state.CREATING)
        with open(self.record.path) as f:
            self.assertEqual(1, json.load(f)['version'])
        self.assertEqual(0o700, os.stat(self.dir).st_mode & 0o777)

    def test_discard(self):
        self.record.set(WWN, state.PRESENT)
        self.record.discard(WWN)
        self.record.discard(WWN)
        self.assertEqual({}, self.record.load())

    def test_save_replaces_atomically_and_syncs(self):
        self.record.set(WWN, state.PRESENT)
        with mock.patch('os.fsync') as fsync, \
                mock.patch('os.rename', wraps=os.rename) as rename:
            self.record.set(WWN, state.DELETING)
        self.assertEqual(2, fsync.call_count)  # the file, then the dir
        temp, final = rename.call_args.args
        self.assertEqual(self.dir, os.path.dirname(temp))
        self.assertEqual(self.record.path, final)

    def test_failed_write_keeps_the_old_file_and_leaves_no_temp(self):
        self.record.set(WWN, state.PRESENT)
        with mock.patch('json.dump', side_effect=OSError(28, 'No space')):
            self.assertRaises(exception.BackendError, self.record.set,
                              WWN, state.DELETING)
        self.assertEqual('present', self.record.load()[WWN]['status'])
        self.assertEqual([state.FILE_NAME], os.listdir(self.dir))

    def test_corrupt_file_is_reported_not_overwritten(self):
        os.makedirs(self.dir)
        with open(self.record.path, 'w') as f:
            f.write('{"version": 1, "endp')
        self.assertRaises(exception.BackendError, self.record.load)
        self.assertRaises(exception.BackendError, self.record.set, WWN,
                          state.PRESENT)

    def test_unknown_format_version_is_refused(self):
        os.makedirs(self.dir)
        with open(self.record.path, 'w') as f:
            json.dump({'version': 99, 'endpoints': {}}, f)
        self.assertRaises(exception.BackendError, self.record.load)
