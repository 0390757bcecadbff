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

import sys
from unittest import mock

from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick import executor
from vhost_brick.integrations import cinder_target
from vhost_brick.integrations import volume as volume_export
from vhost_brick.tests import base


VOLUME_ID = '6f1a0b2e-1d3c-4c55-9f00-5b0e2f8b1a11'
WWN = volume_export.volume_wwn(VOLUME_ID)
PATH = '/dev/cinder-volumes/volume-' + VOLUME_ID
CONNECTOR = {'host': 'compute-1', 'vhost_scsi': True}


class FakeConfiguration:
    """What the target uses of a Cinder backend's Configuration."""

    def __init__(self, **values):
        self.values = values
        self.appended = []

    def append_config_values(self, options):
        self.appended.extend(options)

    def safe_get(self, name):
        defaults = {option.name: option.default for option in self.appended}
        return self.values.get(name, defaults.get(name))


class FakeVolume(dict):
    """What the target reads of a Cinder Volume: attributes and get()."""

    def __getattr__(self, name):
        return self[name]


def make_volume(volume_id=VOLUME_ID, **fields):
    return FakeVolume(id=volume_id, name='volume-' + volume_id,
                      host='compute-1@lvm#lvm', size=1, **fields)


def make_endpoint(serial=VOLUME_ID, read_only=False, device=PATH,
                  discard=True):
    return endpoint.VhostEndpoint(
        WWN, 1, 'naa.5001405000000002',
        [endpoint.VhostLun(0, device, 'vhost-brick-x', serial, read_only,
                           discard)])


class VhostTargetTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.vhost = mock.Mock()
        self.target = cinder_target.VhostTarget(
            configuration=FakeConfiguration(), root_helper='sudo',
            host='compute-1', vhost_executor=self.vhost)
        self.volume = make_volume()
        self.ep = make_endpoint()
        self.vhost.create_endpoint.return_value = self.ep
        self.vhost.get_endpoint.return_value = self.ep

    def test_create_export_returns_what_cinder_drivers_store(self):
        self.assertEqual({'location': WWN, 'auth': None},
                         self.target.create_export(None, self.volume, PATH))

    def test_create_export_names_the_endpoint_and_serial_by_volume_id(self):
        self.target.create_export(None, self.volume, PATH)
        self.vhost.create_endpoint.assert_called_once_with(
            PATH, wwn=WWN, serial=VOLUME_ID, read_only=False,
            discard=None)

    def test_create_export_of_a_read_only_volume_is_read_only(self):
        volume = make_volume(admin_metadata={'readonly': 'True'})
        self.target.create_export(None, volume, PATH)
        self.vhost.create_endpoint.assert_called_once_with(
            PATH, wwn=WWN, serial=VOLUME_ID, read_only=True,
            discard=None)

    def test_create_export_gives_discard_as_the_device_has_it(self):
        self.target.create_export(None, self.volume, PATH)
        self.assertIsNone(
            self.vhost.create_endpoint.call_args.kwargs['discard'])

    def test_a_backend_without_discard_hides_it_from_guests(self):
        target = cinder_target.VhostTarget(
            configuration=FakeConfiguration(vhost_discard=False),
            host='compute-1', vhost_executor=self.vhost)
        target.create_export(None, self.volume, PATH)
        self.assertIs(False,
                      self.vhost.create_endpoint.call_args.kwargs['discard'])

    def test_initialize_connection_reports_the_discard_exported(self):
        for discard in (True, False):
            self.vhost.get_endpoint.return_value = make_endpoint(
                discard=discard)
            info = self.target.initialize_connection(self.volume, CONNECTOR)
            self.assertIs(discard, info['data']['discard'])

    def test_ensure_export_recreates_the_same_endpoint(self):
        self.target.ensure_export(None, self.volume, PATH)
        self.vhost.create_endpoint.assert_called_once_with(
            PATH, wwn=WWN, serial=VOLUME_ID, read_only=False,
            discard=None)

    def test_ensure_export_keeps_an_endpoint_made_before_serials(self):
        self.vhost.create_endpoint.side_effect = exception.EndpointExists(
            wwn=WWN, reason='its LUN has serial 5001405abcdef012')
        self.vhost.get_endpoint.return_value = make_endpoint(
            serial='5001405abcdef012')
        self.target.ensure_export(None, self.volume, PATH)
        self.vhost.get_endpoint.assert_called_once_with(WWN)

    def test_ensure_export_refuses_an_endpoint_of_another_device(self):
        self.vhost.create_endpoint.side_effect = exception.EndpointExists(
            wwn=WWN, reason='it exports /dev/vg/other')
        self.vhost.get_endpoint.return_value = make_endpoint(
            serial='other', device='/dev/vg/other')
        self.assertRaises(exception.EndpointExists,
                          self.target.ensure_export, None, self.volume, PATH)

    def test_remove_export(self):
        self.target.remove_export(None, self.volume)
        self.vhost.delete_endpoint.assert_called_once_with(WWN)

    def test_remove_export_refused_while_in_use(self):
        self.vhost.delete_endpoint.side_effect = exception.EndpointInUse(
            wwn=WWN)
        self.assertRaises(exception.EndpointInUse,
                          self.target.remove_export, None, self.volume)

    def test_initialize_connection(self):
        info = self.target.initialize_connection(self.volume, CONNECTOR)
        self.assertEqual(
            {'driver_volume_type': 'vhost',
             'data': {'wwpn': WWN, 'tpgt': 1, 'lun': 0,
                      'nexus': self.ep.nexus, 'device_path': PATH,
                      'backstore': 'vhost-brick-x', 'discard': True,
                      'volume_id': VOLUME_ID}},
            info)
        self.vhost.get_endpoint.assert_called_once_with(WWN)

    def refusal(self, call, *args):
        """The InvalidConnector call raises where Cinder is not installed."""
        with mock.patch.dict(sys.modules, {'cinder': None}):
            return self.assertRaises(exception.InvalidConnector, call, *args)

    def test_connector_of_another_host_is_refused(self):
        for connector in (dict(CONNECTOR, host='compute-2'), {}, None):
            err = self.refusal(self.target.initialize_connection,
                               self.volume, connector)
            self.assertIn('host', str(err))
        self.vhost.get_endpoint.assert_not_called()

    def test_connector_without_vhost_support_is_refused(self):
        for connector in ({'host': 'compute-1'},
                          dict(CONNECTOR, vhost_scsi=False)):
            err = self.refusal(self.target.validate_connector, connector)
            self.assertIn("vhost_scsi: not true: os-brick's own "
                          "get_connector_properties never sets it", str(err))

    def test_terminate_connection_keeps_the_endpoint(self):
        self.target.terminate_connection(self.volume, CONNECTOR)
        self.assertEqual([], self.vhost.method_calls)

    def test_are_same_connector(self):
        same = cinder_target.VhostTarget.are_same_connector
        self.assertTrue(same({'host': 'a'}, {'host': 'a'}))
        self.assertFalse(same({'host': 'a'}, {'host': 'b'}))
        self.assertFalse(same({}, {}))

    def test_protocol(self):
        self.assertEqual(('vhost', 'vhost'), (self.target.protocol,
                                              self.target.storage_protocol))


class ConstructionTestCase(base.TestCase):
    """What a target built the way Cinder builds it gets."""

    def without_cinders_options(self):
        """A target built where no Cinder (nor Nova) options exist.

        Nova, which the nova environment imports, registers a
        rootwrap_config of its own.
        """
        with mock.patch.object(cinder_target, '_cinder_option',
                               lambda name, default: default):
            return cinder_target.VhostTarget(
                configuration=FakeConfiguration())

    def test_default_root_helper_is_cinders(self):
        target = self.without_cinders_options()
        self.assertEqual('sudo cinder-rootwrap /etc/cinder/rootwrap.conf',
                         target.vhost._root_helper)

    def test_a_cinder_user_starts_the_daemon_through_cinder_rootwrap(self):
        target = self.without_cinders_options()
        with mock.patch('os.geteuid', return_value=1000):
            self.assertEqual(
                ['sudo', 'cinder-rootwrap', '/etc/cinder/rootwrap.conf'],
                target.vhost._daemon_prefix())

    def test_cinder_as_root_starts_the_daemon_without_cinder_rootwrap(self):
        target = cinder_target.VhostTarget(configuration=FakeConfiguration())
        with mock.patch('os.geteuid', return_value=0):
            self.assertEqual([], target.vhost._daemon_prefix())

    def test_cinders_executor_is_not_used_in_privsep_mode(self):
        target = cinder_target.VhostTarget(configuration=FakeConfiguration(),
                                           executor=mock.Mock())
        self.assertIsInstance(target.vhost, executor.VhostExecutor)
        self.assertFalse(target.vhost._explicit_execute)

    def test_cinders_executor_is_used_in_helper_mode(self):
        self.conf.config(privileged_mode='helper', group='vhost_brick')
        execute = mock.Mock()
        target = cinder_target.VhostTarget(configuration=FakeConfiguration(),
                                           executor=execute,
                                           root_helper='sudo x')
        self.assertIs(execute, target.vhost._execute)
        self.assertEqual('sudo x', target.vhost._root_helper)

    def test_outside_cinder_host_defaults_to_this_hosts_name(self):
        # Where Cinder runs, its own host option is the default instead
        # (test_cinder_classes).
        with mock.patch('socket.gethostname', return_value='compute-9'), \
                mock.patch.object(cinder_target, '_cinder_option',
                                  lambda name, default: default):
            target = cinder_target.VhostTarget()
        self.assertEqual('compute-9', target.host)
