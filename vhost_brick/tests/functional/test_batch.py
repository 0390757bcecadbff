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

"""Batch create and delete against the real kernel, as root."""

import json
import subprocess

from vhost_brick import exception
from vhost_brick.tests.functional import base


class CreateManyTestCase(base.FunctionalTestCase):

    def delete_at_cleanup(self, report):
        self.addCleanup(self.executor.delete_endpoints,
                        [ep.wwn for ep in report.created])

    def test_each_endpoint_is_created_as_a_single_create_would(self):
        disks = [self.make_disk() for _ in range(4)]
        report = self.executor.create_endpoints(
            [{'device_path': disk} for disk in disks[:3]] +
            [{'device_path': disks[3], 'wwn': 'NAA.5001405B00000001',
              'nexus': 'naa.5001405b00000002'}])
        self.delete_at_cleanup(report)
        self.assertEqual((), report.failed)
        self.assertEqual(disks, [ep.luns[0].device_path
                                 for ep in report.created])
        self.assertEqual('naa.5001405b00000001', report.created[3].wwn)
        self.assertEqual('naa.5001405b00000002', report.created[3].nexus)
        for ep in report.created:
            self.assertEqual(ep, self.executor.get_endpoint(ep.wwn))

    def test_a_failed_endpoint_is_reported_and_the_others_created(self):
        busy = self.make_disk()
        exported = self.create(busy)
        good = [self.make_disk(), self.make_disk()]
        report = self.executor.create_endpoints(
            [{'device_path': good[0]}, {'device_path': busy},
             {'device_path': good[1]}])
        self.delete_at_cleanup(report)
        self.assertEqual(good, [ep.luns[0].device_path
                                for ep in report.created])
        [failure] = report.failed
        self.assertEqual(busy, failure.item['device_path'])
        self.assertIsInstance(failure.error, exception.DeviceInUse)
        self.assertEqual(exported, self.executor.get_endpoint(exported.wwn))
        self.assertEqual({exported.wwn} | {ep.wwn for ep in report.created},
                         base.vhost_targets() - self.targets_before)

    def test_invalid_batch_changes_nothing(self):
        disk = self.make_disk()
        before = base.configfs_snapshot()
        self.assertRaises(exception.InvalidNexus,
                          self.executor.create_endpoints,
                          [{'device_path': disk},
                           {'device_path': self.make_disk(),
                            'nexus': 'naa.6001405b00000002'}])
        self.assertEqual(before, base.configfs_snapshot())

    def test_helper_refuses_an_invalid_batch_itself(self):
        disk = self.make_disk()
        before = base.configfs_snapshot()
        for text, error in (
                ('[{"device_path": "%s"}, {"device_path": "%s"}]'
                 % (disk, disk), exception.Invalid),
                ('[{"device_path": "/etc/passwd"}]', exception.InvalidDevice),
                ('{"device_path": "%s"}' % disk, exception.Invalid),
                ('[{"device_path": ', exception.InvalidArgument)):
            result = subprocess.run(['vhost-brick-helper', 'create-many'],
                                    input=text, capture_output=True,
                                    text=True)
            self.assertEqual(error.helper_exit_code, result.returncode, text)
            self.assertEqual(error.__name__, json.loads(
                result.stderr.splitlines()[-1])['error'], text)
        self.assertEqual(before, base.configfs_snapshot())


class DeleteManyTestCase(base.FunctionalTestCase):

    def test_held_endpoint_is_reported_and_the_others_deleted(self):
        report = self.executor.create_endpoints(
            [{'device_path': self.make_disk()} for _ in range(3)])
        held, *others = [ep.wwn for ep in report.created]
        holder = self.hold_endpoint(held)
        absent = 'naa.5001405b000000ff'

        deleted = self.executor.delete_endpoints(others + [held, absent])

        self.release_endpoint(holder)
        self.addCleanup(self.executor.delete_endpoint, held)
        self.assertEqual(tuple(others), deleted.deleted)
        self.assertEqual((absent,), deleted.absent)
        [failure] = deleted.failed
        self.assertEqual(held, failure.item)
        self.assertIsInstance(failure.error, exception.EndpointInUse)
        self.assertEqual(report.created[0],
                         self.executor.get_endpoint(held))
        self.assertEqual({held}, base.vhost_targets() - self.targets_before)
