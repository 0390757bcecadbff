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

"""Debian 12's libvirt live-migrating a domain on a vhost disk.

libvirt leaves the decision to QEMU, which reports its migration
blockers (``query-migrate``'s ``blocked-reasons``): a vhost-scsi device
is one unless it is ``migratable``. The domains of the blocker tests are
started, never booted: a blocker is set when QEMU realizes the device,
at its start or at a hot-plug, whatever the guest does. The migration
test boots one and moves it to a second libvirtd.
"""

import json
import os
import time

from vhost_brick import attach
from vhost_brick import exception
from vhost_brick import executor
from vhost_brick.tests.functional import base
from vhost_brick.tests.functional.consumers import libvirt_host

VHOST_BLOCKER = 'vhost-scsi does not support migration'


def blocked_reasons(domain):
    """What QEMU says keeps the domain from migrating ([] for nothing)."""
    answer = json.loads(libvirt_host.virsh(
        'qemu-monitor-command', domain.name, '{"execute": "query-migrate"}'))
    return answer['return'].get('blocked-reasons', [])


class LibvirtMigrationTestCase(base.FunctionalTestCase):
    """What makes a vhost domain migratable, and libvirt migrating one.

    Two libvirtd on one kernel (:class:`libvirt_host.SecondLibvirtHost`)
    stand for two compute hosts; the endpoint both QEMUs open is one, as
    a shared device exported on each host under the volume's WWN and
    serial would present one disk. The class starts the domain that
    migrates first, so that its boot overlaps the other tests, whose
    domains are never booted.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not base.ENABLED:
            return
        base.load_kernel_modules()
        cls.source = cls.class_fixture(libvirt_host.LibvirtHost())
        cls.destination = cls.class_fixture(libvirt_host.SecondLibvirtHost())
        cls.sector0 = 'sector0-' + os.urandom(8).hex()
        cls.marker = 'marker-' + os.urandom(8).hex()
        cls.disk = cls.class_fixture(base.LoopDevice(
            data=cls.sector0.encode()))
        vhost = executor.VhostExecutor(root_helper=None)
        cls.endpoint = vhost.create_endpoint(cls.disk.path)
        cls.addClassCleanup(vhost.delete_endpoint, cls.endpoint.wwn)
        cls.domain = libvirt_host.LibvirtDomain(
            [attach.libvirt_hostdev_xml(cls.endpoint, alias='ua-boot')],
            cls.marker)
        cls.domain.xml = attach.libvirt_migratable_xml(cls.domain.xml)
        cls.domain.start()
        cls.addClassCleanup(cls.domain.destroy)
        cls.addClassCleanup(cls.destroy_on_the_destination)

    @classmethod
    def destroy_on_the_destination(cls):
        if cls.domain.name in libvirt_host.virsh(
                'list', '--name', uri=cls.destination.uri).split():
            libvirt_host.virsh('destroy', cls.domain.name,
                               uri=cls.destination.uri)

    def never_booted(self, make_xml):
        """A started domain with one endpoint, and one to hot-plug."""
        at_start, hot = (self.create(self.make_disk()) for _ in range(2))
        domain = libvirt_host.LibvirtDomain(
            [attach.libvirt_hostdev_xml(at_start, alias='ua-boot')],
            'never-read')
        domain.xml = make_xml(domain.xml)
        domain.start()
        self.addCleanup(domain.destroy)
        return domain, hot

    def hot_plug(self, domain, endpoint):
        domain._virsh_with_xml(
            'attach-device', domain.name, '--live',
            xml=attach.libvirt_hostdev_xml(endpoint, alias='ua-hot'))

    def test_a_migratable_domain_has_no_blocker(self):
        domain, hot = self.never_booted(attach.libvirt_migratable_xml)
        self.assertEqual([], blocked_reasons(domain))
        self.hot_plug(domain, hot)
        self.assertEqual([], blocked_reasons(domain))
        self.assertIn('vhost-scsi-pci.migratable=on',
                      domain.qemu_command_line())

    def test_a_plain_domain_is_blocked_by_each_vhost_device(self):
        domain, hot = self.never_booted(lambda xml: xml)
        reasons = blocked_reasons(domain)
        self.assertEqual(1, len(reasons), reasons)
        self.assertIn(VHOST_BLOCKER, reasons[0])
        self.hot_plug(domain, hot)
        reasons = blocked_reasons(domain)
        self.assertEqual(2, len(reasons), reasons)
        self.assertTrue(all(VHOST_BLOCKER in reason for reason in reasons))

    def test_libvirt_keeps_the_setting_in_the_domain(self):
        domain, _ = self.never_booted(attach.libvirt_migratable_xml)
        self.assertTrue(attach.libvirt_domain_migratable(domain.dumpxml()))
        self.assertTrue(attach.libvirt_domain_migratable(
            domain.dumpxml(inactive=True)))

    def test_a_running_guest_moves_to_the_second_libvirtd(self):
        domain = self.domain
        self.assertEqual('sda sector0=' + self.sector0,
                         domain.expect('sda sector0='))
        domain.expect('sda written')

        started = time.monotonic()
        domain.migrate(self.destination.uri)
        took = time.monotonic() - started
        self.assertNotIn(domain.name, libvirt_host.virsh('list', '--name'))
        self.assertEqual('running', libvirt_host.virsh(
            'domstate', domain.name, uri=self.destination.uri))

        fresh = 'after-migration-' + os.urandom(8).hex()
        base.write_sector(self.disk.path, 32, fresh)
        domain.connect_console()
        self.assertEqual(fresh, domain.read_sector('sda', 32))
        self.assertEqual(self.marker, base.read_sector(self.disk.path, 16))
        print('libvirt migrated the domain in %.1f s' % took)
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, self.endpoint.wwn)
