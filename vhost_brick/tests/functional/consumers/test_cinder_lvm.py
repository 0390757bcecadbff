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

"""Cinder's own LVM driver exports its volumes through the vhost target.

Runs in the ``functional-consumers`` VM, where Cinder is installed: real
LVM on a loop device, every LVM command through ``sudo cinder-rootwrap``,
vhost_brick's privsep daemon started through the same root helper.
"""

import os
import shutil
import uuid

from vhost_brick import exception
from vhost_brick.integrations import connector
from vhost_brick import privileged
from vhost_brick.tests.functional import base
from vhost_brick.tests.functional.consumers import cinder_host


def make_volume(context, size=1):
    from cinder import objects
    return objects.Volume(
        context, id=str(uuid.uuid4()), _name_id=None, size=size,
        multiattach=False, admin_metadata={},
        volume_attachment=objects.VolumeAttachmentList(objects=[]))


class CinderLVMTestCase(base.FunctionalTestCase):
    """create_volume to delete_volume, as Cinder's volume manager calls.

    One volume host for the class: its setup (rootwrap, a volume group,
    the driver's checks) costs tens of seconds in the VM.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not base.ENABLED:
            return
        base.load_kernel_modules()
        # The daemon must be started by the target, through Cinder's
        # rootwrap, not found already running from another test.
        privileged.default.stop()
        cls.host = cinder_host.CinderVolumeHost()
        cls.host.setUp()

    @classmethod
    def tearDownClass(cls):
        if base.ENABLED:
            cls.host.cleanUp()
            privileged.default.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        from cinder import context
        self.driver = self.host.make_driver(self.conf)
        self.context = context.get_admin_context()
        self.volume = make_volume(self.context)
        self.driver.create_volume(self.volume)
        self.addCleanup(self.driver.delete_volume, self.volume)
        self.lv_path = '/dev/%s/%s' % (self.host.volume_group,
                                       self.volume.name)
        self.connector = dict(
            connector.VhostConnector.get_connector_properties(None),
            host=self.driver.target_driver.host)

    def export(self):
        update = self.driver.create_export(self.context, self.volume,
                                           self.connector)
        self.volume.update(update)
        self.addCleanup(self.driver.remove_export, self.context,
                        self.volume)
        return update

    def test_create_export_serves_the_lv_with_the_volume_id_as_serial(self):
        update = self.export()
        wwn = update['provider_location']
        self.assertIn(wwn, base.vhost_targets())
        ep = self.driver.target_driver.vhost.get_endpoint(wwn)
        self.assertEqual((self.lv_path, self.volume.id, False),
                         (ep.luns[0].device_path, ep.luns[0].serial,
                          ep.luns[0].read_only))
        self.assertEqual(os.stat(self.lv_path).st_rdev, os.stat(
            ep.luns[0].device_path).st_rdev)

    def test_initialize_connection_gives_what_a_guest_attaches(self):
        update = self.export()
        self.driver.validate_connector(self.connector)
        info = self.driver.initialize_connection(self.volume, self.connector)
        self.assertEqual('vhost', info['driver_volume_type'])
        self.assertEqual(
            (update['provider_location'], 1, 0, self.lv_path, self.volume.id),
            (info['data']['wwpn'], info['data']['tpgt'], info['data']['lun'],
             info['data']['device_path'], info['data']['volume_id']))
        self.assertFalse(self.driver.terminate_connection(self.volume,
                                                          self.connector))
        self.assertIn(update['provider_location'], base.vhost_targets())

    def test_ensure_export_after_a_lost_export_recreates_it(self):
        wwn = self.export()['provider_location']
        self.driver.target_driver.vhost.delete_endpoint(wwn)
        self.driver.ensure_export(self.context, self.volume)
        self.assertIn(wwn, base.vhost_targets())
        self.driver.ensure_export(self.context, self.volume)
        self.assertIn(wwn, base.vhost_targets())

    def test_remove_export_leaves_nothing_behind(self):
        before = base.configfs_snapshot()
        wwn = self.export()['provider_location']
        self.driver.remove_export(self.context, self.volume)
        self.assertNotIn(wwn, base.vhost_targets())
        self.assertEqual(before, base.configfs_snapshot())

    def test_a_connector_of_another_host_is_refused(self):
        self.export()
        self.assertRaises(exception.InvalidConnector,
                          self.driver.initialize_connection, self.volume,
                          dict(self.connector, host='compute-2'))

    def test_without_vhost_bricks_filter_cinders_rootwrap_refuses(self):
        privileged.default.stop()
        os.unlink(cinder_host.ETC + '/rootwrap.d/vhost-brick.filters')
        self.assertRaises(exception.PrivsepFailed, self.driver.create_export,
                          self.context, self.volume, self.connector)
        self.assertEqual(self.targets_before, base.vhost_targets())
        shutil.copy(os.path.join(cinder_host.REPO, 'etc', 'vhost-brick',
                                 'rootwrap.d', 'vhost-brick.filters'),
                    cinder_host.ETC + '/rootwrap.d')
        self.assertIn(self.export()['provider_location'],
                      base.vhost_targets())
