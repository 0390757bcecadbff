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
from oslo_concurrency import processutils

from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick import executor
from vhost_brick.tests import base
from vhost_brick import validation


WWN = 'naa.5001405000000001'
NEXUS = 'naa.5001405000000002'
DEVICE = '/dev/disk/by-id/wwn-0x1'
ROOT_HELPER = 'sudo vhost-brick-rootwrap /etc/vhost-brick/rootwrap.conf'
ENDPOINT = {'wwn': WWN, 'tpgt': 1, 'nexus': NEXUS,
            'luns': [{'lun': 0, 'device_path': DEVICE,
                      'backstore': 'vhost-brick-5001405000000001',
                      'serial': 'volume-1', 'read_only': False,
                      'discard': True}]}


class FakeExecute:
    """Records every command and answers like the helper would."""

    def __init__(self):
        self.calls = []
        self.replies = []

    def reply(self, stdout='', exit_code=0, stderr=''):
        self.replies.append((stdout, exit_code, stderr))

    def __call__(self, *cmd, **kwargs):
        self.calls.append((cmd, kwargs))
        stdout, exit_code, stderr = self.replies.pop(0)
        if exit_code:
            raise processutils.ProcessExecutionError(
                stdout=stdout, stderr=stderr, exit_code=exit_code,
                cmd=' '.join(cmd))
        return stdout, stderr

    @property
    def commands(self):
        return [cmd for cmd, _kwargs in self.calls]


def error_report(cls, **kwargs):
    return json.dumps({'error': cls.__name__, 'message': 'x',
                       'kwargs': kwargs})


class ExecutorShapeTestCase(base.TestCase):

    def test_default_execute_is_processutils(self):
        ex = executor.VhostExecutor(ROOT_HELPER)
        self.assertIs(processutils.execute, ex._execute)

    def test_set_execute_and_root_helper(self):
        fake = FakeExecute()
        ex = executor.VhostExecutor('sudo')
        ex.set_execute(fake)
        ex.set_root_helper(ROOT_HELPER)
        fake.reply('[]')
        ex.list_endpoints()
        self.assertEqual({'run_as_root': True, 'root_helper': ROOT_HELPER},
                         fake.calls[0][1])


class ExecutorTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.execute = FakeExecute()
        self.executor = executor.VhostExecutor(ROOT_HELPER,
                                               execute=self.execute)
        self.validate_device = self.useFixture(
            fixtures.MockPatchObject(
                validation, 'validate_device_path',
                side_effect=lambda path: path)).mock

    def test_create_runs_the_helper_as_root(self):
        self.execute.reply(json.dumps(ENDPOINT))
        result = self.executor.create_endpoint(DEVICE, wwn=WWN,
                                               nexus=NEXUS)
        self.assertEqual(
            [(('vhost-brick-helper', 'create', '--device=' + DEVICE,
               '--wwn=' + WWN, '--nexus=' + NEXUS),
              {'run_as_root': True, 'root_helper': ROOT_HELPER})],
            self.execute.calls)
        self.assertEqual(endpoint.VhostEndpoint.from_dict(ENDPOINT), result)

    def test_create_without_wwn_lets_the_helper_generate_them(self):
        self.execute.reply(json.dumps(ENDPOINT))
        self.executor.create_endpoint(DEVICE)
        self.assertEqual([('vhost-brick-helper', 'create',
                           '--device=' + DEVICE)], self.execute.commands)

    def test_create_passes_wwn_in_canonical_case(self):
        self.execute.reply(json.dumps(ENDPOINT))
        self.executor.create_endpoint(DEVICE, wwn=WWN.upper(),
                                      nexus=NEXUS.upper())
        self.assertEqual(('--wwn=' + WWN, '--nexus=' + NEXUS),
                         self.execute.commands[0][3:])

    def test_create_passes_discard_as_the_helpers_flag(self):
        self.execute.reply(json.dumps(ENDPOINT))
        self.executor.create_endpoint(DEVICE, discard=True)
        self.assertEqual(('vhost-brick-helper', 'create',
                          '--device=' + DEVICE, '--discard'),
                         self.execute.commands[0])

    def test_create_passes_no_discard_as_the_flags_negation(self):
        self.execute.reply(json.dumps(ENDPOINT))
        self.executor.create_endpoint(DEVICE, discard=False)
        self.assertEqual(('vhost-brick-helper', 'create',
                          '--device=' + DEVICE, '--no-discard'),
                         self.execute.commands[0])

    def test_create_refuses_a_discard_that_is_not_a_bool(self):
        self.assertRaises(exception.Invalid, self.executor.create_endpoint,
                          DEVICE, discard='yes')
        self.assertEqual([], self.execute.calls)

    def test_create_validates_the_device(self):
        self.validate_device.side_effect = exception.InvalidDevice(
            device='/dev/null', reason='not a block device')
        self.assertRaises(exception.InvalidDevice,
                          self.executor.create_endpoint, '/dev/null')
        self.assertEqual([], self.execute.calls)

    def test_create_rejects_bad_wwn_without_running_anything(self):
        self.assertRaises(exception.InvalidWWN,
                          self.executor.create_endpoint, DEVICE,
                          wwn='naa.6001405bd4e8476d')
        self.assertEqual([], self.execute.calls)

    def test_create_rejects_bad_nexus_without_running_anything(self):
        self.assertRaises(exception.InvalidNexus,
                          self.executor.create_endpoint, DEVICE,
                          nexus='iqn.2003-01.org.example:x')
        self.assertEqual([], self.execute.calls)

    def test_device_path_with_leading_dash_stays_one_option(self):
        self.execute.reply(json.dumps(ENDPOINT))
        self.executor.create_endpoint('/-rf')
        self.assertEqual('--device=/-rf', self.execute.commands[0][2])

    def test_get_endpoint(self):
        self.execute.reply(json.dumps(ENDPOINT))
        result = self.executor.get_endpoint(WWN)
        self.assertEqual([('vhost-brick-helper', 'show', '--wwn=' + WWN)],
                         self.execute.commands)
        self.assertEqual(WWN, result.wwn)
        self.assertEqual(DEVICE, result.luns[0].device_path)

    def test_get_unknown_endpoint_raises_not_found(self):
        self.execute.reply(exit_code=20, stderr=error_report(
            exception.EndpointNotFound, wwn=WWN))
        err = self.assertRaises(exception.EndpointNotFound,
                                self.executor.get_endpoint, WWN)
        self.assertEqual({'wwn': WWN}, err.kwargs)

    def test_get_rejects_bad_wwn(self):
        self.assertRaises(exception.InvalidWWN, self.executor.get_endpoint,
                          'naa.1')
        self.assertEqual([], self.execute.calls)

    def test_list_endpoints(self):
        other = dict(ENDPOINT, wwn='naa.5001405000000009', luns=[])
        self.execute.reply(json.dumps([ENDPOINT, other]))
        result = self.executor.list_endpoints()
        self.assertEqual([('vhost-brick-helper', 'list')],
                         self.execute.commands)
        self.assertEqual([WWN, 'naa.5001405000000009'],
                         [ep.wwn for ep in result])

    def test_get_endpoint_stats_runs_the_helpers_stats(self):
        stats = {'wwn': WWN, 'luns': [{'lun': 0, 'commands': 3}]}
        self.execute.reply(json.dumps(stats))
        self.assertEqual(stats, self.executor.get_endpoint_stats(WWN))
        self.assertEqual([('vhost-brick-helper', 'stats', '--wwn=' + WWN)],
                         self.execute.commands)

    def test_get_endpoint_stats_rejects_a_bad_wwn(self):
        self.assertRaises(exception.InvalidWWN,
                          self.executor.get_endpoint_stats, 'naa.1')
        self.assertEqual([], self.execute.calls)

    def test_list_endpoint_stats_runs_the_helpers_list_stats(self):
        self.execute.reply('[]')
        self.assertEqual([], self.executor.list_endpoint_stats())
        self.assertEqual([('vhost-brick-helper', 'list-stats')],
                         self.execute.commands)

    def test_delete_endpoint(self):
        self.execute.reply('{"deleted": true}')
        self.assertIsNone(self.executor.delete_endpoint(WWN))
        self.assertEqual([('vhost-brick-helper', 'delete', '--wwn=' + WWN)],
                         self.execute.commands)

    def test_delete_unknown_endpoint_is_a_logged_no_op(self):
        self.execute.reply('{"deleted": false}')
        with mock.patch.object(executor.LOG, 'info') as info:
            self.executor.delete_endpoint(WWN)
        info.assert_called_once_with('No vhost endpoint %s to delete', WWN)

    def test_delete_in_use_raises_endpoint_in_use(self):
        self.execute.reply(exit_code=23, stderr='a log line\n' + error_report(
            exception.EndpointInUse, wwn=WWN))
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, WWN)

    def test_every_helper_exit_code_maps_to_its_exception(self):
        for cls, kwargs in (
                (exception.InvalidDevice, {'device': 'd', 'reason': 'r'}),
                (exception.InvalidWWN, {'wwn': 'w', 'reason': 'r'}),
                (exception.InvalidNexus, {'wwn': 'w', 'reason': 'r'}),
                (exception.InvalidArgument, {'reason': 'r'}),
                (exception.EndpointExists, {'wwn': WWN, 'reason': 'r'}),
                (exception.DeviceInUse, {'device': 'd', 'reason': 'r'}),
                (exception.KernelSupportMissing, {'reason': 'r'}),
                (exception.PermissionDenied, {'command': 'c'})):
            self.execute.reply(exit_code=cls.helper_exit_code,
                               stderr=error_report(cls, **kwargs))
            err = self.assertRaises(cls, self.executor.list_endpoints)
            self.assertIs(cls, type(err))
            self.assertEqual(kwargs, err.kwargs)

    def test_generic_failure_raises_helper_failed_with_details(self):
        self.execute.reply(exit_code=1, stderr='Traceback: boom')
        err = self.assertRaises(exception.HelperFailed,
                                self.executor.list_endpoints)
        self.assertEqual(('vhost-brick-helper list', 1, 'Traceback: boom'),
                         (err.cmd, err.exit_code, err.stderr))

    def test_known_code_with_garbled_report_raises_helper_failed(self):
        self.execute.reply(exit_code=22, stderr='not json')
        err = self.assertRaises(exception.HelperFailed,
                                self.executor.list_endpoints)
        self.assertEqual(22, err.exit_code)

    def test_unparsable_output_raises_helper_failed(self):
        self.execute.reply('certainly not json')
        self.assertRaises(exception.HelperFailed,
                          self.executor.list_endpoints)

    def test_missing_helper_raises_helper_failed(self):
        self.executor.set_execute(mock.Mock(
            side_effect=FileNotFoundError(2, 'No such file')))
        err = self.assertRaises(exception.HelperFailed,
                                self.executor.list_endpoints)
        self.assertIn('No such file', err.stderr)

    def test_restore_returns_a_report_of_endpoints(self):
        self.execute.reply(json.dumps(
            {'restored': [ENDPOINT], 'already_present': [],
             'failed': [{'item': 'naa.5001405000000009',
                         'error': {'error': 'InvalidDevice',
                                   'message': 'device gone',
                                   'kwargs': {'device': '/dev/sdx',
                                              'reason': 'gone'}}}]}))
        report = self.executor.restore()
        self.assertEqual([('vhost-brick-helper', 'restore')],
                         self.execute.commands)
        self.assertEqual((endpoint.VhostEndpoint.from_dict(ENDPOINT),),
                         report.restored)
        self.assertEqual((), report.already_present)
        [failure] = report.failed
        self.assertEqual('naa.5001405000000009', failure.item)
        self.assertIsInstance(failure.error, exception.InvalidDevice)
        self.assertEqual('device gone', str(failure.error))

    def test_cleanup_returns_what_was_removed(self):
        removed = {'endpoints': [WWN], 'backstores': ['vhost-brick-1']}
        self.execute.reply(json.dumps(removed))
        self.assertEqual(removed, self.executor.cleanup())
        self.assertEqual([('vhost-brick-helper', 'cleanup')],
                         self.execute.commands)

    def test_create_endpoints_sends_the_specs_as_json_on_stdin(self):
        self.execute.reply(json.dumps({'created': [ENDPOINT], 'failed': []}))
        report = self.executor.create_endpoints(
            [{'device_path': DEVICE, 'wwn': WWN.upper()}])
        [(cmd, kwargs)] = self.execute.calls
        self.assertEqual(('vhost-brick-helper', 'create-many'), cmd)
        self.assertEqual([{'device_path': DEVICE, 'wwn': WWN,
                           'nexus': None, 'serial': None,
                           'read_only': False, 'discard': None}],
                         json.loads(kwargs.pop('process_input')))
        self.assertEqual({'run_as_root': True, 'root_helper': ROOT_HELPER},
                         kwargs)
        self.assertEqual((endpoint.VhostEndpoint.from_dict(ENDPOINT),),
                         report.created)
        self.assertEqual((), report.failed)

    def test_create_endpoints_reports_failures_as_typed_errors(self):
        spec = {'device_path': DEVICE, 'wwn': WWN, 'nexus': None}
        self.execute.reply(json.dumps({'created': [], 'failed': [
            {'item': spec, 'error': {
                'error': 'DeviceInUse', 'message': 'busy',
                'kwargs': {'device': DEVICE, 'reason': 'mounted'}}}]}))
        [failure] = self.executor.create_endpoints([spec]).failed
        self.assertEqual(spec, failure.item)
        self.assertIsInstance(failure.error, exception.DeviceInUse)
        self.assertEqual({'device': DEVICE, 'reason': 'mounted'},
                         failure.error.kwargs)

    def test_create_endpoints_refuses_a_bad_batch_without_the_helper(self):
        for specs in ([{'device_path': DEVICE, 'wwn': 'naa.1'}],
                      [{'device_path': DEVICE}, {'device_path': DEVICE}],
                      [{'device': DEVICE}],
                      {'device_path': DEVICE}):
            self.assertRaises(exception.Invalid,
                              self.executor.create_endpoints, specs)
        self.assertEqual([], self.execute.calls)

    def test_empty_batches_do_not_run_the_helper(self):
        self.assertEqual(endpoint.CreateReport(created=(), failed=()),
                         self.executor.create_endpoints([]))
        self.assertEqual(
            endpoint.DeleteReport(deleted=(), absent=(), failed=()),
            self.executor.delete_endpoints(iter([])))
        self.assertEqual([], self.execute.calls)

    def test_delete_endpoints_sends_the_wwns_and_reports_each(self):
        self.execute.reply(json.dumps({
            'deleted': [WWN], 'absent': [NEXUS], 'failed': [
                {'item': 'naa.5001405000000009', 'error': {
                    'error': 'EndpointInUse', 'message': 'held',
                    'kwargs': {'wwn': 'naa.5001405000000009'}}}]}))
        report = self.executor.delete_endpoints(
            [WWN, NEXUS, 'naa.5001405000000009'])
        [(cmd, kwargs)] = self.execute.calls
        self.assertEqual(('vhost-brick-helper', 'delete-many'), cmd)
        self.assertEqual([WWN, NEXUS, 'naa.5001405000000009'],
                         json.loads(kwargs['process_input']))
        self.assertEqual((WWN,), report.deleted)
        self.assertEqual((NEXUS,), report.absent)
        self.assertIsInstance(report.failed[0].error,
                              exception.EndpointInUse)

    def test_delete_endpoints_refuses_a_bad_batch_without_the_helper(self):
        for wwns in ([WWN, 'naa.1'], [WWN, WWN.upper()], WWN, [None]):
            self.assertRaises(exception.Invalid,
                              self.executor.delete_endpoints, wwns)
        self.assertEqual([], self.execute.calls)

    def test_helper_command_is_configurable(self):
        self.conf.config(helper_command='/opt/vb/bin/vhost-brick-helper',
                         group='vhost_brick')
        self.execute.reply('[]')
        self.executor.list_endpoints()
        self.assertEqual('/opt/vb/bin/vhost-brick-helper',
                         self.execute.commands[0][0])


class RootHelperTestCase(base.TestCase):
    """Helper mode: processutils applies the root helper, never for root.

    The helper and the root helpers are real scripts run by processutils;
    a root helper used where it must not be fails the call.
    """

    def setUp(self):
        super().setUp()
        self.bindir = self.useFixture(fixtures.TempDir()).path
        self.conf.config(
            privileged_mode='helper', group='vhost_brick',
            helper_command=self.script('vhost-brick-helper', 'echo "[]"'))
        self.refusing_root_helper = self.script('refuse', 'exit 1')
        self.geteuid = self.useFixture(fixtures.MockPatch(
            'os.geteuid', return_value=1000)).mock

    def script(self, name, body):
        path = os.path.join(self.bindir, name)
        with open(path, 'w') as script:
            script.write('#!/bin/sh\n%s\n' % body)
        os.chmod(path, 0o755)
        return path

    def test_root_runs_the_helper_without_the_root_helper(self):
        self.geteuid.return_value = 0
        ex = executor.VhostExecutor(self.refusing_root_helper)
        self.assertEqual([], ex.list_endpoints())

    def test_a_user_runs_the_helper_through_the_root_helper(self):
        ex = executor.VhostExecutor(self.script('run', 'exec "$@"'))
        self.assertEqual([], ex.list_endpoints())

    def test_a_user_whose_root_helper_refuses_gets_helper_failed(self):
        ex = executor.VhostExecutor(self.refusing_root_helper)
        self.assertRaises(exception.HelperFailed, ex.list_endpoints)

    def test_a_user_without_a_root_helper_is_permission_denied(self):
        ex = executor.VhostExecutor(None)
        err = self.assertRaises(exception.PermissionDenied,
                                ex.list_endpoints)
        self.assertIsInstance(err.__cause__,
                              processutils.NoRootWrapSpecified)


class LockingTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.execute = FakeExecute()
        self.executor = executor.VhostExecutor(None, execute=self.execute)
        self.useFixture(fixtures.MockPatchObject(
            validation, 'validate_device_path', side_effect=lambda p: p))
        self.lock = self.useFixture(fixtures.MockPatchObject(
            executor.lockutils, 'lock')).mock
        self.held = []
        self.lock.return_value.__enter__.side_effect = (
            lambda: self.held.append(True))
        self.lock.return_value.__exit__.side_effect = (
            lambda *exc: self.held.pop() and False)
        self.execute_seen_lock = []
        original = self.execute.__call__

        def recording(*cmd, **kwargs):
            self.execute_seen_lock.append(bool(self.held))
            return original(*cmd, **kwargs)
        self.executor.set_execute(recording)

    def test_create_runs_the_helper_under_the_external_lock(self):
        self.execute.reply(json.dumps(ENDPOINT))
        self.executor.create_endpoint(DEVICE)
        self.lock.assert_called_once_with(
            'endpoints', lock_file_prefix='vhost-brick-', external=True,
            lock_path=self.lock_path)
        self.assertEqual([True], self.execute_seen_lock)

    def test_delete_runs_the_helper_under_the_external_lock(self):
        self.execute.reply('{"deleted": true}')
        self.executor.delete_endpoint(WWN)
        self.assertEqual([True], self.execute_seen_lock)

    def test_batches_run_the_helper_under_the_external_lock(self):
        self.execute.reply('{"created": [], "failed": []}')
        self.execute.reply('{"deleted": [], "absent": [], "failed": []}')
        self.executor.create_endpoints([{'device_path': DEVICE}])
        self.executor.delete_endpoints([WWN])
        self.assertEqual([True, True], self.execute_seen_lock)

    def test_own_lock_path_overrides_oslo_concurrency(self):
        self.conf.config(lock_path='/var/lib/vhost-brick/locks',
                         group='vhost_brick')
        self.execute.reply('{"deleted": true}')
        self.executor.delete_endpoint(WWN)
        self.assertEqual('/var/lib/vhost-brick/locks',
                         self.lock.call_args.kwargs['lock_path'])

    def test_without_any_lock_path_the_lock_is_process_local(self):
        self.conf.config(lock_path=None, group='oslo_concurrency')
        self.execute.reply('{"deleted": true}')
        self.executor.delete_endpoint(WWN)
        self.assertFalse(self.lock.call_args.kwargs['external'])

    def test_restore_and_cleanup_take_the_lock(self):
        self.execute.reply('{"restored": [], "already_present": [], '
                           '"failed": []}')
        self.execute.reply('{"endpoints": [], "backstores": []}')
        self.executor.restore()
        self.executor.cleanup()
        self.assertEqual([True, True], self.execute_seen_lock)

    def test_reads_do_not_take_the_lock(self):
        self.execute.reply('[]')
        self.execute.reply(json.dumps(ENDPOINT))
        self.executor.list_endpoints()
        self.executor.get_endpoint(WWN)
        self.lock.assert_not_called()
