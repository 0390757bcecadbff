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

import sys
from unittest import mock

from oslo_privsep import daemon as oslo_daemon

from vhost_brick.privileged import daemon
from vhost_brick.tests import base


class DaemonTestCase(base.TestCase):

    def run_main(self, argv=None):
        """daemon.main; sys.argv and sys.modules as privsep's main saw them."""
        seen = {}

        def helper_main():
            seen['argv'] = list(sys.argv)
            seen['eventlet'] = sys.modules.get('eventlet', 'absent')

        with mock.patch.object(oslo_daemon, 'helper_main', helper_main), \
                mock.patch.dict(sys.modules), \
                mock.patch.object(sys, 'argv', ['python']):
            daemon.main(argv)
        return seen

    def test_main_runs_privseps_helper_main_on_the_given_argv(self):
        argv = ['privsep-helper', '--privsep_context', 'x.default']
        self.assertEqual(argv, self.run_main(argv)['argv'])

    def test_main_without_argv_keeps_sys_argv(self):
        self.assertEqual(['python'], self.run_main()['argv'])

    def test_main_blocks_eventlet(self):
        self.assertIsNone(self.run_main([])['eventlet'])
