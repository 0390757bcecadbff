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

from os_brick import exception as brick_exception
from os_brick.initiator import connector as brick_connector
from os_brick.initiator.connectors import local
from os_brick.initiator import initiator_connector

from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick import executor
from vhost_brick.integrations import connector
from vhost_brick.integrations import volume
from vhost_brick.tests import base


VOLUME_ID = '6f1a0b2e-1d3c-4c55-9f00-5b0e2f8b1a11'
WWN = volume.volume_wwn(VOLUME_ID)
PINNED_WWN = 'naa.5001405000000001'
DEVICE = '/dev/mapper/volume-1'
PROPS = {'device_path': DEVICE, 'volume_id': VOLUME_ID}


def make_endpoint(wwn=WWN, serial=VOLUME_ID, device=DEVICE, read_only=False):
    return endpoint.VhostEndpoint(
        wwn, 1, 'naa.5001405000000002',
        [endpoint.VhostLun(0, device, 'vhost-brick-' + wwn[4:], serial,
                           read_only, True)])


class VhostConnectorTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.inner = mock.Mock(wraps=local.LocalConnector(None))
        self.vhost = mock.Mock()
        self.ep = make_endpoint()
        self.vhost.create_endpoint.return_value = self.ep
        self.vhost.get_endpoint.return_value = self.ep
        self.connector = connector.VhostConnector(
            None, self.inner, vhost_executor=self.vhost)

    def test_is_an_os_brick_connector(self):
        self.assertIsInstance(self.connector,
                              initiator_connector.InitiatorConnector)

    def test_connect_attaches_then_exports_the_volume(self):
        info = self.connector.connect_volume(PROPS)
        self.inner.connect_volume.assert_called_once_with(PROPS)
        self.vhost.create_endpoint.assert_called_once_with(
            DEVICE, wwn=WWN, serial=VOLUME_ID, read_only=False,
            discard=None)
        data = {'wwpn': WWN, 'tpgt': 1, 'lun': 0, 'nexus': self.ep.nexus,
                'device_path': DEVICE, 'backstore': self.ep.luns[0].backstore,
                'discard': True}
        self.assertEqual({'type': 'local', 'path': DEVICE,
                          'vhost': self.ep.to_dict(),
                          'vhost_connection_info': {
                              'driver_volume_type': 'vhost', 'data': data}},
                         info)

    def test_connect_names_the_endpoint_after_the_volume_id(self):
        self.connector.connect_volume(PROPS)
        self.connector.connect_volume(dict(PROPS))
        once = mock.call(DEVICE, wwn=WWN, serial=VOLUME_ID, read_only=False,
                         discard=None)
        self.assertEqual([once, once],
                         self.vhost.create_endpoint.call_args_list)

    def test_a_migrations_destination_makes_the_same_endpoint(self):
        # Nova connects the volume on the destination host from the data
        # it stored: that host's endpoint must present the same disk.
        props = dict(PROPS, access_mode='ro')
        self.connector.connect_volume(dict(props))
        destination = mock.Mock()
        destination.create_endpoint.return_value = self.ep
        connector.VhostConnector(
            None, mock.Mock(wraps=local.LocalConnector(None)),
            vhost_executor=destination).connect_volume(dict(props))
        self.assertEqual(
            mock.call(DEVICE, wwn=WWN, serial=VOLUME_ID, read_only=True,
                      discard=None),
            destination.create_endpoint.call_args)
        self.assertEqual(self.vhost.create_endpoint.call_args,
                         destination.create_endpoint.call_args)

    def test_connect_hides_discard_cinder_says_the_volume_lacks(self):
        self.connector.connect_volume(dict(PROPS, discard=False))
        self.assertIs(False,
                      self.vhost.create_endpoint.call_args.kwargs['discard'])

    def test_connect_passes_a_pinned_wwn(self):
        self.connector.connect_volume(dict(PROPS, vhost_wwn=PINNED_WWN))
        self.vhost.create_endpoint.assert_called_once_with(
            DEVICE, wwn=PINNED_WWN, serial=VOLUME_ID, read_only=False,
            discard=None)

    def test_connect_read_only_access_mode_exports_read_only(self):
        self.connector.connect_volume(dict(PROPS, access_mode='ro'))
        self.vhost.create_endpoint.assert_called_once_with(
            DEVICE, wwn=WWN, serial=VOLUME_ID, read_only=True,
            discard=None)

    def test_connect_without_volume_id_or_wwn_attaches_nothing(self):
        self.assertRaises(exception.Invalid, self.connector.connect_volume,
                          {'device_path': DEVICE})
        self.inner.connect_volume.assert_not_called()
        self.vhost.create_endpoint.assert_not_called()

    def test_connect_keeps_an_endpoint_made_before_serials(self):
        legacy = make_endpoint(serial='50014050aa11bb22')
        self.vhost.create_endpoint.side_effect = exception.EndpointExists(
            wwn=WWN, reason='its LUN has serial 50014050aa11bb22')
        self.vhost.get_endpoint.return_value = legacy
        info = self.connector.connect_volume(PROPS)
        self.assertEqual(legacy.to_dict(), info['vhost'])
        self.inner.disconnect_volume.assert_not_called()

    def test_connect_refuses_an_endpoint_serving_another_device(self):
        self.vhost.create_endpoint.side_effect = exception.EndpointExists(
            wwn=WWN, reason='it exports /dev/other')
        self.vhost.get_endpoint.return_value = make_endpoint(
            serial='other', device='/dev/other')
        self.assertRaises(exception.EndpointExists,
                          self.connector.connect_volume, PROPS)
        self.inner.disconnect_volume.assert_called_once_with(
            PROPS, {'type': 'local', 'path': DEVICE})

    def test_connect_refuses_a_read_write_endpoint_for_read_only(self):
        self.vhost.create_endpoint.side_effect = exception.EndpointExists(
            wwn=WWN, reason='its LUN has serial x')
        self.vhost.get_endpoint.return_value = make_endpoint(serial='x')
        self.assertRaises(exception.EndpointExists,
                          self.connector.connect_volume,
                          dict(PROPS, access_mode='ro'))

    def test_failed_export_detaches_again(self):
        self.vhost.create_endpoint.side_effect = exception.DeviceInUse(
            device=DEVICE, rule='mounted', reason='mounted')
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

    def test_disconnect_from_persisted_data_finds_the_endpoint(self):
        self.connector.disconnect_volume(dict(PROPS), None)
        self.vhost.get_endpoint.assert_called_once_with(WWN)
        self.vhost.delete_endpoint.assert_called_once_with(WWN)
        self.inner.disconnect_volume.assert_called_once_with(
            PROPS, None, force=False, ignore_errors=False)

    def test_disconnect_from_persisted_data_uses_the_pinned_wwn(self):
        self.connector.disconnect_volume(dict(PROPS, vhost_wwn=PINNED_WWN),
                                         None)
        self.vhost.delete_endpoint.assert_called_once_with(PINNED_WWN)

    def test_disconnect_without_an_endpoint_only_detaches(self):
        self.vhost.get_endpoint.side_effect = exception.EndpointNotFound(
            wwn=WWN)
        self.connector.disconnect_volume(PROPS, None)
        self.vhost.delete_endpoint.assert_not_called()
        self.inner.disconnect_volume.assert_called_once()

    def test_disconnect_keeps_another_volumes_endpoint(self):
        self.vhost.get_endpoint.return_value = make_endpoint(
            serial='other-volume', device='/dev/mapper/other')
        self.assertRaises(exception.EndpointExists,
                          self.connector.disconnect_volume, PROPS, None)
        self.vhost.delete_endpoint.assert_not_called()
        self.inner.disconnect_volume.assert_not_called()

    def test_disconnect_removes_a_pre_serial_endpoint_of_its_device(self):
        self.vhost.get_endpoint.return_value = make_endpoint(
            serial='50014050aa11bb22')
        self.connector.disconnect_volume(PROPS, None)
        self.vhost.delete_endpoint.assert_called_once_with(WWN)

    def test_disconnect_without_volume_id_or_wwn_detaches_nothing(self):
        self.assertRaises(exception.Invalid,
                          self.connector.disconnect_volume,
                          {'device_path': DEVICE}, None)
        self.inner.disconnect_volume.assert_not_called()

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


class FactoryTestCase(base.TestCase):

    def test_factory_wraps_os_bricks_connector_for_the_protocol(self):
        built = connector.factory('local', 'sudo', device_scan_attempts=7)
        self.assertIsInstance(built, connector.VhostConnector)
        self.assertIsInstance(built.inner, local.LocalConnector)
        self.assertEqual(('sudo', 7), (built.inner._root_helper,
                                       built.inner.device_scan_attempts))

    def test_factory_builds_a_privsep_executor_by_default(self):
        built = connector.factory('LOCAL', 'sudo', execute=mock.Mock())
        self.assertIsInstance(built.vhost, executor.VhostExecutor)
        self.assertFalse(built.vhost._explicit_execute)
        self.assertEqual('sudo', built.vhost._root_helper)

    def test_factory_passes_execute_in_helper_mode(self):
        self.conf.config(privileged_mode='helper', group='vhost_brick')
        execute = mock.Mock()
        built = connector.factory('LOCAL', 'sudo', execute=execute)
        self.assertIs(execute, built.vhost._execute)

    def test_factory_refuses_an_unknown_protocol(self):
        self.assertRaises(brick_exception.InvalidConnectorProtocol,
                          connector.factory, 'NO-SUCH', 'sudo')

    def test_a_network_attached_volume_is_migratable(self):
        for protocol in ('ISCSI', 'iscsi', 'FIBRE_CHANNEL', 'NVMEOF', 'RBD'):
            self.assertTrue(connector.factory(protocol, 'sudo').migratable,
                            protocol)

    def test_an_rbd_volume_is_mapped_as_a_block_device(self):
        self.assertTrue(connector.factory('RBD', 'sudo').inner.do_local_attach)

    def test_an_rbd_local_attach_may_still_be_turned_off(self):
        self.assertFalse(connector.factory(
            'rbd', 'sudo', do_local_attach=False).inner.do_local_attach)

    def test_a_device_of_this_host_alone_is_not_migratable(self):
        self.assertFalse(connector.factory('LOCAL', 'sudo').migratable)

    def test_a_connector_of_unknown_protocol_is_not_migratable(self):
        self.assertFalse(connector.VhostConnector(
            'sudo', mock.Mock(), vhost_executor=mock.Mock()).migratable)

    def test_connector_properties_add_vhost_to_os_bricks(self):
        brick = {'host': 'compute-1', 'ip': '192.0.2.1', 'multipath': False}
        with mock.patch.object(brick_connector, 'get_connector_properties',
                               return_value=dict(brick)) as get, \
                mock.patch('os.path.exists', return_value=True):
            properties = connector.get_connector_properties(
                'sudo', '192.0.2.1', False, False, host='compute-1')
        get.assert_called_once_with('sudo', '192.0.2.1', False, False,
                                    host='compute-1', execute=None)
        self.assertEqual(dict(brick, vhost_scsi=True), properties)
