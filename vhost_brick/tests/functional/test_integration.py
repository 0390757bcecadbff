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

"""The os-brick connector and the Cinder target helper on a real kernel."""

import types

from os_brick.initiator.connectors import local

from vhost_brick import exception
from vhost_brick.integrations import cinder_target
from vhost_brick.integrations import connector
from vhost_brick.tests.functional import base


class ConnectorTestCase(base.FunctionalTestCase):
    """VhostConnector wrapping os-brick's own LocalConnector."""

    def setUp(self):
        super().setUp()
        self.connector = connector.VhostConnector(
            None, local.LocalConnector(None), vhost_executor=self.executor)
        self.props = {'device_path': self.make_disk()}

    def test_connect_exports_and_disconnect_removes(self):
        info = self.connector.connect_volume(self.props)
        wwn = info['vhost']['wwn']
        self.assertEqual(self.props['device_path'], info['path'])
        self.assertEqual(self.executor.get_endpoint(wwn).to_dict(),
                         info['vhost'])
        self.assertEqual(wwn, info['vhost_connection_info']['data']['wwpn'])
        self.connector.disconnect_volume(self.props, info)
        self.assertNotIn(wwn, base.vhost_targets())

    def test_connector_properties_see_the_vhost_device(self):
        self.assertEqual({'vhost_scsi': True},
                         connector.VhostConnector.get_connector_properties(
                             None))


class CinderTargetTestCase(base.FunctionalTestCase):
    """VhostTarget with a volume double on a loop device."""

    def setUp(self):
        super().setUp()
        self.target = cinder_target.VhostTarget(
            root_helper=None, host='compute-1', vhost_executor=self.executor)
        self.volume = types.SimpleNamespace(
            id='0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b', host='compute-1@lvm')
        self.path = self.make_disk()

    def test_export_connect_and_remove(self):
        update = self.target.create_export(None, self.volume, self.path)
        wwn = update['provider_location']
        self.assertIn(wwn, base.vhost_targets())
        self.target.ensure_export(None, self.volume, self.path)
        info = self.target.initialize_connection(self.volume,
                                                 {'host': 'compute-1'})
        self.assertEqual('vhost', info['driver_volume_type'])
        self.assertEqual((wwn, self.path),
                         (info['data']['wwpn'], info['data']['device_path']))
        self.assertRaises(exception.InvalidConnector,
                          self.target.initialize_connection, self.volume,
                          {'host': 'compute-2'})
        self.target.remove_export(None, self.volume)
        self.assertNotIn(wwn, base.vhost_targets())
