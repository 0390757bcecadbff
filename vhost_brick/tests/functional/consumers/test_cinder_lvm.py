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

import json
import logging
import os
import shutil
import subprocess

from cinder import exception as cinder_exception
import fixtures

from vhost_brick import exception
from vhost_brick.integrations import connector
from vhost_brick import privileged
from vhost_brick.tests.functional import base
from vhost_brick.tests.functional.consumers import cinder_host

# oslo.rootwrap's exit code for a command no filter allows.
ROOTWRAP_UNAUTHORIZED = 99


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
        self.volume = self.host.new_volume(self.context)
        self.driver.create_volume(self.volume)
        self.addCleanup(self.driver.delete_volume, self.volume)
        self.lv_path = self.host.lv_path(self.volume)
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
        # Cinder's volume manager answers this exception with a 400.
        err = self.assertRaises(cinder_exception.InvalidConnectorException,
                                self.driver.initialize_connection,
                                self.volume,
                                dict(self.connector, host='compute-2'))
        self.assertIsInstance(err.__cause__, exception.InvalidConnector)

    def remove_our_filter(self):
        """Take vhost-brick.filters out of Cinder's rootwrap, until cleanup."""
        installed = cinder_host.ETC + '/rootwrap.d/vhost-brick.filters'
        os.unlink(installed)
        self.addCleanup(shutil.copy, cinder_host.OUR_FILTERS, installed)

    def test_privsep_mode_needs_no_filter_of_ours(self):
        # oslo.rootwrap lets every privsep-helper command through
        # (wrapper.load_filters appends an unrestricted CommandFilter),
        # so cinder-rootwrap starts vhost_brick's daemon on Cinder's own
        # filters. Only vhost-brick-rootwrap takes that pass away.
        privileged.default.stop()
        self.remove_our_filter()
        started = self.useFixture(fixtures.FakeLogger(
            name='oslo.privsep.daemon', level=logging.INFO))
        self.assertIn(self.export()['provider_location'],
                      base.vhost_targets())
        # The daemon that made the export started through cinder-rootwrap.
        self.assertIn("Running privsep helper: ['sudo', 'cinder-rootwrap', "
                      "'%s', 'privsep-helper', '--privsep_context', "
                      "'vhost_brick.privileged.default'"
                      % cinder_host.ROOTWRAP_CONF, started.output)

    def cinder_rootwrap(self, *cmd):
        """Run a command through cinder-rootwrap and Cinder's filters."""
        return subprocess.run(('cinder-rootwrap', cinder_host.ROOTWRAP_CONF)
                              + cmd, capture_output=True, text=True)

    def test_helper_mode_through_cinders_rootwrap_needs_our_filter(self):
        # Called directly: processutils, as root, skips the root helper,
        # so helper mode run by a root test would never reach rootwrap.
        self.remove_our_filter()
        refused = self.cinder_rootwrap('vhost-brick-helper', 'list')
        self.assertEqual(ROOTWRAP_UNAUTHORIZED, refused.returncode)
        shutil.copy(cinder_host.OUR_FILTERS, cinder_host.ETC + '/rootwrap.d')
        allowed = self.cinder_rootwrap('vhost-brick-helper', 'list')
        self.assertEqual(0, allowed.returncode, allowed.stderr)
        self.assertEqual(sorted(base.vhost_targets()), sorted(
            endpoint['wwn'] for endpoint in json.loads(allowed.stdout)))
