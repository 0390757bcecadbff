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

"""Base class of the unit tests."""

import subprocess
import sys

import fixtures
from oslo_concurrency import lockutils
from oslo_config import fixture as config_fixture
from oslotest import base

from vhost_brick import privileged
from vhost_brick.privileged import operations


class TestCase(base.BaseTestCase):
    """oslotest TestCase with vhost_brick's options reset per test."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(lockutils.CONF))
        self.lock_path = self.useFixture(fixtures.TempDir()).path
        self.conf.config(lock_path=self.lock_path, group='oslo_concurrency')


class HostLockHolder(fixtures.Fixture):
    """Another process that holds the host lock until released or cleanup.

    The lock file is made first, as any privileged call makes it.
    """

    def _setUp(self):
        with operations._host_lock(5):
            pass
        self.process = subprocess.Popen(
            [sys.executable, '-c',
             'import fcntl, os, sys\n'
             'fd = os.open(sys.argv[1], os.O_RDONLY)\n'
             'fcntl.flock(fd, fcntl.LOCK_EX)\n'
             'print("held", flush=True)\n'
             'sys.stdin.read()\n', operations.LOCK_FILE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(self.process.wait)
        self.addCleanup(self.release)
        if self.process.stdout.readline().strip() != 'held':
            raise AssertionError('the lock holder did not start')

    @property
    def pid(self):
        return self.process.pid

    def release(self):
        """Let the holder exit, dropping the lock."""
        if not self.process.stdin.closed:
            self.process.stdin.close()


class PrivsepInProcess(fixtures.Fixture):
    """vhost_brick's privsep entry points run in this process, as root.

    privsep's client mode off: a call runs the entry point here, as the
    daemon would, and the daemon's uid check sees root.
    """

    def _setUp(self):
        privileged.default.set_client_mode(False)
        self.addCleanup(privileged.default.set_client_mode, True)
        self.useFixture(fixtures.MockPatch('os.geteuid', return_value=0))
