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

import fixtures
from oslo_concurrency import lockutils
from oslo_config import fixture as config_fixture
from oslotest import base

from vhost_brick import privileged


class TestCase(base.BaseTestCase):
    """oslotest TestCase with vhost_brick's options reset per test."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(lockutils.CONF))
        self.lock_path = self.useFixture(fixtures.TempDir()).path
        self.conf.config(lock_path=self.lock_path, group='oslo_concurrency')


class PrivsepInProcess(fixtures.Fixture):
    """vhost_brick's privsep entry points run in this process, as root.

    privsep's client mode off: a call runs the entry point here, as the
    daemon would, and the daemon's uid check sees root.
    """

    def _setUp(self):
        privileged.default.set_client_mode(False)
        self.addCleanup(privileged.default.set_client_mode, True)
        self.useFixture(fixtures.MockPatch('os.geteuid', return_value=0))
