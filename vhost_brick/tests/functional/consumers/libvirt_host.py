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

"""Debian 12's libvirt, run by hand inside the test VM, and a domain.

The host has ``libvirt-daemon``, ``libvirt-daemon-driver-qemu`` and
``libvirt-clients`` but not ``libvirt-daemon-system`` (no systemd units,
no accounts, no ``qemu.conf``), so :class:`LibvirtHost` does the little
that is missing, as that package would: it creates the ``libvirt-qemu``
account, writes a ``qemu.conf`` with that package's settings (QEMU runs
as ``libvirt-qemu``; libvirt's DAC driver labels what a domain uses, the
vhost target's configfs directory included) and starts ``virtlogd`` and
``libvirtd``, which make their own directories under /run and /var. All
of it lands in the VM's tmpfs overlay and vanishes with the VM.

:class:`LibvirtDomain` is a TCG domain booting the VM's own kernel with
a busybox initramfs; its only disks are vhost-scsi hostdevs and the test
talks to its init over the serial console, a Unix socket.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from xml.sax import saxutils

import fixtures

from vhost_brick.tests.functional import guest


vmrun = guest.vmrun
URI = 'qemu:///system'
# Domains this module makes, and the only ones its cleanup destroys.
DOMAIN_PREFIX = 'vhost-brick-'
QEMU_ACCOUNT = 'libvirt-qemu'
# The ids libvirt-daemon-system's postinst gives the account when free.
QEMU_ACCOUNT_ID = 64055
QEMU_CONF = '/etc/libvirt/qemu.conf'
# libvirt-daemon-system's qemu.conf sets nothing: these are the defaults
# it leaves, written out so that no other qemu.conf changes them.
QEMU_CONF_SETTINGS = (('user', '"%s"' % QEMU_ACCOUNT),
                      ('group', '"%s"' % QEMU_ACCOUNT),
                      ('dynamic_ownership', '1'))
VIRTLOGD_SOCKET = '/run/libvirt/virtlogd-sock'
# libvirt's live status of a running domain (vhostdev.LIBVIRT_STATUS_DIR).
STATUS_DIR = '/run/libvirt/qemu'

# PID 1 of the domain. Kernel messages from then on (disks found, SCSI
# errors) reach the console, unlike the boot's. The first disk is there
# at boot; the second is hot-plugged later and watched for in the
# background. Then every console line "<disk> <sector>" is answered
# with that sector's text, read after dropping the page cache so that
# it comes from the disk.
INIT = r"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
stty -echo
dmesg -n 7
modprobe -a virtio_pci virtio_scsi sd_mod
sector() {
    echo 3 > /proc/sys/vm/drop_caches
    dd if=/dev/$1 bs=512 skip=$2 count=1 2>/dev/null | tr -d '\000\n'
}
for i in $(seq 300); do [ -b /dev/sda ] && break; sleep 0.1; done
echo "sda sector0=$(sector sda 0)"
if printf %s "$marker" | dd of=/dev/sda bs=512 seek=16 conv=sync,fsync \
    2>/dev/null; then echo "sda written"; else echo "sda write failed"; fi
(
    while [ ! -b /dev/sdb ]; do sleep 0.2; done
    echo "sdb sector0=$(sector sdb 0)"
    while [ -b /dev/sdb ]; do sleep 0.2; done
    echo "sdb gone"
) &
while read -r disk number; do
    echo "$disk sector$number=$(sector "$disk" "$number")"
done
"""

DOMAIN_XML = """<domain type='qemu'>
  <name>%(name)s</name>
  <uuid>%(uuid)s</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%(kernel)s</kernel>
    <initrd>%(initrd)s</initrd>
    <cmdline>%(cmdline)s</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
%(hostdevs)s
    <serial type='unix'>
      <source mode='bind' path='%(console)s'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def virsh(*args, timeout=120, uri=URI):
    """Run virsh on the system QEMU driver (of uri); return its stdout.

    :raises: AssertionError, with virsh's message, if it fails
    """
    result = subprocess.run(('virsh', '-c', uri) + args, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode:
        raise AssertionError('virsh %s failed (%d): %s%s' % (
            ' '.join(args), result.returncode, result.stdout,
            result.stderr))
    return result.stdout.strip()


def running_kernel_dir():
    """The tools/vm-setup.sh tree of the kernel this VM runs."""
    for series in vmrun.KERNEL_SERIES:
        directory = vmrun.series_dir(series)
        try:
            if vmrun.kernel_version(directory) == os.uname().release:
                return directory
        except vmrun.VMError:
            continue
    return vmrun.DEFAULT_KERNEL_DIR


def _account_exists(database, name):
    return subprocess.run(['getent', database, name],
                          stdout=subprocess.DEVNULL).returncode == 0


class LibvirtHost(fixtures.Fixture):
    """virtlogd and libvirtd running as root, answering on qemu:///system.

    Cleanup destroys the domains this module made, stops both daemons
    and undoes the account and qemu.conf changes. A missing libvirt is a
    failure: these tests only run in the VM, which must have it.
    """

    def __init__(self, start_timeout=180):
        super().__init__()
        self.start_timeout = start_timeout

    def _setUp(self):
        for program in ('virtlogd', 'libvirtd', 'virsh'):
            if not shutil.which(program):
                raise AssertionError(
                    '%s not found: install libvirt-daemon, '
                    'libvirt-daemon-driver-qemu and libvirt-clients' % program)
        self.log_dir = self.useFixture(fixtures.TempDir()).path
        self._ensure_account()
        self._write_qemu_conf()
        self.virtlogd = self._start('virtlogd')
        self._wait('virtlogd', self.virtlogd,
                   lambda: os.path.exists(VIRTLOGD_SOCKET))
        self.libvirtd = self._start('libvirtd')
        self.addCleanup(self.destroy_domains)
        self._wait('libvirtd', self.libvirtd, self._answers)

    def _ensure_account(self):
        # Debian's build resolves its default QEMU user before it reads
        # qemu.conf: the QEMU driver does not start without the account.
        if not _account_exists('group', QEMU_ACCOUNT):
            subprocess.run(['groupadd', '--system', '--gid',
                            str(QEMU_ACCOUNT_ID), QEMU_ACCOUNT], check=True)
            self.addCleanup(self._remove_group)
        if not _account_exists('passwd', QEMU_ACCOUNT):
            subprocess.run(['useradd', '--system', '--uid',
                            str(QEMU_ACCOUNT_ID), '--gid', QEMU_ACCOUNT,
                            '--no-create-home', '--home-dir',
                            '/var/lib/libvirt', '--shell', '/usr/sbin/nologin',
                            QEMU_ACCOUNT], check=True)
            self.addCleanup(subprocess.run, ['userdel', QEMU_ACCOUNT],
                            check=True)

    @staticmethod
    def _remove_group():
        # userdel removes a user's group of the same name, as Debian's
        # login.defs has USERGROUPS_ENAB.
        if _account_exists('group', QEMU_ACCOUNT):
            subprocess.run(['groupdel', QEMU_ACCOUNT], check=True)

    def _write_qemu_conf(self):
        try:
            with open(QEMU_CONF) as conf:
                original = conf.read()
        except FileNotFoundError:
            self.addCleanup(os.unlink, QEMU_CONF)
        else:
            self.addCleanup(self._restore, QEMU_CONF, original)
        os.makedirs(os.path.dirname(QEMU_CONF), exist_ok=True)
        with open(QEMU_CONF, 'w') as conf:
            conf.write(''.join('%s = %s\n' % item
                               for item in QEMU_CONF_SETTINGS))

    @staticmethod
    def _restore(path, text):
        with open(path, 'w') as conf:
            conf.write(text)

    def _start(self, program):
        return self._start_command(program, [program])

    def _start_command(self, program, command):
        log = open(os.path.join(self.log_dir, program + '.log'), 'wb')
        self.addCleanup(log.close)
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(self._stop, process)
        return process

    @staticmethod
    def _stop(process):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)

    def log(self, program):
        """What program (virtlogd or libvirtd) wrote so far."""
        with open(os.path.join(self.log_dir, program + '.log'),
                  errors='replace') as log:
            return log.read()

    def _wait(self, program, process, ready):
        deadline = time.monotonic() + self.start_timeout
        while not ready():
            if process.poll() is not None:
                raise AssertionError('%s exited with %d:\n%s' % (
                    program, process.returncode, self.log(program)))
            if time.monotonic() > deadline:
                raise AssertionError('%s not ready after %ss:\n%s' % (
                    program, self.start_timeout, self.log(program)))
            time.sleep(0.5)

    uri = URI

    def _answers(self):
        try:
            virsh('version', timeout=60, uri=self.uri)
        except (AssertionError, subprocess.TimeoutExpired):
            return False
        return True

    def destroy_domains(self):
        """Destroy (and undefine) the domains this module made."""
        for flag, action in (('--state-running', 'destroy'),
                             ('--state-paused', 'destroy'),
                             ('--inactive', 'undefine')):
            for name in virsh('list', flag, '--name', uri=self.uri).split():
                if name.startswith(DOMAIN_PREFIX):
                    virsh(action, name, uri=self.uri)


class SecondLibvirtHost(LibvirtHost):
    """A second libvirtd on the same kernel: a migration's destination.

    A mount namespace of its own gives it private directories where
    libvirt keeps its sockets, domain state, caches and definitions
    (:data:`PRIVATE`, each a bind mount of a directory of its own),
    with a virtlogd of its own there; a host UUID of its own, as libvirt
    refuses to migrate a domain to a host of the same UUID; and pid
    files of its own. It shares everything else with the first,
    ``qemu.conf``, the network (the migration goes over loopback),
    configfs and /run, where the domains' kernels and consoles are.
    Start it after a :class:`LibvirtHost`, which makes the account.
    """

    PRIVATE = ('/run/libvirt', '/var/lib/libvirt', '/var/cache/libvirt',
               '/etc/libvirt/qemu')

    def _setUp(self):
        self.log_dir = self.root = self.useFixture(fixtures.TempDir()).path
        self.uri = 'qemu+unix:///system?socket=%s/run_libvirt/libvirt-sock' % (
            self.root)
        subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
        mounts = []
        for path in self.PRIVATE:
            private = os.path.join(self.root, path[1:].replace('/', '_'))
            os.makedirs(private)
            os.makedirs(path, exist_ok=True)
            mounts.append('mount --bind %s %s' % (private, path))
        config = os.path.join(self.root, 'libvirtd.conf')
        with open(config, 'w') as conf:
            conf.write('host_uuid = "%s"\n' % uuid.uuid4())
        script = ' && '.join(mounts + [
            '{ virtlogd -p %s/virtlogd.pid >%s/virtlogd.log 2>&1 & }'
            % (self.root, self.root),
            'exec libvirtd -f %s -p %s/libvirtd.pid' % (config, self.root)])
        self.libvirtd = self._start_command(
            'libvirtd', ['unshare', '--mount', '--propagation', 'private',
                         'sh', '-c', script])
        self.addCleanup(self._stop_virtlogd)
        self.addCleanup(self.destroy_domains)
        self._wait('libvirtd', self.libvirtd, self._answers)

    def _stop_virtlogd(self):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            with open(os.path.join(self.root, 'virtlogd.pid')) as pidfile:
                os.kill(int(pidfile.read()), signal.SIGTERM)


class LibvirtDomain:
    """A persistent TCG domain, as Nova's, whose disks are the hostdevs.

    It boots the kernel the VM runs (direct kernel boot, machine ``pc``,
    ACPI on so that PCI hot-plug works, 256 MiB, one vCPU) with
    :data:`INIT`: it prints ``sda sector0=<text>`` (what the host wrote
    to the first disk), writes ``marker`` at sector 16 and prints ``sda
    written``; when a second disk appears it prints ``sdb
    sector0=<text>`` and ``sdb gone`` when it is unplugged. Lines sent
    with :meth:`send` (``"sda 32"``) are answered ``sda sector32=<text>``.

    :param hostdevs: libvirt ``<hostdev>`` elements, inserted verbatim
    """

    def __init__(self, hostdevs, marker, kernel_dir=None):
        kernel_dir = kernel_dir or running_kernel_dir()
        self.name = DOMAIN_PREFIX + os.urandom(4).hex()
        self.uuid = str(uuid.uuid4())
        self.console_path = '/run/%s.console' % self.name
        initrd = vmrun.build_initramfs(kernel_dir, guest.MODULES, INIT,
                                       dest_dir='/run')
        kernel = os.path.join(kernel_dir, 'kroot', 'boot', 'vmlinux-' +
                              vmrun.kernel_version(kernel_dir))
        self.xml = DOMAIN_XML % {
            'name': self.name,
            'uuid': self.uuid,
            'kernel': saxutils.escape(kernel),
            'initrd': saxutils.escape(initrd),
            'cmdline': saxutils.escape('console=ttyS0 panic=-1 quiet %s '
                                       'marker=%s' % (guest.FAST_BOOT,
                                                      marker)),
            'hostdevs': '\n'.join(hostdevs),
            'console': saxutils.escape(self.console_path),
        }
        self.lines = guest.Console('libvirt guest')
        self.console = None

    def _virsh_with_xml(self, *args, xml, timeout=120):
        """virsh with xml written to a file, named last on its line."""
        fd, path = tempfile.mkstemp(prefix=self.name + '-', suffix='.xml')
        try:
            with os.fdopen(fd, 'w') as xml_file:
                xml_file.write(xml)
            return virsh(*args, path, timeout=timeout)
        finally:
            os.unlink(path)

    def start(self, timeout=60):
        """Define and start the domain; connect to its serial console."""
        self._virsh_with_xml('define', xml=self.xml)
        return self.power_on(timeout)

    def power_off(self):
        """Stop the domain as Nova's hard reboot does; it stays defined."""
        virsh('destroy', self.name)
        self.console.close()
        self.console = None

    def power_on(self, timeout=60):
        """Start the defined domain; connect to its serial console."""
        virsh('start', self.name)
        self.connect_console(timeout)
        return self

    def connect_console(self, timeout=60):
        """Follow the console of the QEMU now running the domain.

        Again after a migration: the destination's QEMU listens on the
        same path.
        """
        if self.console is not None:
            self.console.close()
        deadline = time.monotonic() + timeout
        self.console = socket.socket(socket.AF_UNIX)
        while True:
            try:
                self.console.connect(self.console_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise AssertionError('the console of %s did not listen'
                                         % self.name)
                time.sleep(0.1)
        self.lines.follow(self.console.makefile(
            'r', encoding='utf-8', errors='replace', newline='\n'))

    def migrate(self, destination_uri, timeout=300):
        """Live-migrate the domain to the libvirtd at destination_uri.

        Its XML there has a console of its own, as Nova's migration
        updates serial ports: the source's QEMU removes its console's
        socket when it ends, which would leave the destination's
        unreachable at the same path. Follow it with
        :meth:`connect_console` once migrated.
        """
        console_path = '/run/%s-migrated.console' % self.name
        xml = virsh('dumpxml', '--migratable', self.name).replace(
            saxutils.escape(self.console_path), saxutils.escape(console_path))
        self._virsh_with_xml('migrate', '--live', self.name, destination_uri,
                             'tcp://127.0.0.1', '--xml', xml=xml,
                             timeout=timeout)
        self.console_path = console_path

    def expect(self, prefix, timeout=600):
        """Return the first console line starting with prefix.

        The default allows for a boot, as NestedGuest.expect does.
        """
        return self.lines.expect(prefix, timeout)

    def send(self, line):
        """Write a line to the guest's console."""
        self.console.sendall(line.encode() + b'\n')

    def read_sector(self, disk, number, timeout=120):
        """What the guest reads at sector number of disk (e.g. ``sda``)."""
        self.send('%s %d' % (disk, number))
        prefix = '%s sector%d=' % (disk, number)
        return self.expect(prefix, timeout)[len(prefix):]

    def state(self):
        """``virsh domstate``: running, paused, shut off, ..."""
        return virsh('domstate', self.name)

    def is_defined(self):
        return self.name in virsh('list', '--all', '--name').split()

    def dumpxml(self, inactive=False):
        """The live XML, or the persistent configuration's."""
        return virsh('dumpxml', self.name, *(['--inactive'] if inactive
                                             else []))

    def live_status(self):
        """libvirt's status XML of the running domain, hot-plugs included."""
        with open(os.path.join(STATUS_DIR, self.name + '.xml')) as status:
            return status.read()

    def _qemu_pid(self):
        with open(os.path.join(STATUS_DIR, self.name + '.pid')) as pidfile:
            return pidfile.read().strip()

    def qemu_command_line(self):
        with open('/proc/%s/cmdline' % self._qemu_pid(), 'rb') as cmdline:
            return cmdline.read().replace(b'\0', b' ').decode()

    def qemu_uid(self):
        """The user QEMU runs as (its effective uid)."""
        with open('/proc/%s/status' % self._qemu_pid()) as status:
            for line in status:
                if line.startswith('Uid:'):
                    return int(line.split()[2])
        raise AssertionError('no Uid line in QEMU\'s /proc status')

    def destroy(self):
        """Destroy and undefine the domain unless gone; close its console."""
        if self.is_defined():
            if self.state() != 'shut off':
                virsh('destroy', self.name)
            virsh('undefine', self.name)
        if self.console is not None:
            self.console.close()
