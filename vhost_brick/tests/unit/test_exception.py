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

import pickle

from vhost_brick import exception
from vhost_brick.tests import base


class ExceptionTestCase(base.TestCase):

    def test_message_formatted_from_kwargs(self):
        err = exception.InvalidWWN(wwn='naa.12', reason='too short')
        self.assertEqual("Invalid WWN 'naa.12': too short", str(err))
        self.assertEqual({'wwn': 'naa.12', 'reason': 'too short'},
                         err.kwargs)

    def test_explicit_message_wins(self):
        err = exception.EndpointNotFound('gone', wwn='naa.5001405000000001')
        self.assertEqual('gone', str(err))

    def test_kwargs_not_fitting_template_fall_back_to_template(self):
        err = exception.EndpointNotFound(device='/dev/sda')
        self.assertEqual(exception.EndpointNotFound.message, str(err))

    def test_pickle_keeps_class_message_and_kwargs(self):
        err = exception.DeviceInUse(device='/dev/sdb', reason='mounted')
        copy = pickle.loads(pickle.dumps(err))
        self.assertIsInstance(copy, exception.DeviceInUse)
        self.assertEqual(str(err), str(copy))
        self.assertEqual(err.kwargs, copy.kwargs)

    def test_helper_failed_carries_command_exit_code_and_stderr(self):
        err = exception.HelperFailed(cmd='vhost-brick-helper list',
                                     exit_code=1, stderr='boom')
        self.assertEqual(('vhost-brick-helper list', 1, 'boom'),
                         (err.cmd, err.exit_code, err.stderr))
        self.assertIn('boom', str(err))

    def test_invalid_nexus_is_an_invalid_wwn(self):
        self.assertTrue(issubclass(exception.InvalidNexus,
                                   exception.InvalidWWN))

    def test_helper_exit_codes_are_unique(self):
        codes = {}
        for cls in exception._subclasses(exception.VhostBrickException):
            if cls.helper_exit_code != 1:
                self.assertNotIn(cls.helper_exit_code, codes,
                                 '%s reuses the code of %s' % (
                                     cls, codes.get(cls.helper_exit_code)))
                codes[cls.helper_exit_code] = cls

    def test_by_exit_code_names_each_class(self):
        for cls in (exception.InvalidDevice, exception.InvalidWWN,
                    exception.InvalidNexus, exception.InvalidArgument,
                    exception.EndpointNotFound, exception.EndpointExists,
                    exception.DeviceInUse, exception.EndpointInUse,
                    exception.KernelSupportMissing,
                    exception.PermissionDenied):
            self.assertIs(cls, exception.by_exit_code(cls.helper_exit_code))

    def test_by_exit_code_generic_and_unknown_are_helper_failed(self):
        for code in (1, 2, 99, -9, None):
            self.assertIs(exception.HelperFailed,
                          exception.by_exit_code(code))

    def test_report_round_trip_keeps_class_message_and_kwargs(self):
        err = exception.DeviceInUse(device='/dev/sdb', reason='mounted')
        rebuilt = exception.from_report(exception.to_report(err))
        self.assertIs(exception.DeviceInUse, type(rebuilt))
        self.assertEqual(err.msg, rebuilt.msg)
        self.assertEqual(err.kwargs, rebuilt.kwargs)

    def test_report_kwargs_are_json_scalars(self):
        report = exception.to_report(
            exception.BackendError(reason=OSError(5, 'EIO')))
        self.assertEqual({'reason': '[Errno 5] EIO'}, report['kwargs'])

    def test_unknown_reported_class_becomes_backend_error(self):
        rebuilt = exception.from_report(
            {'error': 'Exception', 'message': 'odd', 'kwargs': {}})
        self.assertIs(exception.BackendError, type(rebuilt))
        self.assertEqual('odd', str(rebuilt))
