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

"""The vhost target against Cinder's own classes (``tox -e cinder``).

Cinder is not a requirement of vhost_brick: without it these tests skip,
except where VHOST_BRICK_CINDER=1 (the cinder tox environment) says it
must be there.
"""

import importlib
import inspect
import os
import unittest
from unittest import mock

from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick import executor
from vhost_brick.integrations import cinder_target
from vhost_brick.integrations import volume as volume_export
from vhost_brick.tests import base

try:
    from cinder import objects
    # As Cinder's services do before they load a volume driver.
    objects.register_all()
    from cinder import context
    from cinder import exception as cinder_exception
    from cinder.volume import configuration
    from cinder.volume.drivers import lvm
    from cinder.volume.targets import driver as target_driver
except ImportError as err:
    if os.environ.get('VHOST_BRICK_CINDER') == '1':
        raise
    CINDER_MISSING = 'Cinder is not installed (tox -e cinder has it): %s' % (
        err)
else:
    CINDER_MISSING = None

VOLUME_ID = '1e5ab4c2-0d2f-4e1b-9c3a-77a1d0f6b2e4'
WWN = volume_export.volume_wwn(VOLUME_ID)
PATH = '/dev/cinder-volumes/volume-' + VOLUME_ID
CONNECTOR = {'host': 'compute-1', 'vhost_scsi': True}


@unittest.skipIf(CINDER_MISSING, CINDER_MISSING)
class CinderTargetInterfaceTestCase(base.TestCase):
    """VhostTarget has what cinder.volume.targets.driver.Target defines."""

    def test_implements_every_abstract_method(self):
        for name in target_driver.Target.__abstractmethods__:
            self.assertIn(name, vars(cinder_target.VhostTarget), name)

    def test_methods_take_cinders_arguments(self):
        for name, method in inspect.getmembers(target_driver.Target,
                                               inspect.isfunction):
            expected = inspect.signature(method)
            actual = inspect.signature(getattr(cinder_target.VhostTarget,
                                               name))
            self.assertEqual(list(expected.parameters),
                             list(actual.parameters), name)

    def test_class_attributes_cinder_reads(self):
        for name in ('storage_protocol', 'SHARED_TARGET_SUPPORT',
                     'SECONDARY_IP_SUPPORT'):
            self.assertIn(name, vars(target_driver.Target), name)
            self.assertIn(name, vars(cinder_target.VhostTarget), name)

    def test_default_root_helper_is_cinders_own(self):
        self.conf.config(rootwrap_config='/etc/cinder/rootwrap-x.conf')
        target = cinder_target.VhostTarget(configuration=self.backend())
        self.assertEqual('sudo cinder-rootwrap /etc/cinder/rootwrap-x.conf',
                         target.vhost._root_helper)

    def backend(self):
        """A backend's Configuration, as Cinder's volume manager makes it."""
        self.conf.register_opts(lvm.volume_opts, group='lvm-vhost')
        return configuration.Configuration(lvm.volume_opts,
                                           config_group='lvm-vhost')

    def test_the_discard_option_is_read_from_the_backends_section(self):
        backend = self.backend()
        self.assertIsNone(cinder_target.VhostTarget(
            configuration=backend)._discard)
        self.conf.config(group='lvm-vhost', vhost_discard=False)
        self.assertIs(False, cinder_target.VhostTarget(
            configuration=backend)._discard)

    def test_host_defaults_to_cinders_host_option(self):
        self.conf.config(host='cinder-host-1')
        self.assertEqual('cinder-host-1', cinder_target.VhostTarget().host)


@unittest.skipIf(CINDER_MISSING, CINDER_MISSING)
class VhostLVMVolumeDriverTestCase(base.TestCase):
    """Cinder's LVMVolumeDriver, built as Cinder builds it, drives the target.

    The volume group and the endpoint executor are mocks: the VM's
    functional test runs the same driver on a real volume group.
    """

    def setUp(self):
        super().setUp()
        module = importlib.import_module(
            'vhost_brick.integrations.cinder_driver')
        config = configuration.Configuration(lvm.volume_opts,
                                             config_group='lvm-vhost')
        self.vhost = mock.Mock()
        self.vhost.get_endpoint.return_value = endpoint.VhostEndpoint(
            WWN, 1, 'naa.5001405000000002',
            [endpoint.VhostLun(0, PATH, 'vhost-brick-x', VOLUME_ID, False,
                               True)])
        with mock.patch.object(executor.VhostExecutor, 'for_service',
                               return_value=self.vhost) as for_service:
            self.driver = module.VhostLVMVolumeDriver(
                configuration=config, host='compute-1@lvm-vhost')
        self.for_service = for_service
        self.driver.vg = mock.Mock()
        self.driver.target_driver.host = 'compute-1'
        self.context = context.get_admin_context()
        self.volume = objects.Volume(
            self.context, id=VOLUME_ID, _name_id=None, size=1,
            multiattach=False,
            volume_attachment=objects.VolumeAttachmentList(objects=[]))

    def test_the_target_is_the_vhost_target(self):
        self.assertIsInstance(self.driver.target_driver,
                              cinder_target.VhostTarget)
        self.assertEqual('vhost', self.driver.protocol)

    def test_the_target_gets_cinders_executor_and_root_helper(self):
        self.for_service.assert_called_once_with(
            'sudo cinder-rootwrap /etc/cinder/rootwrap.conf',
            self.driver._execute)

    def test_create_export_stores_the_wwn_as_provider_location(self):
        self.vhost.create_endpoint.return_value = \
            self.vhost.get_endpoint.return_value
        update = self.driver.create_export(self.context, self.volume, None)
        self.assertEqual({'provider_location': WWN, 'provider_auth': None},
                         update)
        self.driver.vg.activate_lv.assert_called_once_with(self.volume.name)
        self.vhost.create_endpoint.assert_called_once_with(
            '/dev/cinder-volumes/' + self.volume.name, wwn=WWN,
            serial=VOLUME_ID, read_only=False,
            discard=None)

    def test_initialize_connection(self):
        info = self.driver.initialize_connection(self.volume, CONNECTOR)
        self.assertEqual(('vhost', WWN, VOLUME_ID),
                         (info['driver_volume_type'], info['data']['wwpn'],
                          info['data']['volume_id']))

    def test_validate_connector_refuses_a_host_without_vhost(self):
        # Cinder's volume manager answers this exception with a 400.
        err = self.assertRaises(cinder_exception.InvalidConnectorException,
                                self.driver.validate_connector,
                                {'host': 'compute-1'})
        self.assertIn("required information: vhost_scsi (not true: "
                      "os-brick's own get_connector_properties never sets "
                      "it", str(err))
        self.assertIsInstance(err.__cause__, exception.InvalidConnector)

    def test_terminate_connection_keeps_the_endpoint(self):
        self.assertFalse(self.driver.terminate_connection(self.volume,
                                                          CONNECTOR))
        self.vhost.delete_endpoint.assert_not_called()

    def test_remove_export_deletes_the_endpoint(self):
        self.driver.remove_export(self.context, self.volume)
        self.vhost.delete_endpoint.assert_called_once_with(WWN)

    def test_read_only_mode_is_read_without_a_database(self):
        # admin_metadata not loaded: a lazy load would need Cinder's DB.
        self.assertFalse(cinder_target.VhostTarget._read_only(self.volume))
        self.volume.admin_metadata = {'readonly': 'True'}
        self.assertTrue(cinder_target.VhostTarget._read_only(self.volume))
