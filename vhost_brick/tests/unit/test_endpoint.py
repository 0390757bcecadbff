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

import dataclasses
import json

from vhost_brick import endpoint
from vhost_brick.tests import base


def make_endpoint():
    return endpoint.VhostEndpoint(
        wwn='naa.5001405000000001', tpgt=1, nexus='naa.5001405000000002',
        luns=[endpoint.VhostLun(lun=0, device_path='/dev/disk/by-id/x',
                                backstore='vhost-brick-5001405000000001',
                                serial='volume-1', read_only=True,
                                discard=True)])


class EndpointTestCase(base.TestCase):

    def test_luns_become_a_tuple(self):
        self.assertIsInstance(make_endpoint().luns, tuple)

    def test_endpoint_is_immutable(self):
        ep = make_endpoint()
        self.assertRaises(dataclasses.FrozenInstanceError,
                          setattr, ep, 'wwn', 'naa.5001405000000003')
        self.assertRaises(dataclasses.FrozenInstanceError,
                          setattr, ep.luns[0], 'lun', 1)

    def test_to_dict_is_json_ready(self):
        self.assertEqual(
            {'wwn': 'naa.5001405000000001', 'tpgt': 1,
             'nexus': 'naa.5001405000000002',
             'luns': [{'lun': 0, 'device_path': '/dev/disk/by-id/x',
                       'backstore': 'vhost-brick-5001405000000001',
                       'serial': 'volume-1', 'read_only': True,
                       'discard': True}]},
            json.loads(json.dumps(make_endpoint().to_dict())))

    def test_from_dict_round_trips(self):
        ep = make_endpoint()
        self.assertEqual(ep, endpoint.VhostEndpoint.from_dict(ep.to_dict()))

    def test_endpoints_are_hashable(self):
        self.assertEqual(1, len({make_endpoint(), make_endpoint()}))
