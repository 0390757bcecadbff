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

import fcntl
import io
import json
import os
from unittest import mock

import fixtures

from vhost_brick import exception
from vhost_brick.privileged import helper
from vhost_brick.privileged import operations
from vhost_brick.privileged import rootconf
from vhost_brick.privileged import state
from vhost_brick.tests import base


WWN = 'naa.5001405000000001'
ENDPOINT = {'wwn': WWN, 'tpgt': 1, 'nexus': 'naa.5001405000000002',
            'luns': [{'lun': 0, 'device_path': '/dev/loop0',
                      'backstore': 'vhost-brick-5001405000000001'}]}


def lock_held(lock_file):
    """Whether someone holds the host lock exclusively."""
    with open(lock_file) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


class HelperTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.stdout = self.useFixture(
            fixtures.MonkeyPatch('sys.stdout', io.StringIO())).new_value
        self.stderr = self.useFixture(
            fixtures.MonkeyPatch('sys.stderr', io.StringIO())).new_value
        self.geteuid = self.useFixture(fixtures.MockPatch(
            'os.geteuid', return_value=0)).mock
        tmp = self.useFixture(fixtures.TempDir()).path
        self.lock_file = tmp + '/lock'
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.operations.LOCK_FILE', self.lock_file))
        with open(tmp + '/vhost-brick.conf', 'w') as conf:
            conf.write('[vhost_brick]\nstate_path = %s/state\n' % tmp)
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.rootconf.CONFIG_FILE',
            tmp + '/vhost-brick.conf'))
        self.state_path = tmp + '/state'
        self.lio = self.useFixture(fixtures.MockPatchObject(
            operations, 'lio', autospec=True)).mock
        self.host = self.useFixture(fixtures.MockPatchObject(
            operations, 'host', autospec=True)).mock

    def run_helper(self, *argv):
        return helper.main(list(argv))

    def lock_held(self):
        return lock_held(self.lock_file)

    def error(self):
        return json.loads(self.stderr.getvalue().splitlines()[-1])

    def test_create_prints_the_endpoint_as_json(self):
        self.host.create.return_value = ENDPOINT
        self.assertEqual(0, self.run_helper('create', '--device=/dev/loop0',
                                            '--wwn=' + WWN))
        self.host.create.assert_called_once_with(
            mock.ANY, rootconf.DEFAULT_ALLOWED_DEVICES, '/dev/loop0',
            wwn=WWN, nexus=None, serial=None, read_only=False, discard=None)
        self.assertEqual(ENDPOINT, json.loads(self.stdout.getvalue()))

    def test_create_passes_serial_and_read_only(self):
        self.host.create.return_value = ENDPOINT
        self.assertEqual(0, self.run_helper('create', '--device=/dev/loop0',
                                            '--serial=volume-1',
                                            '--read-only'))
        self.assertEqual({'serial': 'volume-1', 'read_only': True},
                         {key: self.host.create.call_args.kwargs[key]
                          for key in ('serial', 'read_only')})

    def test_create_passes_discard_and_its_negation(self):
        self.host.create.return_value = ENDPOINT
        for option, discard in (('--discard', True), ('--no-discard', False)):
            self.assertEqual(0, self.run_helper(
                'create', '--device=/dev/loop0', option))
            self.assertIs(discard,
                          self.host.create.call_args.kwargs['discard'])

    def test_allowed_devices_come_from_the_root_owned_config(self):
        with open(rootconf.CONFIG_FILE, 'a') as conf:
            conf.write('allowed_devices = /dev/disk/by-id/*, /dev/vg0/*\n')
        self.host.create.return_value = ENDPOINT
        self.run_helper('create', '--device=/dev/loop0')
        self.assertEqual(('/dev/disk/by-id/*', '/dev/vg0/*'),
                         self.host.create.call_args.args[1])

    def test_state_file_comes_from_the_root_owned_config(self):
        self.host.create.return_value = ENDPOINT
        self.run_helper('create', '--device=/dev/loop0')
        record = self.host.create.call_args.args[0]
        self.assertEqual(os.path.join(self.state_path, state.DIR_NAME),
                         record.directory)

    def test_state_path_defaults_without_a_config_file(self):
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.rootconf.CONFIG_FILE',
            '/nonexistent/vhost-brick.conf'))
        self.host.create.return_value = ENDPOINT
        self.run_helper('create', '--device=/dev/loop0')
        record = self.host.create.call_args.args[0]
        self.assertEqual(os.path.join(state.DEFAULT_STATE_PATH,
                                      state.DIR_NAME), record.directory)

    def test_relative_state_path_is_refused(self):
        with open(rootconf.CONFIG_FILE, 'w') as conf:
            conf.write('[vhost_brick]\nstate_path = var/lib\n')
        self.assertEqual(1, self.run_helper('create', '--device=/dev/loop0'))
        self.assertEqual('BackendError', self.error()['error'])
        self.host.create.assert_not_called()

    def test_restore_and_cleanup_hold_the_host_lock_and_print_reports(self):
        self.host.restore.return_value = {'restored': [], 'failed': [],
                                          'already_present': [ENDPOINT]}
        self.host.cleanup.return_value = {'endpoints': [],
                                          'backstores': ['vhost-brick-1']}
        self.assertEqual(0, self.run_helper('restore'))
        self.assertEqual(0, self.run_helper('cleanup'))
        self.assertEqual(
            [self.host.restore.return_value, self.host.cleanup.return_value],
            [json.loads(line) for line in
             self.stdout.getvalue().splitlines()])

    def test_create_and_delete_hold_the_host_lock(self):
        seen = []

        def locked(*args, **kwargs):
            seen.append(self.lock_held())
            return ENDPOINT
        self.host.create.side_effect = locked
        self.host.delete.side_effect = locked
        self.run_helper('create', '--device=/dev/loop0')
        self.run_helper('delete', '--wwn=' + WWN)
        self.assertEqual([True, True], seen)

    def test_reads_hold_the_host_lock_shared(self):
        seen = []

        def probe(*args):
            with open(self.lock_file) as lock:
                for mode in (fcntl.LOCK_SH, fcntl.LOCK_EX):
                    try:
                        fcntl.flock(lock, mode | fcntl.LOCK_NB)
                        fcntl.flock(lock, fcntl.LOCK_UN)
                        seen.append(True)
                    except BlockingIOError:
                        seen.append(False)
            return []
        self.lio.list_endpoints.side_effect = probe
        self.lio.show.side_effect = probe
        self.run_helper('list')
        self.run_helper('show', '--wwn=' + WWN)
        self.assertEqual([True, False, True, False], seen)

    def test_delete_reports_whether_something_was_deleted(self):
        self.host.delete.return_value = False
        self.assertEqual(0, self.run_helper('delete', '--wwn=' + WWN))
        self.assertEqual({'deleted': False},
                         json.loads(self.stdout.getvalue()))

    def feed_stdin(self, text):
        self.useFixture(fixtures.MonkeyPatch('sys.stdin', io.StringIO(text)))

    def test_create_many_passes_the_stdin_list_under_the_lock(self):
        specs = [{'device_path': '/dev/loop0', 'wwn': WWN}]
        report = {'created': [ENDPOINT], 'failed': []}
        self.host.create_many.side_effect = lambda record, allowed, given: (
            self.assertTrue(self.lock_held()) or report)
        self.feed_stdin(json.dumps(specs))
        self.assertEqual(0, self.run_helper('create-many'))
        self.host.create_many.assert_called_once_with(
            mock.ANY, rootconf.DEFAULT_ALLOWED_DEVICES, specs)
        self.assertEqual(report, json.loads(self.stdout.getvalue()))

    def test_delete_many_passes_the_stdin_list_under_the_lock(self):
        report = {'deleted': [WWN], 'absent': [], 'failed': []}
        self.host.delete_many.side_effect = lambda record, given: (
            self.assertTrue(self.lock_held()) or report)
        self.feed_stdin(json.dumps([WWN]))
        self.assertEqual(0, self.run_helper('delete-many'))
        self.host.delete_many.assert_called_once_with(mock.ANY, [WWN])
        self.assertEqual(report, json.loads(self.stdout.getvalue()))

    def test_batch_input_that_is_not_json_is_invalid_argument(self):
        self.feed_stdin('[{"device_path": ')
        self.assertEqual(14, self.run_helper('create-many'))
        self.assertIn('not JSON', self.error()['message'])
        self.assertEqual([], self.host.method_calls)

    def test_oversized_batch_input_is_refused_unread(self):
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.helper.MAX_INPUT_BYTES', 16))
        self.feed_stdin(json.dumps(['naa.5001405000000001'] * 2))
        self.assertEqual(14, self.run_helper('delete-many'))
        self.assertIn('exceeds 16 bytes', self.error()['message'])
        self.assertEqual([], self.host.method_calls)

    def test_show_and_list(self):
        self.lio.show.return_value = ENDPOINT
        self.lio.list_endpoints.return_value = [ENDPOINT]
        self.assertEqual(0, self.run_helper('show', '--wwn', WWN))
        self.assertEqual(0, self.run_helper('list'))
        self.lio.show.assert_called_once_with(WWN)
        self.assertEqual([ENDPOINT, [ENDPOINT]],
                         [json.loads(line) for line in
                          self.stdout.getvalue().splitlines()])

    def test_typed_error_is_reported_as_json_with_its_exit_code(self):
        self.lio.show.side_effect = exception.EndpointNotFound(wwn=WWN)
        self.assertEqual(20, self.run_helper('show', '--wwn=' + WWN))
        self.assertEqual({'error': 'EndpointNotFound',
                          'message': 'No vhost endpoint with WWN %s.' % WWN,
                          'kwargs': {'wwn': WWN}}, self.error())
        self.assertEqual('', self.stdout.getvalue())

    def test_unexpected_error_exits_1_with_a_json_report(self):
        self.lio.list_endpoints.side_effect = RuntimeError('surprise')
        self.assertEqual(1, self.run_helper('list'))
        self.assertEqual('BackendError', self.error()['error'])
        self.assertIn('surprise', self.error()['message'])

    def test_usage_errors_are_invalid_argument(self):
        for argv in ([], ['frobnicate'], ['create'], ['delete'],
                     ['create', '--device=/dev/x', '--bogus'],
                     ['show', '--wwn']):
            self.stderr.seek(0)
            self.stderr.truncate()
            self.assertEqual(14, self.run_helper(*argv), argv)
            self.assertEqual('InvalidArgument', self.error()['error'])
        self.assertEqual([], self.lio.method_calls + self.host.method_calls)

    def test_non_root_caller_is_refused(self):
        self.geteuid.return_value = 1000
        self.assertEqual(31, self.run_helper('list'))
        self.assertEqual('PermissionDenied', self.error()['error'])
        self.assertEqual([], self.lio.method_calls + self.host.method_calls)

    VERSIONS = {'kernel_release': '6.12.107+deb12-amd64',
                'rtslib_fb_version': '2.1.75'}

    def test_verify_reports_kernel_support_and_versions(self):
        report = dict.fromkeys(('configfs', 'vhost_scsi'), True)
        self.lio.kernel_support.return_value = report
        self.lio.versions.return_value = self.VERSIONS
        self.assertEqual(0, self.run_helper('verify'))
        self.assertEqual(dict(report, **self.VERSIONS),
                         json.loads(self.stdout.getvalue()))

    def test_verify_names_what_is_missing_and_the_versions(self):
        self.lio.kernel_support.return_value = {'configfs': True,
                                                'vhost_scsi': False}
        self.lio.versions.return_value = self.VERSIONS
        self.assertEqual(30, self.run_helper('verify'))
        self.assertIn('missing: vhost_scsi (kernel 6.12.107+deb12-amd64, '
                      'rtslib-fb 2.1.75)', self.error()['message'])
