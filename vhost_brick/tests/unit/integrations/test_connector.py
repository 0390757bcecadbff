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

from unittest import mock

from os_brick.initiator.connectors import local
from os_brick.initiator import initiator_connector

from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick.integrations import connector
from vhost_brick.tests import base


WWN = 'naa.5001405000000001'
DEVICE = '/dev/mapper/volume-1'
EP = endpoint.VhostEndpoint(
    WWN, 1, 'naa.5001405000000002',
    [endpoint.VhostLun(0, DEVICE, 'vhost-brick-5001405000000001', 'serial-1',
                       False)])
PROPS = {'device_path': DEVICE}


class VhostConnectorTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.inner = mock.Mock(wraps=local.LocalConnector(None))
        self.vhost = mock.Mock()
        self.vhost.create_endpoint.return_value = EP
        self.connector = connector.VhostConnector(
            None, self.inner, vhost_executor=self.vhost)

    def test_is_an_os_brick_connector(self):
        self.assertIsInstance(self.connector,
                              initiator_connector.InitiatorConnector)

    def test_connect_attaches_then_exports(self):
        info = self.connector.connect_volume(PROPS)
        self.inner.connect_volume.assert_called_once_with(PROPS)
        self.vhost.create_endpoint.assert_called_once_with(DEVICE, wwn=None)
        self.assertEqual({'type': 'local', 'path': DEVICE,
                          'vhost': EP.to_dict(),
                          'vhost_connection_info': {
                              'driver_volume_type': 'vhost',
                              'data': {'wwpn': WWN, 'tpgt': 1, 'lun': 0,
                                       'nexus': EP.nexus,
                                       'device_path': DEVICE,
                                       'backstore': EP.luns[0].backstore}}},
                         info)

    def test_connect_passes_a_pinned_wwn(self):
        self.connector.connect_volume(dict(PROPS, vhost_wwn=WWN))
        self.vhost.create_endpoint.assert_called_once_with(DEVICE, wwn=WWN)

    def test_failed_export_detaches_again(self):
        self.vhost.create_endpoint.side_effect = exception.DeviceInUse(
            device=DEVICE, reason='mounted')
        self.assertRaises(exception.DeviceInUse,
                          self.connector.connect_volume, PROPS)
        self.inner.disconnect_volume.assert_called_once_with(
            PROPS, {'type': 'local', 'path': DEVICE})

    def test_disconnect_deletes_then_detaches(self):
        info = self.connector.connect_volume(PROPS)
        calls = mock.Mock()
        calls.attach_mock(self.vhost.delete_endpoint, 'delete')
        calls.attach_mock(self.inner.disconnect_volume, 'detach')
        self.connector.disconnect_volume(PROPS, info)
        self.assertEqual([mock.call.delete(WWN),
                          mock.call.detach(PROPS, info, force=False,
                                           ignore_errors=False)],
                         calls.mock_calls)

    def test_disconnect_refused_while_a_guest_holds_it(self):
        info = self.connector.connect_volume(PROPS)
        self.vhost.delete_endpoint.side_effect = exception.EndpointInUse(
            wwn=WWN)
        self.assertRaises(exception.EndpointInUse,
                          self.connector.disconnect_volume, PROPS, info,
                          force=True, ignore_errors=True)
        self.inner.disconnect_volume.assert_not_called()

    def test_disconnect_without_device_info_uses_the_pinned_wwn(self):
        self.connector.disconnect_volume(dict(PROPS, vhost_wwn=WWN), None)
        self.vhost.delete_endpoint.assert_called_once_with(WWN)

    def test_other_calls_go_to_the_inner_connector(self):
        self.assertEqual([DEVICE], self.connector.get_volume_paths(PROPS))
        self.assertIsNone(self.connector.get_search_path())
        self.assertEqual([], self.connector.get_all_available_volumes())
        self.inner.extend_volume = mock.Mock(return_value=1 << 30)
        self.assertEqual(1 << 30, self.connector.extend_volume(PROPS))

    def test_connector_properties_report_vhost_support(self):
        with mock.patch('os.path.exists', return_value=True) as exists:
            self.assertEqual(
                {'vhost_scsi': True},
                connector.VhostConnector.get_connector_properties('sudo'))
        exists.assert_called_once_with('/dev/vhost-scsi')
