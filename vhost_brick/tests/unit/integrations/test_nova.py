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

"""The Nova volume driver, run by Nova's own code.

Needs Nova with contrib/nova's patch applied, which the nova tox
environment installs from PyPI and patches; skipped without them, except
where VHOST_BRICK_NOVA=1 (that environment) makes a missing Nova or
patch a failure. Nova's functions run on a LibvirtDriver and Guest whose
libvirt connection and domain are stand-ins: the real libvirt is the
functional tests' part.
"""

import os
import shutil
import subprocess
import sys
import unittest
from unittest import mock

import fixtures
from oslo_serialization import jsonutils

from vhost_brick import attach
from vhost_brick import exception
from vhost_brick.integrations import cinder_target
from vhost_brick.tests import base

try:
    from lxml import etree
    from nova.api.openstack import api_version_request
    from nova.api.openstack import wsgi as nova_wsgi
    from nova.compute import api as compute_api
    from nova import exception as nova_exception
    from nova import objects
    from nova.virt import block_device as driver_block_device
    from nova.virt.libvirt import config as vconfig
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt import guest as libvirt_guest
    from nova.virt.libvirt import migration as libvirt_migration
    from nova.virt.libvirt.volume import volume as libvirt_volume
    from os_brick.initiator.connectors import iscsi as iscsi_connector
    from os_brick.initiator.connectors import local as local_connector
    import webob

    from vhost_brick.integrations import nova as vhost_nova
except ImportError as err:
    if os.environ.get('VHOST_BRICK_NOVA') == '1':
        raise
    NOVA_MISSING = 'Nova is not installed (tox -e nova has it): %s' % err
else:
    NOVA_MISSING = None
    if 'vhost' not in libvirt_driver.VOLUME_DRIVERS:
        if os.environ.get('VHOST_BRICK_NOVA') == '1':
            raise AssertionError("Nova's VOLUME_DRIVERS has no 'vhost': "
                                 "contrib/nova's patch is not applied")
        NOVA_MISSING = "Nova lacks contrib/nova's patch (tox -e nova has it)"

VOLUME_ID = '1e5ab4c2-0d2f-4e1b-9c3a-77a1d0f6b2e4'
WWN = 'naa.5001405e5ab4c20d'
CONNECTION_INFO = {
    'driver_volume_type': 'vhost', 'serial': VOLUME_ID,
    'data': {'wwpn': WWN, 'tpgt': 1, 'lun': 0,
             'nexus': 'naa.5001405000000002', 'volume_id': VOLUME_ID,
             'device_path': '/dev/cinder-volumes/volume-' + VOLUME_ID,
             'discard': True}}
DOMAIN = """<domain type='kvm'>
  <name>instance-00000001</name>
  <memory>131072</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/nova/instances/x/disk'/>
      <target dev='vda' bus='virtio'/>
      <alias name='ua-root'/>
    </disk>
    %s
  </devices>
</domain>"""


class FakeDomain:
    """A libvirt domain that only describes itself."""

    def __init__(self, xml):
        self.xml = xml

    def XMLDesc(self, flags=0):
        return self.xml


def nova_driver():
    """A LibvirtDriver with no connection: Nova's methods, our host."""
    driver = libvirt_driver.LibvirtDriver.__new__(libvirt_driver.LibvirtDriver)
    driver.volume_drivers = {}
    driver._host = mock.Mock(name='host')
    return driver


def connection_info(**changes):
    info = dict(CONNECTION_INFO, data=dict(CONNECTION_INFO['data']))
    info.update(changes)
    return info


@unittest.skipIf(NOVA_MISSING, NOVA_MISSING)
class NovaTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.driver = nova_driver()
        self.volume_driver = self.driver._get_volume_driver(connection_info())
        self.connector = mock.Mock(name='VhostConnector', migratable=False)
        self.useFixture(fixtures.MockPatchObject(
            self.volume_driver, '_connector', return_value=self.connector))
        self.connector.connect_volume.return_value = {
            'type': 'local', 'path': CONNECTION_INFO['data']['device_path'],
            'vhost': {'wwn': WWN}}
        self.instance = mock.Mock(uuid='0b7d4d2c-1e9a-4f35-9b47-c1d4a3f0a1b2')


class VolumeDriverTestCase(NovaTestCase):
    """Nova finds the driver and attaches with the config it gives."""

    def test_nova_loads_it_for_vhost_volumes_as_it_loads_its_own(self):
        self.assertIsInstance(self.volume_driver,
                              vhost_nova.LibvirtVhostVolumeDriver)
        self.assertIsInstance(self.volume_driver,
                              libvirt_volume.LibvirtBaseVolumeDriver)
        self.assertIs(self.driver._host, self.volume_driver.host)

    def test_the_driver_exports_through_the_vhost_connector_over_local(self):
        driver = vhost_nova.LibvirtVhostVolumeDriver(mock.Mock())
        self.assertIsInstance(driver._connector(connection_info()).inner,
                              local_connector.LocalConnector)

    def test_the_data_may_name_another_inner_connector(self):
        driver = vhost_nova.LibvirtVhostVolumeDriver(mock.Mock())
        info = connection_info()
        info['data']['vhost_inner_protocol'] = 'ISCSI'
        self.assertIsInstance(driver._connector(info).inner,
                              iscsi_connector.ISCSIConnector)

    def test_an_unknown_inner_protocol_is_an_invalid_volume(self):
        driver = vhost_nova.LibvirtVhostVolumeDriver(mock.Mock())
        for protocol in ('NO-SUCH', ['ISCSI'], None):
            info = connection_info()
            info['data']['vhost_inner_protocol'] = protocol
            err = self.assertRaises(nova_exception.InvalidVolume,
                                    driver._connector, info)
            self.assertIn('vhost_inner_protocol', str(err))

    def test_config_is_the_endpoints_hostdev_with_the_volumes_alias(self):
        conf = self.driver._get_volume_config(connection_info(),
                                              {'dev': 'sdb', 'bus': 'scsi'})
        self.assertEqual(
            '<hostdev mode="subsystem" type="scsi_host">'
            '<source protocol="vhost" wwpn="%s"/>'
            '<alias name="ua-%s"/></hostdev>' % (WWN, VOLUME_ID),
            conf.to_xml().replace('\n', '').replace('  ', ''))

    def test_config_passes_novas_attach_time_checks(self):
        conf = self.driver._get_volume_config(connection_info(),
                                              {'dev': 'sdb', 'bus': 'scsi'})
        self.driver._check_discard_for_attach_volume(conf, self.instance)
        self.assertEqual(VOLUME_ID, conf.serial)

    def test_connect_exports_the_stored_data_and_keeps_the_wwn(self):
        info = connection_info()
        info['data']['wwpn'] = 'naa.5001405000000009'  # a stale one
        self.driver._connect_volume(None, info, self.instance)
        self.connector.connect_volume.assert_called_once_with(info['data'])
        self.assertEqual(WWN, info['data']['wwpn'])

    def test_disconnect_deletes_the_endpoint_from_the_data_alone(self):
        info = connection_info()
        self.driver._disconnect_volume(None, info, self.instance)
        self.connector.disconnect_volume.assert_called_once_with(
            info['data'], None, force=False)

    def test_a_held_endpoint_fails_the_disconnect(self):
        self.connector.disconnect_volume.side_effect = \
            exception.EndpointInUse(wwn=WWN, reason='QEMU holds it')
        self.assertRaises(exception.EndpointInUse,
                          self.driver._disconnect_volume, None,
                          connection_info(), self.instance)

    def test_multiattach_is_refused_before_anything_is_exported(self):
        self.assertRaises(nova_exception.MultiattachNotSupportedByVirtDriver,
                          self.driver._connect_volume, None,
                          connection_info(multiattach=True), self.instance)
        self.connector.connect_volume.assert_not_called()

    def test_front_end_qos_is_refused_before_anything_is_exported(self):
        info = connection_info()
        info['data']['qos_specs'] = {'total_iops_sec': '500'}
        err = self.assertRaises(nova_exception.InvalidVolume,
                                self.driver._connect_volume, None, info,
                                self.instance)
        self.assertIn('front-end QoS', str(err))
        self.connector.connect_volume.assert_not_called()

    def test_encryption_is_refused_before_anything_is_exported(self):
        self.assertRaises(nova_exception.VolumeEncryptionNotSupported,
                          self.driver._connect_volume, None,
                          connection_info(), self.instance,
                          encryption={'provider': 'luks'})
        self.connector.connect_volume.assert_not_called()

    def test_extend_returns_the_new_size_and_leaves_qemu_alone(self):
        self.connector.extend_volume.return_value = 2 << 30
        self.driver.extend_volume(None, connection_info(), self.instance,
                                  2 << 30)
        self.connector.extend_volume.assert_called_once_with(
            CONNECTION_INFO['data'])
        self.driver._host.get_guest.assert_not_called()


class DetachTestCase(NovaTestCase):
    """Nova's detach finds the hostdev in the domain by its alias."""

    def guest_with_the_volume(self):
        conf = self.volume_driver.get_config(connection_info(), {})
        return libvirt_guest.Guest(FakeDomain(DOMAIN % conf.to_xml()))

    def test_the_device_is_found_by_the_volumes_alias(self):
        found = self.driver._get_guest_disk_device(
            self.guest_with_the_volume(), 'sdb', volume_uuid=VOLUME_ID)
        self.assertIsInstance(found, vconfig.LibvirtConfigGuestHostdev)
        self.assertEqual(('ua-' + VOLUME_ID, WWN), (found.alias, found.wwpn))

    def test_what_nova_detaches_names_the_same_endpoint(self):
        guest = self.guest_with_the_volume()
        found = self.driver._get_guest_disk_device(guest, 'sdb',
                                                   volume_uuid=VOLUME_ID)
        parsed = vhost_nova.LibvirtConfigGuestHostdevVhost()
        parsed.parse_str(found.to_xml())
        self.assertEqual((WWN, 'ua-' + VOLUME_ID),
                         (parsed.wwn, parsed.alias))

    def test_another_volume_is_not_found(self):
        self.assertIsNone(self.driver._get_guest_disk_device(
            self.guest_with_the_volume(), 'sdc',
            volume_uuid='6b0a2f3e-0000-4000-8000-000000000000'))


class ConnectorTestCase(NovaTestCase):
    """Nova's connector tells the Cinder target whether vhost can serve."""

    def connector_where(self, vhost_device_exists):
        real_exists = os.path.exists
        with mock.patch.object(libvirt_driver.connector,
                               'get_connector_properties',
                               return_value={'host': 'compute-1'}), \
                mock.patch('os.path.exists', side_effect=lambda path: (
                    vhost_device_exists if path == '/dev/vhost-scsi'
                    else real_exists(path))):
            return self.driver.get_volume_connector(self.instance)

    def target(self):
        configuration = mock.Mock(vhost_discard=True)
        return cinder_target.VhostTarget(configuration=configuration,
                                         host='compute-1',
                                         vhost_executor=mock.Mock())

    def test_a_host_with_vhost_scsi_is_accepted_by_the_target(self):
        connector = self.connector_where(True)
        self.assertIs(True, connector['vhost_scsi'])
        self.assertTrue(self.target().validate_connector(connector))

    def test_a_host_without_it_is_refused_by_the_target(self):
        connector = self.connector_where(False)
        self.assertIs(False, connector['vhost_scsi'])
        with mock.patch.dict(sys.modules, {'cinder': None}):
            err = self.assertRaises(exception.InvalidConnector,
                                    self.target().validate_connector,
                                    connector)
        self.assertIn('vhost_scsi', str(err))


class RefusalTestCase(NovaTestCase):
    """What a vhost volume cannot do is refused in Nova's API."""

    def api_call(self, method, *args, bdm_types=('vhost',)):
        bdms = [mock.Mock(is_volume=True, connection_info=(
            '{"driver_volume_type": "%s"}' % kind)) for kind in bdm_types]
        instance = mock.Mock(uuid=self.instance.uuid, locked=False,
                             vm_state='active', task_state=None)
        api = compute_api.API.__new__(compute_api.API)
        with mock.patch.object(compute_api.objects.BlockDeviceMappingList,
                               'get_by_instance_uuid', return_value=bdms):
            return method(api, mock.Mock(is_admin=True), instance, *args)

    def test_swap_volume_is_refused(self):
        err = self.assertRaises(
            nova_exception.OperationNotSupportedForVhostVolume,
            self.api_call, compute_api.API.swap_volume, {'id': 'a'},
            {'id': 'b'})
        self.assertIn('swap_volume', str(err))

    def test_the_refusal_passes_instances_without_vhost_volumes(self):
        decorated = compute_api.reject_vhost_volume_instances('x')(
            lambda self, context, instance: 'called')
        self.assertEqual('called', self.api_call(decorated,
                                                 bdm_types=('iscsi',)))
        self.assertRaises(nova_exception.OperationNotSupportedForVhostVolume,
                          self.api_call, decorated)

    def test_nova_api_answers_the_refusal_with_a_400(self):
        instance_uuid = self.instance.uuid

        class Controller:
            @nova_wsgi.expected_errors(())
            def action(self, req):
                raise nova_exception.OperationNotSupportedForVhostVolume(
                    instance_uuid=instance_uuid, operation='live-migration')

        request = mock.Mock(api_version_request=(
            api_version_request.APIVersionRequest('2.1')))
        err = self.assertRaises(webob.exc.HTTPBadRequest,
                                Controller().action, request)
        self.assertIn("'live-migration' not supported for instance with "
                      "vhost volumes", err.explanation)

    def test_live_migration_is_not_refused_in_the_api(self):
        # Nova's live_migrate takes a dozen guards, each reading more of a
        # real instance; ours is not among them: the driver decides.
        self.assertEqual([], refused_operations(compute_api.API.live_migrate))

    def test_swap_volume_is_guarded_as_swap_volume(self):
        self.assertEqual(['swap_volume'],
                         refused_operations(compute_api.API.swap_volume))


class LiveMigrationTestCase(NovaTestCase):
    """Nova's live migration steps, on an instance with a vhost volume.

    A shared volume (its inner connector attaches over a network) follows
    the guest; one on a device of the source host alone is refused at
    Nova's pre-check, before anything starts.
    """

    def block_device_info(self, info):
        """What Nova's compute manager passes: the volume's BDM."""
        bdm = objects.BlockDeviceMapping(
            source_type='volume', destination_type='volume',
            volume_id=VOLUME_ID, device_name='/dev/sdb', disk_bus='scsi',
            device_type='disk', boot_index=None, guest_format=None,
            attachment_id=None, delete_on_termination=False,
            no_device=False, snapshot_id=None, image_id=None,
            volume_size=1, volume_type=None, tag=None,
            connection_info=jsonutils.dumps(info))
        volume = driver_block_device.DriverVolumeBlockDevice(bdm)
        # Nova's block device keeps the connection_info it decoded.
        volume['connection_info'] = info
        return {'block_device_mapping': [volume]}

    def guest_xml(self, info):
        """What Nova's _get_guest_xml defines for the instance."""
        conf = mock.Mock(name='LibvirtConfigGuest')
        conf.to_xml.return_value = DOMAIN % self.volume_driver.get_config(
            info, {}).to_xml()
        with mock.patch.object(self.driver, '_get_guest_config',
                               return_value=conf):
            return self.driver._get_guest_xml(
                None, self.instance, [], {}, None,
                block_device_info=self.block_device_info(info))

    def check_source(self, domain_xml, info):
        """Nova's check_can_live_migrate_source, up to its own checks."""
        self.driver._host.get_guest.return_value = libvirt_guest.Guest(
            FakeDomain(domain_xml))
        with mock.patch.object(self.driver, '_check_shared_storage_test_file',
                               side_effect=NovaChecksReached) as nova_checks:
            self.driver.check_can_live_migrate_source(
                None, self.instance, mock.Mock(filename='test'),
                block_device_info=self.block_device_info(info))
        return nova_checks

    def test_the_domain_of_a_shared_volume_is_migratable(self):
        self.connector.migratable = True
        self.assertTrue(attach.libvirt_domain_migratable(
            self.guest_xml(connection_info())))

    def test_the_domain_of_a_host_local_volume_is_left_alone(self):
        xml = self.guest_xml(connection_info())
        self.assertFalse(attach.libvirt_domain_migratable(xml))
        self.assertIn(WWN, xml)

    def test_a_shared_volume_passes_on_to_novas_own_checks(self):
        self.connector.migratable = True
        info = connection_info()
        self.assertRaises(NovaChecksReached, self.check_source,
                          self.guest_xml(info), info)

    def test_a_host_local_volume_is_refused_naming_it(self):
        info = connection_info()
        err = self.assertRaises(nova_exception.MigrationPreCheckError,
                                self.check_source, self.guest_xml(info),
                                info)
        self.assertIn('vhost volume %s is on a device of this host alone'
                      % VOLUME_ID, str(err))
        self.assertIn('LOCAL connector', str(err))

    def test_a_shared_volume_in_a_domain_started_without_it_is_refused(self):
        # Hot-plugged into a guest that had no migratable vhost volume
        # when it started: QEMU would block the migration.
        self.connector.migratable = True
        info = connection_info()
        plain = DOMAIN % self.volume_driver.get_config(info, {}).to_xml()
        err = self.assertRaises(nova_exception.MigrationPreCheckError,
                                self.check_source, plain, info)
        self.assertIn('hard reboot', str(err))

    def test_instances_without_vhost_volumes_are_not_asked(self):
        info = dict(connection_info(), driver_volume_type='iscsi')
        with mock.patch.object(self.driver, '_get_volume_driver') as get:
            self.assertRaises(NovaChecksReached, self.check_source,
                              DOMAIN % '', info)
        get.assert_not_called()

    def test_the_destination_connects_from_the_stored_data(self):
        info = connection_info()
        migrate_data = objects.LibvirtLiveMigrateData(
            is_shared_block_storage=True, is_shared_instance_path=True,
            block_migration=False)
        # Not encrypted: no libvirt secret here, none in Cinder's metadata.
        self.driver._host.find_secret.return_value = None
        with mock.patch.object(self.driver, '_get_volume_encryption',
                               return_value={}), \
                mock.patch.object(self.driver,
                                  '_pre_live_migration_plug_vifs'), \
                mock.patch.object(self.driver, '_supported_perf_events',
                                  [], create=True):
            self.driver.pre_live_migration(
                None, self.instance, self.block_device_info(info), [],
                None, migrate_data)
        self.connector.connect_volume.assert_called_once_with(info['data'])
        self.assertEqual(WWN, info['data']['wwpn'])

    def test_the_migration_xml_keeps_the_hostdev_and_the_setting(self):
        # What Nova's _live_migration gives libvirt for the destination:
        # the running domain's XML, updated for the destination host.
        self.connector.migratable = True
        info = connection_info()
        # libvirt gives the running domain's XML as it would migrate it.
        guest = mock.Mock(name='Guest')
        guest.get_xml_desc.return_value = self.guest_xml(info)
        migrate_data = objects.LibvirtLiveMigrateData(
            serial_listen_addr='127.0.0.1', serial_listen_ports=[],
            supported_perf_events=[], bdms=[])
        instance = mock.Mock(flavor=mock.Mock(extra_specs={}))
        xml = libvirt_migration.get_updated_guest_xml(
            instance, guest, migrate_data, self.driver._get_volume_config)
        guest.get_xml_desc.assert_called_once_with(dump_migratable=True)
        self.assertTrue(attach.libvirt_domain_migratable(xml))
        self.assertEqual(
            [(WWN, 'ua-' + VOLUME_ID)],
            [(hostdev.find('source').get('wwpn'),
              hostdev.find('alias').get('name'))
             for hostdev in etree.fromstring(xml).iter('hostdev')])

    def test_the_source_disconnects_after_the_switchover(self):
        info = connection_info()
        self.driver.post_live_migration(None, self.instance,
                                        self.block_device_info(info))
        self.connector.disconnect_volume.assert_called_once_with(
            info['data'], None, force=False)

    def test_a_failed_migration_disconnects_the_destination(self):
        # Nova's rollback at the destination destroys the QEMU waiting
        # there and cleans up: the volume is disconnected, as at a delete.
        info = connection_info()
        migrate_data = objects.LibvirtLiveMigrateData(
            is_shared_block_storage=True, is_shared_instance_path=True,
            block_migration=False)
        with mock.patch.object(self.driver, '_destroy') as destroyed, \
                mock.patch.object(self.driver, '_device_event_handler',
                                  create=True), \
                mock.patch.object(self.driver, '_get_vpmems',
                                  return_value=[]), \
                mock.patch.object(self.driver, '_unplug_vifs'), \
                mock.patch.object(self.driver, '_undefine_domain'), \
                mock.patch.object(self.driver, 'instance_claimed_mdevs',
                                  {}, create=True):
            self.driver.rollback_live_migration_at_destination(
                None, self.instance, [], self.block_device_info(info),
                destroy_disks=False, migrate_data=migrate_data)
        destroyed.assert_called_once_with(self.instance)
        self.connector.disconnect_volume.assert_called_once_with(
            info['data'], None, force=True)


class NovaChecksReached(Exception):
    """Nova's check went past the vhost volumes to its own checks."""


def refused_operations(method):
    """The operations reject_vhost_volume_instances guards method as."""
    guard = compute_api.reject_vhost_volume_instances('any')(
        lambda self, context, instance: None).__code__
    operations = []
    while method is not None:
        if method.__code__ is guard:
            cells = dict(zip(method.__code__.co_freevars,
                             (cell.cell_contents
                              for cell in method.__closure__)))
            operations.append(cells['operation'])
        method = getattr(method, '__wrapped__', None)
    return operations


@unittest.skipIf(NOVA_MISSING, NOVA_MISSING)
class SchemaTestCase(base.TestCase):
    """What Nova attaches validates against libvirt's own schema."""

    def test_the_domain_with_the_hostdev_validates(self):
        if not shutil.which('virt-xml-validate'):
            self.skipTest('virt-xml-validate missing: apt-get install '
                          'libvirt-clients libxml2-utils (.ci/run does)')
        conf = nova_driver()._get_volume_config(connection_info(), {})
        path = self.useFixture(fixtures.TempDir()).path + '/domain.xml'
        with open(path, 'w') as domain:
            domain.write(DOMAIN % conf.to_xml())
        result = subprocess.run(['virt-xml-validate', path, 'domain'],
                                capture_output=True, text=True)
        self.assertEqual(0, result.returncode, result.stderr)
