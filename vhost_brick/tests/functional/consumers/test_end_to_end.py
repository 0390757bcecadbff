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

"""Debian 12's libvirt (9.0) runs a domain from vhost_brick's endpoints."""

import os

from vhost_brick import attach
from vhost_brick import exception
from vhost_brick.tests.functional import base
from vhost_brick.tests.functional.consumers import libvirt_host


def read_sector(path, number):
    with open(path, 'rb') as backing:
        backing.seek(number * 512)
        return backing.read(512).rstrip(b'\0').decode(errors='replace')


def write_sector(path, number, text):
    with open(path, 'r+b') as backing:
        backing.seek(number * 512)
        backing.write(text.encode().ljust(512, b'\0'))


class LibvirtDomainTestCase(base.FunctionalTestCase):
    """One domain's life under libvirt, from boot to destroy.

    A domain boot under nested TCG costs one to three minutes, so one
    ordered scenario boots a single domain and checks each stage of its
    life on it: boot from an endpoint, live attach, refused deletes,
    live detach, destroy. Every assertion names the stage that failed.
    """

    def setUp(self):
        super().setUp()
        self.libvirt = self.useFixture(libvirt_host.LibvirtHost())

    def disk(self, sector0):
        return self.useFixture(base.LoopDevice(size=64 << 20,
                                               data=sector0.encode()))

    def test_endpoints_serve_a_domain_and_are_kept_while_it_uses_them(self):
        before = base.configfs_snapshot()
        boot_sector0 = 'boot-sector0-' + os.urandom(8).hex()
        hot_sector0 = 'hot-sector0-' + os.urandom(8).hex()
        marker = 'guest-wrote-' + os.urandom(8).hex()
        boot_disk = self.disk(boot_sector0)
        hot_disk = self.disk(hot_sector0)
        boot = self.create(boot_disk.path)
        hot = self.create(hot_disk.path)
        boot_xml = attach.libvirt_hostdev_xml(boot)
        hot_xml = attach.libvirt_hostdev_xml(hot)
        domain = libvirt_host.LibvirtDomain([boot_xml], marker)
        self.addCleanup(domain.destroy)
        domain.start()

        # 1. The domain boots with the endpoint as its disk; data flows
        # both ways.
        self.assertEqual(
            'sda sector0=' + boot_sector0, domain.expect('sda sector0='),
            'boot: the guest did not read what the host wrote')
        self.assertEqual('sda written', domain.expect('sda writ'),
                         'boot: the guest could not write its disk')
        self.assertEqual(marker, read_sector(boot_disk.backing_file, 16),
                         'boot: the guest write did not reach the device')

        # 2. A live attach of a second endpoint reaches the guest.
        domain.attach_device(hot_xml)
        self.assertEqual(
            'sdb sector0=' + hot_sector0, domain.expect('sdb sector0='),
            'attach: the guest did not read the hot-plugged disk')
        self.assertIn(hot.wwn, domain.live_status(),
                      'attach: libvirt has no live status of the hostdev')
        self.assertNotIn(hot.wwn, domain.qemu_command_line(),
                         'attach: the hot-plugged WWN is on QEMU\'s command '
                         'line, not only in libvirt\'s live status')

        # 3. Neither endpoint can be deleted under the running guest,
        # which keeps reading both disks.
        for endpoint, disk, name in ((boot, boot_disk, 'sda'),
                                     (hot, hot_disk, 'sdb')):
            snapshot = base.configfs_snapshot()
            with self.assertRaises(exception.EndpointInUse,
                                   msg='in use: %s was deleted' % name):
                self.executor.delete_endpoint(endpoint.wwn)
            self.assertEqual(snapshot, base.configfs_snapshot(),
                             'in use: a refused delete of %s changed '
                             'configfs' % name)
            self.assertEqual('running', domain.state(),
                             'in use: the domain stopped after a refused '
                             'delete of %s' % name)
            fresh = 'after-refusal-' + os.urandom(8).hex()
            write_sector(disk.backing_file, 32, fresh)
            self.assertEqual(fresh, domain.read_sector(name, 32),
                             'in use: the guest lost %s after a refused '
                             'delete' % name)

        # 4. After a live detach, the second endpoint can go.
        domain.detach_device(hot_xml, gone_mark=hot.wwn)
        self.assertEqual('sdb gone', domain.expect('sdb gone'),
                         'detach: the guest still has the disk')
        self.executor.delete_endpoint(hot.wwn)
        self.assertNotIn(hot.wwn, base.vhost_targets(),
                         'detach: the endpoint was not deleted')
        self.assertEqual('running', domain.state(),
                         'detach: the domain stopped')

        # 5. Once the domain is destroyed, nothing is left behind.
        domain.destroy()
        self.assertFalse(domain.is_defined(),
                         'destroy: libvirt still lists the domain')
        self.executor.delete_endpoint(boot.wwn)
        self.assertEqual(self.targets_before, base.vhost_targets(),
                         'destroy: a vhost target is left')
        self.assertEqual(before, base.configfs_snapshot(),
                         'destroy: configfs differs from before the test')
