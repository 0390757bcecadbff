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

import types
from unittest import mock

from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick.integrations import cinder_target
from vhost_brick.tests import base
from vhost_brick import validation


def make_volume(volume_id='6f1a0b2e-1d3c-4c55-9f00-5b0e2f8b1a11'):
    """The attributes of a Cinder Volume object the target helper reads."""
    return types.SimpleNamespace(id=volume_id, name='volume-' + volume_id,
                                 host='compute-1@lvm#lvm', size=1)


class VhostTargetTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.vhost = mock.Mock()
        self.target = cinder_target.VhostTarget(
            configuration=mock.sentinel.conf, root_helper='sudo',
            host='compute-1', vhost_executor=self.vhost)
        self.volume = make_volume()
        self.wwn = cinder_target.VhostTarget.volume_wwn(self.volume)
        self.ep = endpoint.VhostEndpoint(
            self.wwn, 1, 'naa.5001405000000002',
            [endpoint.VhostLun(0, '/dev/vg/volume-1', 'vhost-brick-x',
                               'volume-1', False)])
        self.vhost.create_endpoint.return_value = self.ep
        self.vhost.get_endpoint.return_value = self.ep

    def test_volume_wwn_is_stable_valid_and_distinct(self):
        self.assertEqual(self.wwn,
                         cinder_target.VhostTarget.volume_wwn(make_volume()))
        self.assertEqual(self.wwn, validation.validate_wwn(self.wwn))
        self.assertNotEqual(self.wwn, cinder_target.VhostTarget.volume_wwn(
            make_volume('another-id')))

    def test_create_export(self):
        self.assertEqual(
            {'provider_location': self.wwn, 'provider_auth': None},
            self.target.create_export(None, self.volume, '/dev/vg/volume-1'))
        self.vhost.create_endpoint.assert_called_once_with(
            '/dev/vg/volume-1', wwn=self.wwn)

    def test_ensure_export_recreates_with_the_same_wwn(self):
        self.target.ensure_export(None, self.volume, '/dev/vg/volume-1')
        self.vhost.create_endpoint.assert_called_once_with(
            '/dev/vg/volume-1', wwn=self.wwn)

    def test_remove_export(self):
        self.target.remove_export(None, self.volume)
        self.vhost.delete_endpoint.assert_called_once_with(self.wwn)

    def test_remove_export_refused_while_in_use(self):
        self.vhost.delete_endpoint.side_effect = exception.EndpointInUse(
            wwn=self.wwn)
        self.assertRaises(exception.EndpointInUse,
                          self.target.remove_export, None, self.volume)

    def test_initialize_connection(self):
        info = self.target.initialize_connection(self.volume,
                                                 {'host': 'compute-1'})
        self.assertEqual('vhost', info['driver_volume_type'])
        self.assertEqual(self.wwn, info['data']['wwpn'])
        self.vhost.get_endpoint.assert_called_once_with(self.wwn)

    def test_connector_of_another_host_is_refused(self):
        for connector in ({'host': 'compute-2'}, {}, None):
            self.assertRaises(exception.InvalidConnector,
                              self.target.initialize_connection,
                              self.volume, connector)
        self.vhost.get_endpoint.assert_not_called()

    def test_terminate_connection_keeps_the_endpoint(self):
        self.target.terminate_connection(self.volume, {'host': 'compute-1'})
        self.assertEqual([], self.vhost.method_calls)

    def test_are_same_connector(self):
        same = cinder_target.VhostTarget.are_same_connector
        self.assertTrue(same({'host': 'a'}, {'host': 'a'}))
        self.assertFalse(same({'host': 'a'}, {'host': 'b'}))
        self.assertFalse(same({}, {}))

    def test_has_the_cinder_target_interface(self):
        for name in ('create_export', 'ensure_export', 'remove_export',
                     'initialize_connection', 'terminate_connection',
                     'validate_connector', 'extend_target',
                     'are_same_connector'):
            self.assertTrue(callable(getattr(self.target, name)), name)
        self.assertEqual('vhost', self.target.storage_protocol)
