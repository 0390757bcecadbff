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

"""vhost-brick-rootwrap and the shipped filters, against the commands the
executor really runs."""

import os
import stat
import sys
from unittest import mock

import fixtures
from oslo_privsep import daemon
from oslo_rootwrap import wrapper

from vhost_brick import executor
from vhost_brick.privileged import rootwrap
from vhost_brick.tests import base
from vhost_brick.tests.unit import test_executor


ETC = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'etc',
                   'vhost-brick')
FILTERS = os.path.join(ETC, 'rootwrap.d')
WWN = test_executor.WWN
SOCK = '/tmp/tmpa1b2_c3/privsep.sock'


def privsep_command(*config_files, context='vhost_brick.privileged.default',
                    sock=SOCK):
    command = ['privsep-helper']
    for path in config_files:
        command += ['--config-file', path]
    return command + ['--privsep_context', context, '--privsep_sock_path',
                      sock]


class RootwrapTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.bin = self.useFixture(fixtures.TempDir()).path
        for name in ('privsep-helper', 'vhost-brick-helper'):
            path = os.path.join(self.bin, name)
            with open(path, 'w') as script:
                script.write('#!/bin/sh\n')
            os.chmod(path, stat.S_IRWXU)
        self.conf = os.path.join(self.bin, 'rootwrap.conf')
        with open(self.conf, 'w') as conf:
            conf.write('[DEFAULT]\nfilters_path=%s\nexec_dirs=%s\n'
                       % (FILTERS, self.bin))
        self.oslo_main = self.useFixture(fixtures.MockPatch(
            'oslo_rootwrap.cmd.main')).mock

    def allowed(self, command):
        filters = [item for item in wrapper.load_filters([FILTERS])
                   if item.name != 'privsep-helper']
        try:
            wrapper.match_filter(filters, command, exec_dirs=[self.bin])
        except wrapper.NoFilterMatched:
            return False
        return True

    def run_rootwrap(self, command):
        with mock.patch.object(sys, 'argv', ['vhost-brick-rootwrap',
                                             self.conf] + command):
            try:
                rootwrap.main()
            except SystemExit as exit:
                return exit.code
        return 0

    def executor_commands(self):
        """Every helper command line the executor runs."""
        fake = test_executor.FakeExecute()
        ex = executor.VhostExecutor('sudo', execute=fake)
        device = test_executor.DEVICE
        with mock.patch('vhost_brick.validation.validate_device_path',
                        side_effect=lambda path: path):
            for call, reply in (
                    (lambda: ex.create_endpoint(device),
                     test_executor.ENDPOINT),
                    (lambda: ex.create_endpoint(device, wwn=WWN),
                     test_executor.ENDPOINT),
                    (lambda: ex.create_endpoint(device, nexus=WWN),
                     test_executor.ENDPOINT),
                    (lambda: ex.create_endpoint(device, wwn=WWN, nexus=WWN),
                     test_executor.ENDPOINT),
                    (lambda: ex.create_endpoint(
                        device, wwn=WWN, nexus=WWN, serial='volume-1',
                        read_only=True, discard=True),
                     test_executor.ENDPOINT),
                    (lambda: ex.create_endpoint(device, discard=False),
                     test_executor.ENDPOINT),
                    (lambda: ex.delete_endpoint(WWN), {'deleted': True}),
                    (lambda: ex.get_endpoint(WWN), test_executor.ENDPOINT),
                    (lambda: ex.get_endpoint_stats(WWN),
                     {'wwn': WWN, 'luns': []}),
                    (ex.list_endpoint_stats, []),
                    (ex.list_endpoints, []),
                    (ex.verify, {}),
                    (ex.cleanup, {'endpoints': [], 'backstores': []}),
                    (ex.restore, {'restored': [], 'already_present': [],
                                  'failed': []}),
                    (lambda: ex.create_endpoints([{'device_path': device}]),
                     {'created': [], 'failed': []}),
                    (lambda: ex.delete_endpoints([WWN]),
                     {'deleted': [], 'absent': [], 'failed': []})):
                fake.reply(test_executor.json.dumps(reply))
                call()
        return [list(command) for command in fake.commands]

    def test_the_filters_allow_every_command_the_executor_runs(self):
        commands = self.executor_commands()
        self.assertEqual(16, len(commands))
        for command in commands:
            self.assertTrue(self.allowed(command), command)

    def test_the_filters_allow_the_daemon_of_our_context(self):
        self.assertTrue(self.allowed(privsep_command()))
        self.assertTrue(self.allowed(privsep_command('/etc/nova/nova.conf')))
        self.assertTrue(self.allowed(privsep_command(
            '/etc/nova/nova.conf', '/etc/nova/nova-compute.conf')))

    def test_the_filters_refuse_anything_else(self):
        for command in (
                ['sh', '-c', 'id'],
                ['cat', '/etc/shadow'],
                ['/tmp/x/vhost-brick-helper', 'list'],
                ['vhost-brick-helper', 'list', '--x'],
                ['vhost-brick-helper', 'show', '--wwn=' + WWN + ';id'],
                ['vhost-brick-helper', 'create', '--device=relative'],
                privsep_command(context='os_brick.privileged.default'),
                privsep_command('/tmp/evil.conf'),
                privsep_command('/etc/../tmp/evil.conf'),
                privsep_command(sock='/home/user/privsep.sock')):
            self.assertFalse(self.allowed(command), command)

    def test_rootwrap_refuses_a_privsep_helper_no_filter_allows(self):
        code = self.run_rootwrap(
            privsep_command(context='os_brick.privileged.default'))
        self.assertEqual(99, code)
        self.oslo_main.assert_not_called()

    def test_rootwrap_refuses_a_caller_config_file_for_the_daemon(self):
        self.assertEqual(99, self.run_rootwrap(
            privsep_command('/tmp/evil.conf')))
        self.oslo_main.assert_not_called()

    def test_rootwrap_hands_a_daemon_of_another_interpreter_to_oslo(self):
        self.assertEqual(0, self.run_rootwrap(privsep_command()))
        self.oslo_main.assert_called_once_with()

    def serve_in_process(self, command):
        """Run rootwrap with privsep-helper a script of this interpreter.

        Returns the exit code, and sys.argv and sys.modules['eventlet']
        as privsep's main saw them.
        """
        with open(os.path.join(self.bin, 'privsep-helper'), 'w') as script:
            script.write('#!%s\n' % sys.executable)
        seen = {}

        def helper_main():
            seen['argv'] = list(sys.argv)
            seen['eventlet'] = sys.modules.get('eventlet', 'absent')

        with mock.patch.object(daemon, 'helper_main', helper_main), \
                mock.patch.dict(sys.modules):
            code = self.run_rootwrap(command)
        return code, seen

    def test_rootwrap_runs_a_daemon_of_this_interpreter_in_process(self):
        code, seen = self.serve_in_process(privsep_command('/etc/a.conf'))
        self.assertEqual(0, code)
        self.assertEqual(
            [os.path.join(self.bin, 'privsep-helper')] +
            privsep_command('/etc/a.conf')[1:], seen['argv'])
        self.oslo_main.assert_not_called()

    def test_the_in_process_daemon_imports_no_eventlet(self):
        _code, seen = self.serve_in_process(privsep_command())
        self.assertIsNone(seen['eventlet'])

    def test_rootwrap_refuses_before_running_any_daemon_in_process(self):
        code, seen = self.serve_in_process(
            privsep_command(context='os_brick.privileged.default'))
        self.assertEqual(99, code)
        self.assertEqual({}, seen)
        self.oslo_main.assert_not_called()

    def test_rootwrap_hands_other_commands_to_oslo_unchanged(self):
        self.assertEqual(0, self.run_rootwrap(['cat', '/etc/shadow']))
        self.oslo_main.assert_called_once_with()
