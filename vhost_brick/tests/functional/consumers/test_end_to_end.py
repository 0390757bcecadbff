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

"""Cinder to a libvirt guest and back, through the os-brick connector.

Cinder's LVM driver creates and exports a volume, the connector attaches
it as Nova's libvirt driver would, and Debian 12's libvirt (9.0) boots a
domain from exactly :func:`vhost_brick.attach.libvirt_hostdev_xml` of
the endpoint. A second Cinder volume is hot-plugged and unplugged by
Nova 34 itself, with ``contrib/nova``'s patch applied: its
``LibvirtDriver``, with its ``Host`` on libvirt-python, picks the volume
driver, which exports the volume and gives the hostdev its ``Guest``
attaches, finds the hostdev again by alias in libvirt's live XML, and
detaches it with its own ``detach_volume``, which waits for libvirt's
device-removed event. libvirt runs QEMU as ``libvirt-qemu`` with its DAC
driver on, as ``libvirt-daemon-system`` configures it, and the domain is
hard-rebooted in Nova's order: stopped, every volume disconnected, then
connected again from the stored connection data alone.
"""

import os
import pwd

from vhost_brick import attach
from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick.integrations import connector
from vhost_brick import privileged
from vhost_brick.tests.functional import base
from vhost_brick.tests.functional.consumers import cinder_host
from vhost_brick.tests.functional.consumers import libvirt_host

# The compute service's root helper. Nova's would be nova-rootwrap; here
# Cinder and the compute side share one host and one rootwrap.
ROOT_HELPER = cinder_host.ROOT_HELPER
# libvirt-python for Nova's compute process: Debian's python3-libvirt,
# built for Debian's libvirt 9.0 and the ABI of Python 3.11. Only its
# modules join that process's path, not the rest of Debian's packages.
DEBIAN_PYTHON = '/usr/lib/python3/dist-packages'
LIBVIRT_PYTHON = ('libvirt.py', 'libvirt_qemu.py',
                  'libvirtmod.cpython-311-x86_64-linux-gnu.so',
                  'libvirtmod_qemu.cpython-311-x86_64-linux-gnu.so')


class NovaCompute(base.Agent):
    """Nova's compute process (nova_compute.py), on Nova's own Python."""

    def __init__(self):
        python = os.environ.get('VHOST_BRICK_NOVA_PYTHON', '')
        if not os.path.exists(python):
            raise AssertionError(
                'VHOST_BRICK_NOVA_PYTHON=%r: no Python of an environment '
                'with Nova and contrib/nova\'s patch (tox -e nova makes it)'
                % python)
        base.name_the_host()  # Nova's import checks it
        super().__init__(
            [python, '-m',
             'vhost_brick.tests.functional.consumers.nova_compute'],
            cwd='/', env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                filter(None, [libvirt_python(),
                              os.environ.get('PYTHONPATH')]))))

    def typed_result(self, name, *args):
        """The call's result; its refusal raised here as the same error."""
        answer = self.call(name, *args)
        if 'error' in answer:
            raise getattr(exception, answer['error'])(**answer['kwargs'])
        return answer['result']


def libvirt_python():
    """A directory holding (links to) Debian's libvirt-python modules."""
    directory = '/run/vhost-brick-libvirt-python'
    os.makedirs(directory, exist_ok=True)
    for name in LIBVIRT_PYTHON:
        source = os.path.join(DEBIAN_PYTHON, name)
        if not os.path.exists(source):
            raise AssertionError('%s is missing: Nova\'s compute process '
                                 'needs libvirt-python (apt-get install '
                                 'python3-libvirt)' % source)
        link = os.path.join(directory, name)
        if not os.path.lexists(link):
            os.symlink(source, link)
    return directory


def target_owner(wwn):
    """The uid owning the endpoint's vhost target directory in configfs."""
    return os.stat(os.path.join(base.VHOST, wwn)).st_uid


class EndToEndTestCase(base.FunctionalTestCase):
    """One volume's and one domain's life, from create_volume to delete.

    A domain boot under nested TCG costs one to three minutes, so one
    ordered scenario boots a single domain and checks each stage on it:
    Cinder's export, the connector's attach, the boot, a live attach,
    refused deletes and disconnects, a live detach, a hard reboot,
    destroy, the disconnect as Nova calls it, Cinder's teardown. Every
    assertion names the stage that failed.
    """

    def setUp(self):
        super().setUp()
        from cinder import context
        # The daemon is started by Cinder's target, through cinder-rootwrap.
        privileged.default.stop()
        self.addCleanup(privileged.default.stop)
        self.cinder = self.useFixture(cinder_host.CinderVolumeHost())
        self.libvirt = self.useFixture(libvirt_host.LibvirtHost())
        self.driver = self.cinder.make_driver(self.conf)
        self.context = context.get_admin_context()

    def test_a_cinder_volume_serves_a_libvirt_guest_end_to_end(self):
        before = base.configfs_snapshot()
        boot_sector0 = 'boot-sector0-' + os.urandom(8).hex()
        hot_sector0 = 'hot-sector0-' + os.urandom(8).hex()
        marker = 'guest-wrote-' + os.urandom(8).hex()

        # 1. Cinder creates the volume and exports it; Nova's connector
        # properties pass the target's check.
        volume = self.cinder.new_volume(self.context)
        self.driver.create_volume(volume)
        self.addCleanup(self.driver.delete_volume, volume)
        lv_path = self.cinder.lv_path(volume)
        base.write_sector(lv_path, 0, boot_sector0)
        properties = connector.get_connector_properties(
            ROOT_HELPER, '127.0.0.1', False, False,
            host=self.driver.target_driver.host)
        volume.update(self.driver.create_export(self.context, volume,
                                                properties))
        self.addCleanup(self.driver.remove_export, self.context, volume)
        self.driver.validate_connector(properties)
        connection_info = self.driver.initialize_connection(volume,
                                                            properties)
        self.assertEqual('vhost', connection_info['driver_volume_type'],
                         'cinder: not a vhost connection')

        # 2. The connector attaches it as Nova would: the endpoint Cinder
        # made, again on a repeated connect.
        brick = connector.factory('LOCAL', ROOT_HELPER)
        device_info = brick.connect_volume(connection_info['data'])
        boot = endpoint.VhostEndpoint.from_dict(device_info['vhost'])
        self.assertEqual((volume.provider_location, lv_path),
                         (boot.wwn, boot.luns[0].device_path),
                         'connect: not the endpoint Cinder exported')
        self.assertEqual(device_info['vhost'], brick.connect_volume(
            connection_info['data'])['vhost'],
            'connect: a repeated connect gave another endpoint')

        # 3. The domain boots from the volume; data flows both ways.
        # Meanwhile Nova's compute process imports Nova (a minute or two
        # under TCG) for step 4.
        nova = NovaCompute()
        self.addCleanup(nova.stop)
        boot_xml = attach.libvirt_hostdev_xml(boot)
        domain = libvirt_host.LibvirtDomain([boot_xml], marker)
        self.addCleanup(domain.destroy)
        domain.start()
        self.assertEqual(
            'sda sector0=' + boot_sector0, domain.expect('sda sector0='),
            'boot: the guest did not read what the host wrote')
        self.assertEqual('sda written', domain.expect('sda writ'),
                         'boot: the guest could not write its disk')
        self.assertEqual(marker, base.read_sector(lv_path, 16),
                         'boot: the guest write did not reach the LV')
        qemu_uid = pwd.getpwnam(libvirt_host.QEMU_ACCOUNT).pw_uid
        self.assertEqual(qemu_uid, domain.qemu_uid(),
                         'boot: QEMU does not run as libvirt-qemu')
        self.assertEqual(qemu_uid, target_owner(boot.wwn),
                         'boot: libvirt did not label the endpoint for QEMU')

        # 4. Nova attaches a second volume live: its LibvirtDriver picks
        # the vhost volume driver, which exports the volume (the endpoint
        # Cinder made) and gives the hostdev Nova's Guest hot-plugs
        # through libvirt-python, into the live domain and its
        # persistent configuration.
        hot_volume = self.cinder.new_volume(self.context)
        self.driver.create_volume(hot_volume)
        self.addCleanup(self.driver.delete_volume, hot_volume)
        hot_lv_path = self.cinder.lv_path(hot_volume)
        base.write_sector(hot_lv_path, 0, hot_sector0)
        hot_volume.update(self.driver.create_export(self.context, hot_volume,
                                                    properties))
        self.addCleanup(self.driver.remove_export, self.context, hot_volume)
        hot_info = dict(self.driver.initialize_connection(hot_volume,
                                                          properties),
                        serial=hot_volume.id)
        attached = nova.result('attach', hot_info, domain.uuid, '/dev/sdb')
        hot_info = attached['connection_info']
        self.assertEqual(hot_volume.provider_location,
                         hot_info['data']['wwpn'],
                         'nova: not the endpoint Cinder exported')
        self.assertEqual(
            'sdb sector0=' + hot_sector0, domain.expect('sdb sector0='),
            'attach: the guest did not read the hot-plugged disk')
        hot_wwn = hot_info['data']['wwpn']
        self.assertIn(hot_wwn, domain.dumpxml(inactive=True),
                      'attach: not in the persistent configuration')
        self.assertIn(hot_wwn, domain.live_status(),
                      'attach: libvirt has no live status of the hostdev')
        self.assertNotIn(hot_wwn, domain.qemu_command_line(),
                         'attach: the hot-plugged WWN is on QEMU\'s command '
                         'line, not only in libvirt\'s live status')

        # 5. Nothing deletes an endpoint under the running guest, which
        # keeps reading both disks.
        refusals = (
            ('sda', lv_path, 'delete_endpoint',
             lambda: self.executor.delete_endpoint(boot.wwn)),
            ('sda', lv_path, 'disconnect_volume',
             lambda: brick.disconnect_volume(connection_info['data'], None)),
            ('sda', lv_path, 'remove_export',
             lambda: self.driver.remove_export(self.context, volume)),
            ('sdb', hot_lv_path, 'delete_endpoint',
             lambda: self.executor.delete_endpoint(hot_wwn)),
            ('sdb', hot_lv_path, "Nova's disconnect_volume",
             lambda: nova.typed_result('disconnect', hot_info)))
        for disk, path, call, delete in refusals:
            snapshot = base.configfs_snapshot()
            with self.assertRaises(exception.EndpointInUse,
                                   msg='in use: %s of %s' % (call, disk)):
                delete()
            self.assertEqual(snapshot, base.configfs_snapshot(),
                             'in use: a refused %s of %s changed configfs'
                             % (call, disk))
            self.assertEqual('running', domain.state(),
                             'in use: the domain stopped after a refused '
                             '%s of %s' % (call, disk))
            fresh = 'after-refused-%s-' % call + os.urandom(8).hex()
            base.write_sector(path, 32, fresh)
            self.assertEqual(fresh, domain.read_sector(disk, 32),
                             'in use: the guest lost %s after a refused %s'
                             % (disk, call))

        # 6. Nova finds the hostdev by the volume's alias in libvirt's
        # live XML; its detach_volume detaches it from the persistent
        # configuration and the live domain, waits for libvirt's
        # device-removed event, then disconnects, which removes the
        # endpoint; Cinder tears down.
        found = nova.result('find', domain.uuid, hot_volume.id)
        self.assertIsNotNone(found, 'detach: Nova did not find the hostdev '
                             'by its alias')
        self.assertEqual(hot_wwn, found['wwpn'],
                         'detach: Nova found another hostdev')
        nova.result('detach', hot_info, domain.uuid, '/dev/sdb')
        self.assertEqual('sdb gone', domain.expect('sdb gone'),
                         'detach: the guest still has the disk')
        self.assertNotIn(hot_wwn, domain.dumpxml(),
                         'detach: still in the live domain')
        self.assertNotIn(hot_wwn, domain.dumpxml(inactive=True),
                         'detach: still in the persistent configuration')
        self.assertNotIn(hot_wwn, base.vhost_targets(),
                         'detach: the endpoint was not deleted')
        self.assertEqual('running', domain.state(),
                         'detach: the domain stopped')
        self.driver.terminate_connection(hot_volume, properties)
        self.driver.remove_export(self.context, hot_volume)
        self.driver.delete_volume(hot_volume)

        # 7. A hard reboot as Nova does it: the domain stops (libvirt
        # gives the endpoint back to root), Nova disconnects the volume,
        # then connects it again from the stored connection_info alone
        # and the restarted guest finds the same disk.
        boot_info = dict(connection_info, serial=volume.id)
        before_reboot = 'before-hard-reboot-' + os.urandom(8).hex()
        base.write_sector(lv_path, 32, before_reboot)
        domain.power_off()
        self.assertEqual(0, target_owner(boot.wwn),
                         'hard reboot: libvirt did not give the endpoint '
                         'back to root')
        nova.result('disconnect', boot_info)
        self.assertNotIn(boot.wwn, base.vhost_targets(),
                         'hard reboot: Nova\'s disconnect left the endpoint')
        hostdev = nova.result('connect', boot_info, domain.uuid, '/dev/sda')
        self.assertIn("wwpn='%s'" % boot.wwn, hostdev.replace('"', "'"),
                      'hard reboot: Nova\'s config names another endpoint')
        # Same WWN, device, unit serial, access and discard: the disk the
        # guest knew (the I_T nexus, which the guest does not see, is new).
        self.assertEqual(boot.luns, self.executor.get_endpoint(boot.wwn).luns,
                         'hard reboot: not the same disk again')
        domain.power_on()
        self.assertEqual(
            'sda sector0=' + boot_sector0, domain.expect('sda sector0='),
            'hard reboot: the guest did not find its disk')
        self.assertEqual(before_reboot, domain.read_sector('sda', 32),
                         'hard reboot: the guest reads other data')

        # 8. Once the domain is destroyed, Nova's disconnect (with only
        # the persisted connection data) removes the endpoint, Cinder
        # tears down, and the guest's data is on the LV.
        domain.destroy()
        self.assertFalse(domain.is_defined(),
                         'destroy: libvirt still lists the domain')
        brick.disconnect_volume(connection_info['data'], None)
        self.assertNotIn(boot.wwn, base.vhost_targets(),
                         'disconnect: the endpoint is left')
        self.driver.terminate_connection(volume, properties)
        self.driver.remove_export(self.context, volume)
        self.assertEqual(marker, base.read_sector(lv_path, 16),
                         'teardown: the guest\'s data is not on the LV')
        self.driver.delete_volume(volume)
        self.assertNotIn(volume.name, cinder_host.lvm(
            'lvs', '--noheadings', '-o', 'lv_name',
            self.cinder.volume_group), 'teardown: the LV is left')
        self.assertEqual(self.targets_before, base.vhost_targets(),
                         'teardown: a vhost target is left')
        self.assertEqual(before, base.configfs_snapshot(),
                         'teardown: configfs differs from before the test')
