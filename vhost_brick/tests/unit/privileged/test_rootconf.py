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
