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

import os
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree

import fixtures

from vhost_brick import attach
from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick.tests import base


WWN = 'naa.5001405000000001'
ENDPOINT = endpoint.VhostEndpoint(
    wwn=WWN, tpgt=1, nexus='naa.5001405000000002',
    luns=[endpoint.VhostLun(0, '/dev/disk/by-id/x',
                            'vhost-brick-5001405000000001', 'serial-1',
                            False, True)])

DOMAIN = """<domain type='kvm'>
  <name>vhost-brick-test</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>%s</devices>
</domain>
"""


class ConnectionInfoTestCase(base.TestCase):

    def test_connection_info(self):
        self.assertEqual(
            {'driver_volume_type': 'vhost',
             'data': {'wwpn': WWN, 'tpgt': 1, 'lun': 0,
                      'nexus': 'naa.5001405000000002',
                      'device_path': '/dev/disk/by-id/x',
                      'backstore': 'vhost-brick-5001405000000001',
                      'discard': True}},
            attach.connection_info(ENDPOINT))

    def test_unknown_lun_is_refused(self):
        self.assertRaises(exception.Invalid, attach.connection_info,
                          ENDPOINT, lun=3)

    def test_endpoint_without_lun_is_refused(self):
        self.assertRaises(exception.Invalid, attach.connection_info,
                          endpoint.VhostEndpoint(WWN, 1, '', ()))


class QemuArgsTestCase(base.TestCase):

    def test_minimal(self):
        self.assertEqual(['-device', 'vhost-scsi-pci,wwpn=' + WWN],
                         attach.qemu_device_args(ENDPOINT))

    def test_every_knob(self):
        self.assertEqual(
            ['-device', 'vhost-scsi-pci,wwpn=%s,boot_tpgt=1,cmd_per_lun=64,'
             'max_sectors=16384,num_queues=4,virtqueue_size=256,'
             'migratable=on,id=vol1,bus=pci.0,addr=0x7' % WWN],
            attach.qemu_device_args(
                ENDPOINT, device_id='vol1', bus='pci.0', addr='0x7',
                migratable=True, num_queues=4, virtqueue_size=256,
                boot_tpgt=1, max_sectors=16384, cmd_per_lun=64))

    def test_bad_values_are_refused(self):
        for kwargs in ({'num_queues': 0}, {'num_queues': '4'},
                       {'num_queues': True}, {'virtqueue_size': 100},
                       {'boot_tpgt': 256}, {'max_sectors': 0x10000},
                       {'cmd_per_lun': -1}, {'hotplugz': 1},
                       {'migratable': 'yes'},
                       {'device_id': 'vol,drive=x'}, {'device_id': '1abc'},
                       {'bus': 'pci.0,addr=1'}, {'addr': '0x7,multifunction'}):
            self.assertRaises(exception.Invalid, attach.qemu_device_args,
                              ENDPOINT, **kwargs)

    def test_endpoint_wwn_is_validated(self):
        bad = endpoint.VhostEndpoint('naa.5001405000000001,id=x', 1, '', ())
        self.assertRaises(exception.InvalidWWN, attach.qemu_device_args, bad)


class QueuesTestCase(base.TestCase):
    """num_queues within what the kernel's vhost_scsi gives a device."""

    def setUp(self):
        super().setUp()
        self.parameter = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'max_io_vqs')
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.attach.MAX_IO_VQS', self.parameter))

    def max_io_vqs(self, value):
        with open(self.parameter, 'w') as parameter:
            parameter.write('%s\n' % value)

    def test_a_queue_per_vcpu(self):
        self.max_io_vqs(128)
        self.assertEqual(['-device', 'vhost-scsi-pci,wwpn=%s,num_queues=4'
                          % WWN], attach.qemu_device_args(ENDPOINT, vcpus=4))

    def test_more_vcpus_than_the_kernel_gives_queues_are_capped(self):
        self.max_io_vqs(128)
        self.assertIn('num_queues=128', attach.qemu_device_args(
            ENDPOINT, vcpus=240)[1])

    def test_the_kernels_default_while_vhost_scsi_is_not_loaded(self):
        self.assertEqual(128, attach.max_io_queues())

    def test_the_kernel_clamps_max_io_vqs(self):
        for configured, effective in ((0, 1), (2000, 1024), (16, 16)):
            self.max_io_vqs(configured)
            self.assertEqual(effective, attach.max_io_queues())

    def test_a_given_num_queues_wins_over_vcpus(self):
        self.max_io_vqs(128)
        self.assertIn('num_queues=2', attach.qemu_device_args(
            ENDPOINT, vcpus=8, num_queues=2)[1])

    def test_more_queues_than_the_kernel_gives_are_refused(self):
        self.max_io_vqs(16)
        self.assertRaises(exception.Invalid, attach.qemu_device_args,
                          ENDPOINT, num_queues=17)

    def test_bad_vcpus_are_refused(self):
        for vcpus in (0, -1, '4', 2.0, True):
            self.assertRaises(exception.Invalid, attach.qemu_device_args,
                              ENDPOINT, vcpus=vcpus)


class LibvirtXmlTestCase(base.TestCase):

    def test_minimal_element(self):
        self.assertEqual(
            "<hostdev mode=\"subsystem\" type=\"scsi_host\">"
            "<source protocol=\"vhost\" wwpn=\"%s\" /></hostdev>" % WWN,
            attach.libvirt_hostdev_xml(ENDPOINT))

    def test_model_and_pci_address(self):
        element = ElementTree.fromstring(attach.libvirt_hostdev_xml(
            ENDPOINT, model='virtio-non-transitional',
            address={'type': 'pci', 'domain': 0, 'bus': 0, 'slot': 7,
                     'function': 0}))
        self.assertEqual('virtio-non-transitional', element.get('model'))
        self.assertEqual({'type': 'pci', 'domain': '0x0000', 'bus': '0x00',
                          'slot': '0x07', 'function': '0x0'},
                         element.find('address').attrib)

    def test_alias_names_the_device(self):
        element = ElementTree.fromstring(attach.libvirt_hostdev_xml(
            ENDPOINT, alias='ua-1e5ab4c2-0d2f-4e1b-9c3a-77a1d0f6b2e4'))
        self.assertEqual('ua-1e5ab4c2-0d2f-4e1b-9c3a-77a1d0f6b2e4',
                         element.find('alias').get('name'))

    def test_bad_model_addresses_and_aliases_are_refused(self):
        for kwargs in ({'alias': 'volume-1'}, {'alias': 'ua-a b'},
                       {'alias': 'ua-'}, {'alias': 7},
                       {'model': 'lsilogic'},
                       {'address': {'type': 'drive'}},
                       {'address': {'type': 'pci', 'slot': 32}},
                       {'address': {'type': 'pci', 'slot': '7'}},
                       {'address': {'type': 'pci', 'port': 1}}):
            self.assertRaises(exception.Invalid,
                              attach.libvirt_hostdev_xml, ENDPOINT, **kwargs)


class LibvirtMigratableTestCase(base.TestCase):
    """A domain's vhost-scsi devices made migratable, in its XML."""

    PLAIN = DOMAIN % attach.libvirt_hostdev_xml(ENDPOINT)

    def qemu_args(self, xml):
        namespace = {'qemu': attach.QEMU_XML_NAMESPACE}
        return [arg.get('value') for arg in ElementTree.fromstring(
            xml).findall('qemu:commandline/qemu:arg', namespace)]

    def test_it_passes_the_global_to_qemu(self):
        self.assertEqual(['-global', 'vhost-scsi-pci.migratable=on'],
                         self.qemu_args(
                             attach.libvirt_migratable_xml(self.PLAIN)))

    def test_the_rest_of_the_domain_is_kept(self):
        made = ElementTree.fromstring(
            attach.libvirt_migratable_xml(self.PLAIN))
        self.assertEqual(ENDPOINT.wwn,
                         made.find('devices/hostdev/source').get('wwpn'))
        self.assertEqual('vhost-brick-test', made.findtext('name'))

    def test_it_is_written_with_libvirts_prefix(self):
        self.assertIn('<qemu:commandline>',
                      attach.libvirt_migratable_xml(self.PLAIN))

    def test_a_migratable_domain_is_returned_unchanged(self):
        once = attach.libvirt_migratable_xml(self.PLAIN)
        self.assertEqual(once, attach.libvirt_migratable_xml(once))

    def test_a_domain_is_migratable_only_with_the_global(self):
        self.assertFalse(attach.libvirt_domain_migratable(self.PLAIN))
        self.assertTrue(attach.libvirt_domain_migratable(
            attach.libvirt_migratable_xml(self.PLAIN)))

    def test_other_passthrough_arguments_are_not_the_global(self):
        other = self.PLAIN.replace('</domain>', (
            '<qemu:commandline xmlns:qemu="%s">'
            '<qemu:arg value="-global"/><qemu:arg value="x.y=on"/>'
            '<qemu:arg value="vhost-scsi-pci.migratable=on"/>'
            '</qemu:commandline></domain>') % attach.QEMU_XML_NAMESPACE)
        self.assertFalse(attach.libvirt_domain_migratable(other))
        self.assertEqual(
            ['-global', 'x.y=on', 'vhost-scsi-pci.migratable=on',
             '-global', 'vhost-scsi-pci.migratable=on'],
            self.qemu_args(attach.libvirt_migratable_xml(other)))

    def test_what_is_not_a_domain_is_refused(self):
        for xml in ('<domain', '<hostdev/>', None):
            self.assertRaises(exception.Invalid,
                              attach.libvirt_migratable_xml, xml)


class LibvirtSchemaTestCase(base.TestCase):
    """The generated XML validates against libvirt's own schema."""

    def setUp(self):
        super().setUp()
        if not shutil.which('virt-xml-validate'):
            self.skipTest('virt-xml-validate missing: apt-get install '
                          'libvirt-clients libxml2-utils (.ci/run does)')
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def validate(self, hostdev):
        path = self.tmp + '/domain.xml'
        with open(path, 'w') as f:
            f.write(DOMAIN % hostdev)
        return subprocess.run(['virt-xml-validate', path, 'domain'],
                              capture_output=True, text=True)

    def test_generated_elements_validate(self):
        for kwargs in ({}, {'model': 'virtio'},
                       {'model': 'virtio-transitional',
                        'address': {'type': 'pci', 'domain': 0, 'bus': 0,
                                    'slot': 7, 'function': 0}},
                       {'address': {'type': 'ccw', 'cssid': 0xfe,
                                    'ssid': 0, 'devno': 0x0a}},
                       {'alias': 'ua-1e5ab4c2-0d2f-4e1b-9c3a-77a1d0f6b2e4'}):
            result = self.validate(attach.libvirt_hostdev_xml(ENDPOINT,
                                                              **kwargs))
            self.assertEqual(0, result.returncode, result.stderr + str(kwargs))

    def test_the_migratable_domain_validates(self):
        path = self.tmp + '/domain.xml'
        with open(path, 'w') as f:
            f.write(attach.libvirt_migratable_xml(
                DOMAIN % attach.libvirt_hostdev_xml(ENDPOINT)))
        result = subprocess.run(['virt-xml-validate', path, 'domain'],
                                capture_output=True, text=True)
        self.assertEqual(0, result.returncode, result.stderr)

    def test_schema_check_can_fail(self):
        broken = attach.libvirt_hostdev_xml(ENDPOINT).replace(
            'protocol="vhost"', 'protocol="vhostx"')
        self.assertNotEqual(0, self.validate(broken).returncode)
