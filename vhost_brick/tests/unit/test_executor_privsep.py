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

"""VhostExecutor in privsep mode, with privsep's client mode off.

The entry points then run in this process, as the daemon would run them,
down to :mod:`vhost_brick.privileged.operations`, which is mocked.
"""

import errno
import sys
import threading
from unittest import mock

import fixtures
from oslo_privsep import comm
from oslo_privsep import daemon

from vhost_brick import exception
from vhost_brick import executor
from vhost_brick import privileged
from vhost_brick.privileged import entrypoints
from vhost_brick.privileged import operations
from vhost_brick.tests import base
from vhost_brick.tests.unit import test_executor


ENDPOINT = test_executor.ENDPOINT
WWN = test_executor.WWN
DEVICE = test_executor.DEVICE
ROOT_HELPER = test_executor.ROOT_HELPER


class PrivsepTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(base.PrivsepInProcess())
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.entrypoints.operations',
            mock.create_autospec(operations)))
        self.operations = entrypoints.operations
        self.execute = self.useFixture(fixtures.MockPatch(
            'oslo_concurrency.processutils.execute')).mock
        self.useFixture(fixtures.MockPatch(
            'vhost_brick.executor.processutils.execute', self.execute))
        self.executor = executor.VhostExecutor(ROOT_HELPER)


class ModeTestCase(PrivsepTestCase):

    def test_privsep_is_the_default_mode(self):
        self.operations.list_endpoints.return_value = [ENDPOINT]
        self.assertEqual([WWN], [ep.wwn for ep in
                                 self.executor.list_endpoints()])
        self.execute.assert_not_called()

    def test_helper_mode_runs_the_helper_command(self):
        self.conf.config(privileged_mode='helper', group='vhost_brick')
        self.execute.return_value = ('[]', '')
        self.assertEqual([], self.executor.list_endpoints())
        self.operations.list_endpoints.assert_not_called()
        self.assertEqual(('vhost-brick-helper', 'list'),
                         self.execute.call_args.args)

    def test_an_explicit_execute_means_the_helper(self):
        fake = test_executor.FakeExecute()
        fake.reply('[]')
        executor.VhostExecutor(ROOT_HELPER, execute=fake).list_endpoints()
        self.assertEqual([('vhost-brick-helper', 'list')], fake.commands)
        self.operations.list_endpoints.assert_not_called()


class CallTestCase(PrivsepTestCase):

    def test_create_passes_the_validated_arguments(self):
        self.operations.create.return_value = ENDPOINT
        with mock.patch('vhost_brick.validation.validate_device_path',
                        side_effect=lambda path: path):
            ep = self.executor.create_endpoint(DEVICE, wwn=WWN.upper())
        self.assertEqual(WWN, ep.wwn)
        self.operations.create.assert_called_once_with(
            DEVICE, wwn=WWN, nexus=None, serial=None, read_only=False,
            discard=None)

    def test_batches_pass_their_list(self):
        self.operations.delete_many.return_value = {
            'deleted': [WWN], 'absent': [], 'failed': []}
        report = self.executor.delete_endpoints([WWN])
        self.assertEqual((WWN,), report.deleted)
        self.operations.delete_many.assert_called_once_with([WWN])

    def test_each_operation_reaches_its_entry_point(self):
        self.operations.restore.return_value = {
            'restored': [], 'already_present': [], 'failed': []}
        self.operations.cleanup.return_value = {'endpoints': [],
                                                'backstores': []}
        self.operations.verify.return_value = {'vhost_scsi': True}
        self.operations.show.return_value = ENDPOINT
        self.operations.delete.return_value = {'deleted': True}
        self.operations.stats.return_value = {'wwn': WWN, 'luns': []}
        self.operations.list_stats.return_value = []
        self.executor.restore()
        self.executor.cleanup()
        self.executor.verify()
        self.executor.get_endpoint(WWN)
        self.executor.delete_endpoint(WWN)
        self.executor.get_endpoint_stats(WWN)
        self.executor.list_endpoint_stats()
        for name in ('restore', 'cleanup', 'verify', 'list_stats'):
            getattr(self.operations, name).assert_called_once_with()
        self.operations.show.assert_called_once_with(WWN)
        self.operations.stats.assert_called_once_with(WWN)
        self.operations.delete.assert_called_once_with(WWN)

    def test_answers_are_the_helpers_plain_data_not_msgpack_tuples(self):
        with mock.patch.object(
                entrypoints, 'cleanup',
                return_value={'result': {'endpoints': (),
                                         'backstores': ('x',)}}):
            self.assertEqual({'endpoints': [], 'backstores': ['x']},
                             self.executor.cleanup())

    def test_a_typed_error_keeps_its_class_and_fields(self):
        self.operations.show.side_effect = exception.EndpointNotFound(wwn=WWN)
        err = self.assertRaises(exception.EndpointNotFound,
                                self.executor.get_endpoint, WWN)
        self.assertEqual({'wwn': WWN}, err.kwargs)

    def test_an_unexpected_daemon_error_is_a_backend_error(self):
        self.operations.list_endpoints.side_effect = KeyError('boom')
        err = self.assertRaises(exception.BackendError,
                                self.executor.list_endpoints)
        self.assertIn('boom', err.kwargs['reason'])

    def test_a_daemon_not_running_as_root_refuses(self):
        with mock.patch('os.geteuid', return_value=1000):
            self.assertRaises(exception.PermissionDenied,
                              self.executor.list_endpoints)
        self.operations.list_endpoints.assert_not_called()

    def test_a_daemon_that_cannot_start_is_privsep_failed(self):
        with mock.patch.object(
                entrypoints, 'list_endpoints',
                side_effect=daemon.FailedToDropPrivileges('exit 99')):
            err = self.assertRaises(exception.PrivsepFailed,
                                    self.executor.list_endpoints)
        self.assertEqual({'call': 'list', 'reason': 'exit 99'}, err.kwargs)

    def test_a_daemon_that_died_is_privsep_failed(self):
        with mock.patch.object(
                entrypoints, 'show',
                side_effect=OSError('Premature eof waiting for privileged '
                                    'process')):
            self.assertRaises(exception.PrivsepFailed,
                              self.executor.get_endpoint, WWN)


class DaemonCommandTestCase(base.TestCase):
    """How the daemon starts, for root and not, with and without helpers."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatchObject(
            privileged.default, 'root_helper', None))
        self.context = privileged.default
        self.geteuid = self.useFixture(fixtures.MockPatch(
            'os.geteuid', return_value=1000)).mock

    def command(self, root_helper):
        ex = executor.VhostExecutor(root_helper)
        self.context.root_helper = ex._daemon_prefix()
        return self.context.helper_command('/tmp/tmpx/privsep.sock')

    def assertOwnDaemon(self, command):
        self.assertEqual(
            [sys.executable, '-I', '-m', 'vhost_brick.privileged.daemon',
             '--privsep_context', 'vhost_brick.privileged.default',
             '--privsep_sock_path', '/tmp/tmpx/privsep.sock'], command)

    def test_a_user_starts_the_daemon_through_the_root_helper(self):
        self.assertEqual(
            ['sudo', 'vhost-brick-rootwrap', '/etc/vhost-brick/rootwrap.conf',
             'privsep-helper', '--privsep_context',
             'vhost_brick.privileged.default', '--privsep_sock_path',
             '/tmp/tmpx/privsep.sock'], self.command(ROOT_HELPER))

    def test_a_user_without_a_root_helper_gets_privseps_own_prefix(self):
        self.assertEqual(['sudo', 'privsep-helper'],
                         self.command(None)[:2])

    def test_root_without_a_root_helper_runs_the_daemon_module(self):
        self.geteuid.return_value = 0
        self.assertOwnDaemon(self.command(None))

    def test_root_with_sudo_as_root_helper_runs_the_daemon_module(self):
        self.geteuid.return_value = 0
        self.assertOwnDaemon(self.command('sudo'))

    def test_root_with_a_rootwrap_root_helper_runs_the_daemon_module(self):
        self.geteuid.return_value = 0
        self.assertOwnDaemon(self.command(
            'sudo cinder-rootwrap /etc/cinder/rootwrap.conf'))

    def test_a_configured_helper_command_wins_for_a_user(self):
        self.conf.config(helper_command='/opt/start-daemon',
                         group=privileged.CFG_SECTION)
        self.assertEqual(['/opt/start-daemon', '--privsep_context'],
                         self.command(ROOT_HELPER)[:2])

    def test_a_configured_helper_command_wins_for_root(self):
        self.geteuid.return_value = 0
        self.conf.config(helper_command='/opt/start-daemon',
                         group=privileged.CFG_SECTION)
        self.assertEqual(['/opt/start-daemon', '--privsep_context'],
                         self.command('sudo')[:2])

    def test_a_configured_helper_command_wins_for_root_without_helper(self):
        self.geteuid.return_value = 0
        self.conf.config(helper_command='/opt/start-daemon',
                         group=privileged.CFG_SECTION)
        self.assertEqual(['/opt/start-daemon', '--privsep_context'],
                         self.command(None)[:2])


def reset_connection():
    """A privsep reader whose socket the daemon reset."""
    raise ConnectionResetError(errno.ECONNRESET, 'Connection reset by peer')
    yield  # a generator, as oslo.privsep's Deserializer is an iterator


class ResetChannelTestCase(base.TestCase):
    """A daemon that dies with data unread resets the connection."""

    def setUp(self):
        super().setUp()
        channel_class = type(privileged.default).channel_class
        # The reader thread's code, without a daemon or a thread.
        self.channel = channel_class.__new__(channel_class)
        self.channel.lock = threading.Lock()
        self.waiting = comm.Future(self.channel.lock)
        self.channel.outstanding_msgs = {'call-1': self.waiting}

    def test_a_reset_fails_the_waiting_call(self):
        self.channel._reader_main(reset_connection())
        self.assertIsInstance(self.waiting.error, ConnectionResetError)

    def test_a_reset_ends_the_channel_so_the_next_call_starts_a_daemon(self):
        self.channel._reader_main(reset_connection())
        self.assertFalse(self.channel.running)

    def test_the_context_starts_its_daemon_on_that_channel(self):
        with mock.patch.object(type(privileged.default), 'channel_class'
                               ) as channel_class:
            self.addCleanup(setattr, privileged.default, 'channel', None)
            privileged.default.channel = None
            privileged.default.start()
        self.assertIs(channel_class.return_value, privileged.default.channel)
        channel_class.assert_called_once_with(context=privileged.default)
