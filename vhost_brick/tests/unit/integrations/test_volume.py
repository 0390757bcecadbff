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

from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick.integrations import volume
from vhost_brick.tests import base
from vhost_brick import validation


VOLUME_ID = '0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b'
DEVICE = '/dev/vg/volume-1'


class VolumeWWNTestCase(base.TestCase):

    def test_is_a_valid_lio_wwn(self):
        wwn = volume.volume_wwn(VOLUME_ID)
        self.assertEqual(wwn, validation.validate_wwn(wwn))
        self.assertTrue(wwn.startswith('naa.5001405'))

    def test_is_pinned(self):
        # Existing endpoints are found by this name: it must never change.
        self.assertEqual('naa.50014056f65bd12a', volume.volume_wwn(VOLUME_ID))

    def test_differs_between_volumes(self):
        self.assertNotEqual(volume.volume_wwn(VOLUME_ID),
                            volume.volume_wwn(VOLUME_ID[:-1] + 'c'))

    def test_needs_a_volume_id(self):
        for missing in (None, ''):
            self.assertRaises(exception.Invalid, volume.volume_wwn, missing)


class ExportTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.vhost = mock.Mock()

    def test_without_volume_id_the_serial_is_generated(self):
        volume.export(self.vhost, DEVICE, wwn='naa.5001405000000001')
        self.vhost.create_endpoint.assert_called_once_with(
            DEVICE, wwn='naa.5001405000000001', serial=None, read_only=False,
            discard=None)

    def test_an_endpoint_without_luns_is_refused(self):
        self.vhost.create_endpoint.side_effect = exception.EndpointExists(
            wwn='naa.5001405000000001', reason='it exports no device')
        self.vhost.get_endpoint.return_value = endpoint.VhostEndpoint(
            'naa.5001405000000001', 1, 'naa.5001405000000002', [])
        self.assertRaises(exception.EndpointExists, volume.export,
                          self.vhost, DEVICE, VOLUME_ID)
