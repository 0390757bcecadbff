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

"""Debian 12's libvirt and QEMU on what makes a vhost domain migratable.

libvirt leaves the decision to QEMU, which reports its migration
blockers (``query-migrate``'s ``blocked-reasons``): a vhost-scsi device
is one unless it is ``migratable``. The domains here are started, never
booted: a blocker is set when QEMU realizes the device, at its start or
at a hot-plug, whatever the guest does.
"""

import json

from vhost_brick import attach
from vhost_brick.tests.functional import base
from vhost_brick.tests.functional.consumers import libvirt_host

VHOST_BLOCKER = 'vhost-scsi does not support migration'


def blocked_reasons(domain):
    """What QEMU says keeps the domain from migrating ([] for nothing)."""
    answer = json.loads(libvirt_host.virsh(
        'qemu-monitor-command', domain.name, '{"execute": "query-migrate"}'))
    return answer['return'].get('blocked-reasons', [])


class MigratableDomainTestCase(base.FunctionalTestCase):
    """libvirt_migratable_xml lifts vhost-scsi's blocker, hot-plugs too."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if base.ENABLED:
            cls.libvirt = libvirt_host.LibvirtHost()
            cls.libvirt.setUp()
            cls.addClassCleanup(cls.libvirt.cleanUp)

    def domain(self, make_xml):
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
        domain, hot = self.domain(attach.libvirt_migratable_xml)
        self.assertEqual([], blocked_reasons(domain))
        self.hot_plug(domain, hot)
        self.assertEqual([], blocked_reasons(domain))
        self.assertIn('vhost-scsi-pci.migratable=on',
                      domain.qemu_command_line())

    def test_a_plain_domain_is_blocked_by_each_vhost_device(self):
        domain, hot = self.domain(lambda xml: xml)
        reasons = blocked_reasons(domain)
        self.assertEqual(1, len(reasons), reasons)
        self.assertIn(VHOST_BLOCKER, reasons[0])
        self.hot_plug(domain, hot)
        reasons = blocked_reasons(domain)
        self.assertEqual(2, len(reasons), reasons)
        self.assertTrue(all(VHOST_BLOCKER in reason for reason in reasons))

    def test_libvirt_keeps_the_setting_in_the_domain(self):
        domain, _ = self.domain(attach.libvirt_migratable_xml)
        self.assertTrue(attach.libvirt_domain_migratable(domain.dumpxml()))
        self.assertTrue(attach.libvirt_domain_migratable(
            domain.dumpxml(inactive=True)))
