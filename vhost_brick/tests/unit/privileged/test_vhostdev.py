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

import errno
import os
from unittest import mock

import fixtures

from vhost_brick import exception
from vhost_brick.privileged import vhostdev
from vhost_brick.tests import base


WWN = 'naa.5001405000000001'


class VhostDevTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.open = self.useFixture(fixtures.MockPatch(
            'os.open', return_value=42)).mock
        self.close = self.useFixture(fixtures.MockPatch('os.close')).mock
        self.ioctl = self.useFixture(fixtures.MockPatch(
            'fcntl.ioctl')).mock

    def test_request_numbers_match_linux_vhost_h(self):
        # Values of the _IO/_IOW macros in include/uapi/linux/vhost.h.
        self.assertEqual(0xaf01, vhostdev.VHOST_SET_OWNER)
        self.assertEqual(0x4008af03, vhostdev.VHOST_SET_MEM_TABLE)
        self.assertEqual(0x40e8af40, vhostdev.VHOST_SCSI_SET_ENDPOINT)
        self.assertEqual(0x40e8af41, vhostdev.VHOST_SCSI_CLEAR_ENDPOINT)

    def test_claim_sets_and_clears_the_endpoint(self):
        with vhostdev.claim(WWN):
            self.assertEqual(3, self.ioctl.call_count)
        target = bytes(4) + WWN.encode().ljust(224, b'\0') + bytes(4)
        self.assertEqual(
            [mock.call(42, vhostdev.VHOST_SET_OWNER),
             mock.call(42, vhostdev.VHOST_SET_MEM_TABLE, bytes(8)),
             mock.call(42, vhostdev.VHOST_SCSI_SET_ENDPOINT, target),
             mock.call(42, vhostdev.VHOST_SCSI_CLEAR_ENDPOINT, target)],
            self.ioctl.call_args_list)
        self.open.assert_called_once_with('/dev/vhost-scsi', mock.ANY)
        self.close.assert_called_once_with(42)

    def test_endpoint_held_elsewhere_raises_endpoint_in_use(self):
        for held_errno in (errno.ENODEV, errno.EEXIST):
            self.ioctl.side_effect = [None, None, OSError(held_errno, 'x')]
            err = self.assertRaises(exception.EndpointInUse,
                                    vhostdev.claim(WWN).__enter__)
            self.assertEqual({'wwn': WWN}, err.kwargs)
        self.assertEqual(2, self.close.call_count)

    def test_other_errors_propagate_and_close_the_device(self):
        self.ioctl.side_effect = [None, OSError(errno.EFAULT, 'fault')]
        self.assertRaises(OSError, vhostdev.claim(WWN).__enter__)
        self.close.assert_called_once_with(42)

    def test_endpoint_is_cleared_when_the_block_fails(self):
        def body():
            with vhostdev.claim(WWN):
                raise RuntimeError('body failed')
        self.assertRaises(RuntimeError, body)
        self.assertEqual(vhostdev.VHOST_SCSI_CLEAR_ENDPOINT,
                         self.ioctl.call_args_list[-1][0][1])
        self.close.assert_called_once_with(42)

    def test_claimer_owns_one_device_for_many_claims(self):
        other = 'naa.5001405000000002'
        with vhostdev.Claimer() as claimer:
            for wwn in (WWN, other):
                with claimer.claim(wwn):
                    pass
        requests = [call.args[1] for call in self.ioctl.call_args_list]
        self.assertEqual([vhostdev.VHOST_SET_OWNER,
                          vhostdev.VHOST_SET_MEM_TABLE,
                          vhostdev.VHOST_SCSI_SET_ENDPOINT,
                          vhostdev.VHOST_SCSI_CLEAR_ENDPOINT,
                          vhostdev.VHOST_SCSI_SET_ENDPOINT,
                          vhostdev.VHOST_SCSI_CLEAR_ENDPOINT], requests)
        self.assertEqual(other.encode(),
                         self.ioctl.call_args_list[4].args[2][4:24])
        self.open.assert_called_once()
        self.close.assert_called_once_with(42)

    def test_claimer_keeps_its_device_after_a_held_endpoint(self):
        self.ioctl.side_effect = [None, None, OSError(errno.ENODEV, 'x'),
                                  None, None]
        with vhostdev.Claimer() as claimer:
            self.assertRaises(exception.EndpointInUse,
                              claimer.claim(WWN).__enter__)
            with claimer.claim(WWN):
                pass
        self.open.assert_called_once()

    def test_claimer_reopens_after_an_unexpected_error(self):
        self.ioctl.side_effect = [None, None, OSError(errno.EIO, 'x'),
                                  None, None, None, None]
        with vhostdev.Claimer() as claimer:
            self.assertRaises(OSError, claimer.claim(WWN).__enter__)
            self.close.assert_called_once_with(42)
            with claimer.claim(WWN):
                pass
        self.assertEqual(2, self.open.call_count)


class NamedByHypervisorsTestCase(base.TestCase):
    """Hypervisors that name an endpoint without holding it."""

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.proc = os.path.join(root, 'proc')
        self.libvirt = os.path.join(root, 'libvirt')
        os.makedirs(os.path.join(self.proc, 'self'))
        for name, path in (('PROC', self.proc),
                           ('LIBVIRT_STATUS_DIR', self.libvirt)):
            self.useFixture(fixtures.MonkeyPatch(
                'vhost_brick.privileged.vhostdev.' + name, path))

    def process(self, pid, argv, worker=None):
        """A /proc/<pid> with this command line.

        worker: None, or how the process owns a vhost device: a
        ``thread`` of its own (Linux 6.4 on) or a ``kernel`` thread
        (6.1), each named vhost-<pid>.
        """
        self.write(pid, 'cmdline',
                   b'\0'.join(arg.encode() for arg in argv) + b'\0')
        self.write(pid, 'task/%d/comm' % pid, b'qemu-system-x86\n')
        worker_comm = b'vhost-%d\n' % pid
        if worker == 'thread':
            self.write(pid, 'task/%d/comm' % (pid + 1), worker_comm)
        elif worker == 'kernel':
            self.write(pid + 1000, 'cmdline', b'')
            self.write(pid + 1000, 'comm', worker_comm)

    def write(self, pid, name, data):
        path = os.path.join(self.proc, str(pid), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as entry:
            entry.write(data)

    def named(self):
        return vhostdev.Claimer().named_by_hypervisors()

    def test_a_qemu_owning_a_vhost_thread_names_its_wwpn(self):
        self.process(100, ['qemu-system-x86_64', '-S', '-device',
                           'vhost-scsi-pci,wwpn=' + WWN.upper()],
                     worker='thread')
        self.assertEqual({WWN}, self.named())

    def test_a_qemu_owning_a_vhost_kernel_thread_names_its_wwpn(self):
        self.process(100, ['qemu-system-x86_64', '-device',
                           'vhost-scsi-pci,wwpn=' + WWN], worker='kernel')
        self.assertEqual({WWN}, self.named())

    def test_libvirts_json_device_argument_names_it_too(self):
        self.process(100, ['qemu-system-x86_64', '-device',
                           '{"driver":"vhost-scsi-pci","wwpn":"%s",'
                           '"vhostfd":"25"}' % WWN], worker='thread')
        self.assertEqual({WWN}, self.named())

    def test_a_process_without_a_vhost_device_names_nothing(self):
        # e.g. "vhost-brick-helper delete --wwn=..." or a shell.
        self.process(100, ['vhost-brick-helper', 'delete', '--wwn=' + WWN])
        self.process(200, ['vhost-brick-helper', 'show', '--wwn=' + WWN])
        self.write(1200, 'cmdline', b'')
        self.write(1200, 'comm', b'vhost-999\n')  # another owner's worker
        self.assertEqual(set(), self.named())

    def test_this_process_is_not_a_hypervisor(self):
        self.process(os.getpid(), ['python', WWN], worker='thread')
        self.assertEqual(set(), self.named())

    def test_a_process_gone_meanwhile_is_skipped(self):
        os.makedirs(os.path.join(self.proc, '200'))  # no cmdline, no task
        self.assertEqual(set(), self.named())

    def test_a_running_libvirt_domain_names_its_hot_plugged_endpoints(self):
        os.makedirs(self.libvirt)
        with open(os.path.join(self.libvirt, 'guest.xml'), 'w') as status:
            status.write("<domstatus><domain><devices><hostdev mode="
                         "'subsystem' type='scsi_host'><source protocol="
                         "'vhost' wwpn='%s'/></hostdev></devices></domain>"
                         "</domstatus>" % WWN)
        with open(os.path.join(self.libvirt, 'guest.pid'), 'w') as pid:
            pid.write('naa.5001405000000009')  # not a status file
        self.assertEqual({WWN}, self.named())

    def test_the_scan_runs_once_per_claimer(self):
        claimer = vhostdev.Claimer()
        self.assertEqual(set(), claimer.named_by_hypervisors())
        self.process(100, ['qemu', 'wwpn=' + WWN], worker='thread')
        self.assertEqual(set(), claimer.named_by_hypervisors())
        self.assertEqual({WWN}, self.named())
