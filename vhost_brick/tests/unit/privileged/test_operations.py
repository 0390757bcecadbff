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

"""The host lock both root entry paths take."""

import os
import stat

import fixtures

from vhost_brick.privileged import operations
from vhost_brick.tests import base


class HostLockTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.lock_dir = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'run', 'vhost-brick')
        self.lock_file = os.path.join(self.lock_dir, 'endpoints.lock')
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.operations.LOCK_FILE', self.lock_file))

    def test_lock_file_and_its_directory_are_private(self):
        with operations._host_lock():
            self.assertEqual(0o700,
                             stat.S_IMODE(os.stat(self.lock_dir).st_mode))
            self.assertEqual(0o600,
                             stat.S_IMODE(os.stat(self.lock_file).st_mode))

    def test_a_symlink_in_place_of_the_lock_is_not_followed(self):
        os.makedirs(self.lock_dir)
        target = os.path.join(os.path.dirname(self.lock_dir), 'target')
        os.symlink(target, self.lock_file)
        with self.assertRaises(OSError):
            with operations._host_lock():
                pass
        self.assertFalse(os.path.exists(target))
