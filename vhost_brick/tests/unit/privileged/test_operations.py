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

import fcntl
import os
import stat
import sys
import threading
import time

import fixtures

from vhost_brick import exception
from vhost_brick.privileged import operations
from vhost_brick.tests import base


TIMEOUT = 30


class HostLockTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.lock_dir = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'run', 'vhost-brick')
        self.lock_file = os.path.join(self.lock_dir, 'endpoints.lock')
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.operations.LOCK_FILE', self.lock_file))

    def test_lock_file_and_its_directory_are_private(self):
        with operations._host_lock(TIMEOUT):
            self.assertEqual(0o700,
                             stat.S_IMODE(os.stat(self.lock_dir).st_mode))
            self.assertEqual(0o600,
                             stat.S_IMODE(os.stat(self.lock_file).st_mode))

    def test_a_symlink_in_place_of_the_lock_is_not_followed(self):
        os.makedirs(self.lock_dir)
        target = os.path.join(os.path.dirname(self.lock_dir), 'target')
        os.symlink(target, self.lock_file)
        with self.assertRaises(OSError):
            with operations._host_lock(TIMEOUT):
                pass
        self.assertFalse(os.path.exists(target))

    def test_a_lock_directory_others_can_write_is_refused(self):
        os.makedirs(self.lock_dir, mode=0o777)
        os.chmod(self.lock_dir, 0o777)
        err = self.assertRaises(exception.BackendError,
                                operations._host_lock(TIMEOUT).__enter__)
        self.assertIn('not private to root', str(err))

    def test_a_lock_file_others_can_read_is_refused(self):
        os.makedirs(self.lock_dir, mode=0o700)
        with open(self.lock_file, 'w'):
            pass
        os.chmod(self.lock_file, 0o644)
        err = self.assertRaises(exception.BackendError,
                                operations._host_lock(TIMEOUT).__enter__)
        self.assertIn(self.lock_file, str(err))

    def test_a_held_lock_times_out_with_a_typed_error_naming_the_holder(self):
        holder = self.useFixture(base.HostLockHolder())
        started = time.monotonic()
        err = self.assertRaises(exception.LockTimeout,
                                operations._host_lock(0.2).__enter__)
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.assertIn('pid %d (' % holder.pid, err.kwargs['holder'])
        self.assertIn(sys.executable, err.kwargs['holder'])
        self.assertEqual(self.lock_file, err.kwargs['path'])

    def test_a_lock_released_within_the_timeout_is_taken(self):
        holder = self.useFixture(base.HostLockHolder())
        release = threading.Timer(0.2, holder.release)
        release.start()
        self.addCleanup(release.join)
        probe = os.open(self.lock_file, os.O_RDONLY)
        self.addCleanup(os.close, probe)
        with operations._host_lock(TIMEOUT):
            self.assertEqual(0, holder.process.wait())
            self.assertRaises(BlockingIOError, fcntl.flock, probe,
                              fcntl.LOCK_EX | fcntl.LOCK_NB)

    def test_shared_holders_do_not_wait_for_each_other(self):
        with operations._host_lock(TIMEOUT, shared=True):
            with operations._host_lock(0.01, shared=True):
                pass
