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

"""Hostile input at the Python API and the helper CLI (no kernel)."""

import io
import json
import os
import stat

import fixtures
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from vhost_brick import exception
from vhost_brick import executor
from vhost_brick.privileged import entrypoints
from vhost_brick.privileged import helper
from vhost_brick.privileged import host
from vhost_brick.privileged import lio
from vhost_brick.privileged import operations
from vhost_brick.tests import base
from vhost_brick.tests import hostile
from vhost_brick import validation


DISK = '/dev/loop0'


def accept_loop0(test):
    """Treat /dev/loop0 as a block device with media, whatever the host."""
    real = validation.validate_device_path
    test.useFixture(fixtures.MockPatchObject(
        validation, 'validate_device_path',
        side_effect=lambda path: path if path == '/dev/loop0' else real(
            path)))


def fill(value, tmp, disk):
    if isinstance(value, str):
        return value.replace('{tmp}', tmp).replace('{disk}', disk)
    return value


class HostileApiTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(hostile.ScratchFiles()).path
        self.calls = []
        self.executor = executor.VhostExecutor(
            None, execute=lambda *cmd, **kw: self.calls.append(cmd))
        # Rows that only break the WWN or nexus use this path, which the
        # host running the unit tests may lack: treat it as a block device.
        real = executor.validation.validate_device_path
        self.useFixture(fixtures.MockPatchObject(
            executor.validation, 'validate_device_path',
            side_effect=lambda path: path if path == DISK else real(path)))

    def test_table_has_at_least_30_rows(self):
        self.assertGreaterEqual(len(hostile.BAD_CREATE_INPUTS), 30)

    def test_every_bad_input_gets_its_typed_error_and_runs_nothing(self):
        for description, kwargs, error in hostile.BAD_CREATE_INPUTS:
            kwargs = {name: fill(value, self.tmp, DISK)
                      for name, value in kwargs.items()}
            kwargs.setdefault('device_path', DISK)
            err = self.assertRaises(exception.VhostBrickException,
                                    self.executor.create_endpoint, **kwargs)
            self.assertIsInstance(err, error, description)
        self.assertEqual([], self.calls)

    def test_every_bad_spec_refuses_the_whole_batch(self):
        for description, kwargs, error in hostile.BAD_CREATE_INPUTS:
            spec = {name: fill(value, self.tmp, DISK)
                    for name, value in kwargs.items()}
            spec.setdefault('device_path', DISK)
            err = self.assertRaises(exception.VhostBrickException,
                                    self.executor.create_endpoints,
                                    [{'device_path': DISK}, spec])
            self.assertIsInstance(err, error, description)
        self.assertEqual([], self.calls)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3) |
    st.dictionaries(st.sampled_from(['device_path', 'wwn', 'nexus', 'x']),
                    children, max_size=3),
    max_leaves=8)


class HostileHelperTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch('os.geteuid', return_value=0))
        self.stderr = self.useFixture(
            fixtures.MonkeyPatch('sys.stderr', io.StringIO())).new_value
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', io.StringIO()))
        tmp = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.operations.LOCK_FILE', tmp + '/lock'))
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.rootconf.CONFIG_FILE',
            tmp + '/absent.conf'))
        self.rtslib = self.useFixture(fixtures.MockPatchObject(
            lio, '_rtslib')).mock
        accept_loop0(self)

    def run_helper(self, argv):
        self.stderr.seek(0)
        self.stderr.truncate()
        code = helper.main(argv)
        return code, json.loads(self.stderr.getvalue().splitlines()[-1])

    def test_every_bad_command_line_gets_a_json_error_and_its_code(self):
        for argv, error in hostile.BAD_HELPER_ARGV:
            code, report = self.run_helper(argv)
            self.assertEqual(error.helper_exit_code, code, argv)
            self.assertEqual(error.__name__, report['error'], argv)
        self.rtslib.assert_not_called()

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.text(), max_size=4))
    def test_arbitrary_argv_never_escapes_as_a_traceback(self, argv):
        with fixtures.MockPatchObject(operations, 'host') as host_mock, \
                fixtures.MockPatchObject(operations, 'lio') as lio_mock:
            # Plain data, as the real modules answer: hypothesis also
            # tries the command names it finds in the code.
            for name in ('create', 'create_many', 'delete_many', 'restore',
                         'cleanup'):
                getattr(host_mock.mock, name).return_value = {}
            host_mock.mock.delete.return_value = False
            lio_mock.mock.show.return_value = {}
            lio_mock.mock.list_endpoints.return_value = []
            try:
                code = helper.main(argv)
            except SystemExit as exit:  # --help / -h print usage and exit
                self.assertEqual(0, exit.code)
                return
        if code:
            report = json.loads(self.stderr.getvalue().splitlines()[-1])
            self.assertIn(report['error'], dir(exception))
            self.assertEqual(
                getattr(exception, report['error']).helper_exit_code, code)

    @settings(max_examples=200, deadline=None)
    @given(st.text())
    def test_no_device_value_is_passed_on_unless_a_block_device(self, value):
        with fixtures.MockPatchObject(lio, 'create') as create, \
                fixtures.MockPatchObject(lio, 'unused_wwn'):
            code = helper.main(['create', '--device=' + value])
        if os.path.isabs(value) and '\x00' not in value and \
                os.path.exists(value) and stat.S_ISBLK(os.stat(value).st_mode):
            return  # a real block device of this host: a valid request
        self.assertEqual(exception.InvalidDevice.helper_exit_code, code)
        create.mock.assert_not_called()

    @settings(max_examples=300, deadline=None)
    @given(JSON_VALUES)
    def test_arbitrary_batch_json_is_refused_unless_valid(self, batch):
        self.useFixture(fixtures.MonkeyPatch(
            'sys.stdin', io.StringIO(json.dumps(batch))))
        with fixtures.MockPatchObject(operations.host, '_create') as create:
            create.mock.return_value = {}
            code = helper.main(['create-many'])
        try:
            specs = validation.validate_endpoint_specs(batch)
        except exception.Invalid as err:
            self.assertEqual(err.helper_exit_code, code)
            create.mock.assert_not_called()
        else:
            self.assertEqual(0, code)
            self.assertEqual(len(specs), create.mock.call_count)

    def test_option_value_cannot_be_mistaken_for_an_option(self):
        with fixtures.MockPatchObject(operations.host, 'create') as create:
            create.mock.return_value = {}
            helper.main(['create', '--device=--wwn=naa.5001405000000001'])
        create.mock.assert_called_once_with(
            create.mock.call_args.args[0], create.mock.call_args.args[1],
            '--wwn=naa.5001405000000001', wwn=None, nexus=None, serial=None,
            read_only=False, discard=None)


class HostileEntrypointTestCase(base.TestCase):
    """The same table sent straight to the privsep entry points.

    No executor validates first here: this is what any code running in
    the service's process could send the root daemon.
    """

    def setUp(self):
        super().setUp()
        self.useFixture(base.PrivsepInProcess())
        self.tmp = self.useFixture(hostile.ScratchFiles()).path
        root = self.useFixture(fixtures.TempDir()).path
        self.state_path = os.path.join(root, 'state')
        with open(os.path.join(root, 'vhost-brick.conf'), 'w') as conf:
            conf.write('[vhost_brick]\nstate_path = %s\n' % self.state_path)
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.operations.LOCK_FILE', root + '/lock'))
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.rootconf.CONFIG_FILE',
            root + '/vhost-brick.conf'))
        self.lio = self.useFixture(fixtures.MockPatchObject(
            operations, 'lio', autospec=True)).mock
        self.useFixture(fixtures.MockPatchObject(
            host, 'lio', self.lio))
        accept_loop0(self)

    def rows(self):
        for description, kwargs, error in hostile.BAD_CREATE_INPUTS:
            kwargs = {name: fill(value, self.tmp, DISK)
                      for name, value in kwargs.items()}
            kwargs.setdefault('device_path', DISK)
            yield description, kwargs, error

    def assertChangedNothing(self):
        self.assertEqual([], self.lio.mock_calls)
        self.assertFalse(os.path.exists(self.state_path))

    def test_every_bad_create_gets_its_typed_error(self):
        for description, kwargs, error in self.rows():
            answer = entrypoints.create(**kwargs)
            self.assertEqual(error.__name__, answer['error']['error'],
                             description)
        self.assertChangedNothing()

    def test_every_bad_spec_refuses_the_whole_batch(self):
        for description, spec, error in self.rows():
            answer = entrypoints.create_many([{'device_path': DISK}, spec])
            self.assertEqual(error.__name__, answer['error']['error'],
                             description)
        self.assertChangedNothing()

    def test_bad_wwns_and_batches_get_typed_errors(self):
        for call, args in ((entrypoints.delete, (None,)),
                           (entrypoints.delete_many, ('naa.5001405abc',)),
                           (entrypoints.delete_many, ([1],)),
                           (entrypoints.create_many, ({'x': 1},)),
                           (entrypoints.list_endpoints, ('extra',))):
            answer = call(*args)
            self.assertIn(answer['error']['error'],
                          ('Invalid', 'InvalidWWN', 'InvalidArgument'),
                          (call, args))
        self.assertChangedNothing()

    def test_show_of_a_bad_wwn_is_invalid_wwn_before_any_read(self):
        with fixtures.MockPatchObject(operations, 'lio', lio), \
                fixtures.MockPatchObject(lio, '_describe') as describe:
            answer = entrypoints.show('naa.6001405bd4e8476d')
        self.assertEqual('InvalidWWN', answer['error']['error'])
        describe.mock.assert_not_called()
