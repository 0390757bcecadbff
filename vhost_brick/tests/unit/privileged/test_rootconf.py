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
import time

import fixtures

from vhost_brick import exception
from vhost_brick.privileged import rootconf
from vhost_brick.privileged import state
from vhost_brick.tests import base


class RootConfTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                 'vhost-brick.conf')
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.rootconf.CONFIG_FILE', self.path))
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.rootconf._cached', (None, None)))
        self.parse = self.useFixture(fixtures.MockPatch(
            'vhost_brick.privileged.rootconf._parse',
            wraps=rootconf._parse)).mock

    def settle(self):
        """Move the clock past the file's settling time."""
        now = time.time_ns() + 2 * rootconf._SETTLE_NS
        self.useFixture(fixtures.MockPatch(
            'vhost_brick.privileged.rootconf.time.time_ns',
            return_value=now))

    def configure(self, text):
        with open(self.path, 'w') as conf:
            conf.write('[vhost_brick]\n' + text)

    def test_without_a_file_every_setting_has_its_default(self):
        self.assertEqual(
            rootconf.RootConfig(state.DEFAULT_STATE_PATH,
                                rootconf.DEFAULT_ALLOWED_DEVICES,
                                rootconf.DEFAULT_LOCK_TIMEOUT),
            rootconf.load())

    def test_allowed_devices_is_a_comma_separated_list(self):
        self.configure('allowed_devices = /dev/disk/by-id/*,\n'
                       '    /dev/cinder-volumes/* ,\n')
        self.assertEqual(('/dev/disk/by-id/*', '/dev/cinder-volumes/*'),
                         rootconf.load().allowed_devices)

    def test_an_empty_allowed_devices_allows_nothing(self):
        self.configure('allowed_devices =\n')
        self.assertEqual((), rootconf.load().allowed_devices)

    def test_a_pattern_outside_dev_is_refused(self):
        self.configure('allowed_devices = /dev/disk/by-id/*, /tmp/*\n')
        err = self.assertRaises(exception.BackendError, rootconf.load)
        self.assertIn("'/tmp/*'", str(err))

    def test_lock_timeout_must_be_a_positive_number(self):
        for value in ('soon', '0', '-1'):
            self.configure('lock_timeout = %s\n' % value)
            self.assertRaises(exception.BackendError, rootconf.load)
        self.configure('lock_timeout = 2.5\n')
        self.assertEqual(2.5, rootconf.load().lock_timeout)

    def test_an_unparsable_file_is_a_backend_error(self):
        with open(self.path, 'w') as conf:
            conf.write('state_path = /srv\n')  # no section header
        self.assertRaises(exception.BackendError, rootconf.load)

    def test_a_settled_file_is_parsed_once(self):
        self.configure('lock_timeout = 7\n')
        self.settle()
        self.assertEqual(7, rootconf.load().lock_timeout)
        self.assertEqual(7, rootconf.load().lock_timeout)
        self.assertEqual(1, self.parse.call_count)

    def test_a_file_changed_since_it_was_parsed_is_parsed_again(self):
        self.configure('lock_timeout = 7\n')
        self.settle()
        rootconf.load()
        modified = os.stat(self.path).st_mtime_ns + rootconf._SETTLE_NS
        self.configure('lock_timeout = 8\n')
        # Written a second later, as the settled clock says it is.
        os.utime(self.path, ns=(modified, modified))
        self.assertEqual(8, rootconf.load().lock_timeout)

    def test_a_file_changed_within_a_clock_tick_is_parsed_every_time(self):
        self.configure('lock_timeout = 7\n')
        rootconf.load()
        rootconf.load()
        self.assertEqual(2, self.parse.call_count)

    def test_a_file_created_after_a_load_without_it_counts(self):
        self.settle()
        self.assertEqual(rootconf.DEFAULT_LOCK_TIMEOUT,
                         rootconf.load().lock_timeout)
        self.configure('lock_timeout = 9\n')
        self.assertEqual(9, rootconf.load().lock_timeout)

    def test_an_invalid_file_is_refused_on_every_load(self):
        self.configure('lock_timeout = soon\n')
        self.settle()
        self.assertRaises(exception.BackendError, rootconf.load)
        self.assertRaises(exception.BackendError, rootconf.load)
