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

"""Live migration of a guest between two QEMUs on one endpoint.

Both QEMUs run in the test VM, on one kernel: the destination's endpoint
is the source's, as a shared device exported on two hosts under the same
WWN and serial would be. QEMU's vhost-scsi device hands the endpoint
over: the source clears it when it stops (the kernel completes its
in-flight commands then), the destination sets it when it starts.
"""

import os

from vhost_brick import exception
from vhost_brick.tests.functional import base
from vhost_brick.tests.functional import guest


class LiveMigrationTestCase(base.FunctionalTestCase):
    """A running guest moves to a second QEMU and goes on writing."""

    def setUp(self):
        super().setUp()
        self.sector0 = 'sector0-' + os.urandom(8).hex()
        self.disk = self.make_disk(size=16 << 20,
                                   data=self.sector0.encode())
        self.endpoint = self.executor.create_endpoint(self.disk)
        self.addCleanup(self.delete_if_there)
        self.uri = 'unix:/run/vhost-brick-migration-%s' % os.urandom(4).hex()

    def qemu(self, migratable, **kwargs):
        """A nested guest's QEMU on the endpoint; killed at cleanup."""
        qemu = guest.NestedGuest(self.endpoint, 'migrated',
                                 migratable=migratable, **kwargs)
        qemu.start()
        self.addCleanup(self.kill, qemu)
        return qemu

    @staticmethod
    def kill(qemu):
        if qemu.process.poll() is None:
            qemu.process.kill()
            qemu.process.wait(timeout=30)

    def delete_if_there(self):
        if self.endpoint.wwn in base.vhost_targets():
            self.executor.delete_endpoint(self.endpoint.wwn)

    def assertDeleteRefused(self):
        before = base.configfs_snapshot()
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, self.endpoint.wwn)
        self.assertEqual(before, base.configfs_snapshot())

    def block(self, number):
        """The guest's numbered write, read past the page cache."""
        return base.read_sector(self.disk, guest.NUMBERED_BLOCK + number)

    def test_acknowledged_writes_survive_the_migration(self):
        source = self.qemu(migratable=True)
        source.expect('written')
        source.run(guest.NUMBERED_WRITER + ' & true')
        source.expect('acked 5', timeout=120)
        destination = self.qemu(migratable=True, incoming=self.uri)
        self.assertIn('inmigrate', destination.monitor('info status'))
        self.assertDeleteRefused()

        info = source.migrate(self.uri)
        self.assertEqual('completed', info['migration status'], info)
        self.assertIn('postmigrate', source.monitor('info status'))
        source.monitor('quit')
        self.assertEqual(0, source.stop())
        self.assertDeleteRefused()  # the destination holds it now

        last_on_source = max(guest.acknowledged(source.console))
        destination.expect('acked %d' % (last_on_source + 5), timeout=120)
        status, lines = destination.run('touch /stop; wait')
        self.assertEqual(0, status, lines)
        on_destination = guest.acknowledged(destination.console)
        # What the guest's SCSI layer did about the switchover, if
        # anything (aborts, resets), for the record.
        status, scsi_log = destination.run('dmesg | grep -i -E '
                                           '"abort|reset|timing out|error"')
        print('migration: %s in all, %s downtime; acked %d writes on the '
              'source, %d on the destination; guest SCSI log: %s'
              % (info.get('total time'), info.get('downtime'),
                 last_on_source, len(on_destination), scsi_log or 'none'))

        self.assertEqual([], guest.failed_writes(source.console) +
                         guest.failed_writes(destination.console))
        # The writes went on where they stopped (a console line cut in
        # two by the switchover may be lost, not its write).
        self.assertIn(on_destination[0] - last_on_source, (1, 2))
        last = max(on_destination)
        self.assertEqual(['seq %08d' % n for n in range(1, last + 1)],
                         [self.block(n) for n in range(1, last + 1)])

        destination.release()
        self.assertEqual(0, destination.stop())
        self.executor.delete_endpoint(self.endpoint.wwn)
        self.assertNotIn(self.endpoint.wwn, base.vhost_targets())

    def test_without_migratable_qemu_refuses_to_migrate(self):
        qemu = self.qemu(migratable=None, paused=True)
        answer = qemu.monitor('migrate -d %s' % self.uri)
        self.assertIn('vhost-scsi does not support migration', answer)
        self.assertIn('prelaunch', qemu.monitor('info status'))
        qemu.monitor('quit')
        self.assertEqual(0, qemu.stop())
