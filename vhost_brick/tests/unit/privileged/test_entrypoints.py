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

"""The privsep entry points, run in this process (client mode off)."""

from unittest import mock

import fixtures

from vhost_brick import privileged
from vhost_brick.privileged import entrypoints
from vhost_brick.privileged import host
from vhost_brick.privileged import operations
from vhost_brick.tests import base
from vhost_brick.tests.unit.privileged import test_helper


WWN = 'naa.5001405000000001'
ENTRY_POINTS = ('create', 'create_many', 'delete', 'delete_many', 'show',
                'list_endpoints', 'restore', 'cleanup', 'verify')


class EntrypointTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(base.PrivsepInProcess())
        tmp = self.useFixture(fixtures.TempDir()).path
        self.lock_file = tmp + '/lock'
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.operations.LOCK_FILE', self.lock_file))
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.rootconf.CONFIG_FILE',
            tmp + '/absent.conf'))
        self.lio = self.useFixture(fixtures.MockPatchObject(
            operations, 'lio', autospec=True)).mock
        self.host = self.useFixture(fixtures.MockPatchObject(
            operations, 'host', autospec=True)).mock

    def lock_held(self):
        return test_helper.lock_held(self.lock_file)

    def test_every_operation_is_an_entry_point_of_the_context(self):
        for name in ENTRY_POINTS:
            self.assertTrue(privileged.default.is_entrypoint(
                getattr(entrypoints, name)), name)

    def test_the_context_keeps_no_capability(self):
        self.assertEqual([], privileged.default.conf.capabilities)

    def test_a_result_is_answered_as_plain_data(self):
        self.lio.list_endpoints.return_value = []
        self.assertEqual({'result': []}, entrypoints.list_endpoints())

    def test_changes_hold_the_helpers_host_lock(self):
        self.host.create.side_effect = lambda *a, **k: self.lock_held()
        self.assertEqual({'result': True},
                         entrypoints.create('/dev/loop0'))

    def test_reads_hold_the_host_lock_shared(self):
        self.lio.show.side_effect = lambda wwn: self.lock_held()
        self.assertEqual({'result': True}, entrypoints.show(WWN))

    def test_a_typed_error_is_answered_as_a_report(self):
        answer = self._real_host_call('create', 42)
        self.assertEqual('InvalidDevice', answer['error']['error'])
        self.assertEqual({'device': 42, 'reason': 'must be a string'},
                         answer['error']['kwargs'])

    def test_a_batch_that_is_not_a_list_is_refused(self):
        answer = self._real_host_call('create_many', {'device_path': 'x'})
        self.assertEqual('Invalid', answer['error']['error'])

    def test_an_unexpected_error_is_a_backend_error_report(self):
        self.lio.list_endpoints.side_effect = RuntimeError('boom')
        answer = entrypoints.list_endpoints()
        self.assertEqual({'reason': 'boom'}, answer['error']['kwargs'])
        self.assertEqual('BackendError', answer['error']['error'])

    def test_a_call_of_another_shape_is_invalid_argument(self):
        for args, kwargs in (((), {}), ((WWN, WWN), {}),
                             ((WWN,), {'state_path': '/tmp'})):
            answer = entrypoints.show(*args, **kwargs)
            self.assertEqual('InvalidArgument', answer['error']['error'],
                             (args, kwargs))
        self.lio.show.assert_not_called()

    def test_a_daemon_that_is_not_root_refuses_before_anything(self):
        with mock.patch('os.geteuid', return_value=1000):
            answer = entrypoints.list_endpoints()
        self.assertEqual('PermissionDenied', answer['error']['error'])
        self.lio.list_endpoints.assert_not_called()

    def _real_host_call(self, name, *args):
        """The entry point with the real host module, lio still mocked."""
        with mock.patch.object(operations, 'host', host):
            answer = getattr(entrypoints, name)(*args)
        self.lio.create.assert_not_called()
        return answer
