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

"""The os-brick connector and the Cinder target helper on a real kernel.

Cinder's own classes drive the target in consumers/test_cinder_lvm.py;
these need only os-brick, a test requirement.
"""

import uuid

from os_brick.initiator.connectors import local

from vhost_brick import exception
from vhost_brick.integrations import cinder_target
from vhost_brick.integrations import connector
from vhost_brick.integrations import volume as volume_export
from vhost_brick.tests.functional import base


class ConnectorTestCase(base.FunctionalTestCase):
    """VhostConnector wrapping os-brick's own LocalConnector."""

    def setUp(self):
        super().setUp()
        self.connector = connector.VhostConnector(
            None, local.LocalConnector(None), vhost_executor=self.executor)
        self.props = {'device_path': self.make_disk(),
                      'volume_id': str(uuid.uuid4())}

    def test_connect_exports_and_disconnect_removes(self):
        info = self.connector.connect_volume(self.props)
        wwn = info['vhost']['wwn']
        self.assertEqual(self.props['device_path'], info['path'])
        self.assertEqual(self.executor.get_endpoint(wwn).to_dict(),
                         info['vhost'])
        self.assertEqual(wwn, info['vhost_connection_info']['data']['wwpn'])
        self.assertEqual(self.props['volume_id'],
                         info['vhost']['luns'][0]['serial'])
        self.connector.disconnect_volume(self.props, info)
        self.assertNotIn(wwn, base.vhost_targets())

    def test_connecting_again_returns_the_same_endpoint(self):
        first = self.connector.connect_volume(self.props)
        self.addCleanup(self.connector.disconnect_volume, self.props, None)
        self.assertEqual(first['vhost'],
                         self.connector.connect_volume(dict(self.props))[
                             'vhost'])
        self.assertEqual(1, len(base.vhost_targets() -
                                self.targets_before))

    def test_disconnect_from_what_nova_persisted_removes_the_endpoint(self):
        wwn = self.connector.connect_volume(self.props)['vhost']['wwn']
        self.connector.disconnect_volume(dict(self.props), None)
        self.assertNotIn(wwn, base.vhost_targets())

    def test_disconnect_refused_while_a_guest_holds_the_endpoint(self):
        wwn = self.connector.connect_volume(self.props)['vhost']['wwn']
        holder = self.hold_endpoint(wwn)
        self.assertRaises(exception.EndpointInUse,
                          self.connector.disconnect_volume, self.props, None,
                          force=True)
        self.release_endpoint(holder)
        self.connector.disconnect_volume(self.props, None)
        self.assertNotIn(wwn, base.vhost_targets())

    def test_read_only_access_mode_exports_read_only(self):
        info = self.connector.connect_volume(dict(self.props,
                                                  access_mode='ro'))
        self.addCleanup(self.connector.disconnect_volume, self.props, info)
        self.assertTrue(info['vhost']['luns'][0]['read_only'])

    def test_connector_properties_see_the_vhost_device(self):
        self.assertEqual({'vhost_scsi': True},
                         connector.VhostConnector.get_connector_properties(
                             None))


class Volume(dict):
    """What the target reads of a Cinder Volume: attributes and get()."""

    __getattr__ = dict.__getitem__


class CinderTargetTestCase(base.FunctionalTestCase):
    """VhostTarget with a volume double on a loop device."""

    def setUp(self):
        super().setUp()
        self.target = cinder_target.VhostTarget(
            root_helper=None, host='compute-1', vhost_executor=self.executor)
        self.volume = Volume(id=str(uuid.uuid4()), host='compute-1@lvm')
        self.path = self.make_disk()
        self.connector = dict(
            connector.VhostConnector.get_connector_properties(None),
            host='compute-1')

    def test_export_connect_and_remove(self):
        update = self.target.create_export(None, self.volume,
                                           self.path)
        wwn = update['location']
        self.assertEqual(volume_export.volume_wwn(self.volume['id']), wwn)
        self.assertIn(wwn, base.vhost_targets())
        self.target.ensure_export(None, self.volume, self.path)
        info = self.target.initialize_connection(self.volume,
                                                 self.connector)
        self.assertEqual('vhost', info['driver_volume_type'])
        self.assertEqual((wwn, self.path),
                         (info['data']['wwpn'], info['data']['device_path']))
        self.assertRaises(exception.InvalidConnector,
                          self.target.initialize_connection,
                          self.volume,
                          dict(self.connector, host='compute-2'))
        self.target.remove_export(None, self.volume)
        self.assertNotIn(wwn, base.vhost_targets())
