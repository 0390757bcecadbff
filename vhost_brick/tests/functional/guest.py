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

"""A nested QEMU guest that reaches an endpoint through vhost-scsi-pci.

Runs inside the test VM: the same Debian kernel boots again with a
busybox initramfs (built by tools/vmrun.py) whose init reads and writes
the disk the endpoint exports and talks to the test over its serial
console.

The nested QEMU uses TCG, not KVM. KVM does load in the test VM (TCG
emulates AMD SVM), but in two full CI runs a nested KVM guest wedged the
test VM: once with soft lockups of its vCPU thread, once with the suite
stuck until the CI timeout (cause unknown). Under TCG the nested boot
takes 100 to 160 s instead of 8 s (:data:`FAST_BOOT` saves some), and
the endpoint is served exactly as under KVM: vhost-scsi-pci hands the
virtqueues to the kernel's vhost_scsi worker; only the kick and call
eventfds are relayed by QEMU instead of KVM.
"""

import contextlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time

from vhost_brick import attach


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(REPO, 'tools'))
import vmrun  # noqa: E402  (tools/ is not a package)

# Kernel options of every nested guest that only skip boot work the tests
# do not need: the crypto self-tests (including the KDF's, which its
# initcall runs regardless), kprobe tracing's setup and the CPU bug
# mitigations. Measured in the 6.1 test VM, /init at guest uptime:
# 80 to 101 s in six boots with them (mean 90 s), 100 and 118 s in two
# without; boots vary by up to 20 % from run to run.
# acpi=noirq: PCI interrupts are routed by the BIOS's table, not by
# ACPI's link devices, whose AML the guest interprets for seconds each
# under TCG in TCG. Measured with nine vhost-scsi-pci controllers:
# loading virtio_pci took 56 s with ACPI's routing, 2 s without (MSI-X
# serves virtio either way; ACPI still runs PCI hot-plug).
FAST_BOOT = ('mitigations=off cryptomgr.notests acpi=noirq '
             'initcall_blacklist=crypto_kdf108_init,init_kprobe_trace')
# ext4 and crc32c (which ext4 asks the crypto API for, not modules.dep)
# for the filesystem tests.
MODULES = ('virtio_pci', 'virtio_scsi', 'sd_mod', 'ext4', 'crc32c_generic')
# PID 1 of the nested guest. Unknown name=value kernel parameters
# (marker, disk_serial, scsi_targets) reach init's environment. The
# kernel boots quietly; init's first line tells a slow boot (how long it
# took) from a stuck one (none) in a failed test's output.
# SCSI scanning is manual: init scans, on every controller, only the
# target ids the endpoints serve ($scsi_targets, their TPG tags; all
# their LUNs), where the kernel's own scan would probe each of the 256
# target ids virtio-scsi offers per controller. Measured in the 6.1 test
# VM with nine controllers: 134 s from init to the disk found with the
# kernel's scan. The guest sees the same disks either way: vhost_scsi
# answers only on its TPGs' target ids.
# The disk it reads is the one whose unit serial (VPD page 0x80, after
# its 4-byte header) is $disk_serial. Then it runs the host's command
# lines (:meth:`NestedGuest.run`) until "go".
INIT = r"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "init at uptime $(cut -d' ' -f1 /proc/uptime)"
modprobe scsi_mod scan=manual
modprobe -a virtio_pci virtio_scsi sd_mod ext4 crc32c_generic
for host in /sys/class/scsi_host/host*; do
    for target in $(echo $scsi_targets | tr , ' '); do
        echo "0 $target -" > $host/scan
    done
done
echo "scanned at uptime $(cut -d' ' -f1 /proc/uptime)"
find_disk() {
    for block in /sys/block/sd*; do
        serial=$(tail -c +5 $block/device/vpd_pg80 2>/dev/null | tr -d '\000')
        [ "$serial" = "$disk_serial" ] && echo ${block##*/}
    done
}
for i in $(seq 200); do sd=$(find_disk); [ -n "$sd" ] && break; sleep 0.1
done
echo "disk=$(cat /sys/block/$sd/device/vendor /sys/block/$sd/device/model |
    tr -s ' \n' '  ')"
echo "sector0=$(dd if=/dev/$sd bs=512 count=1 2>/dev/null | tr -d '\000')"
echo "ro=$(cat /sys/block/$sd/ro)"
if printf %s "$marker" | dd of=/dev/$sd bs=512 seek=16 conv=sync,fsync \
    2>/dev/null; then echo "written"; else echo "write failed"; fi
stty -echo
while read -r line; do
    [ "$line" = go ] && break
    eval "$line"
done
echo "host said $line"
poweroff -f
"""

# Numbered writes for a migration: block NUMBERED_BLOCK + n of the disk
# gets "seq <n>" with O_DIRECT, then a flush (fsync: SYNCHRONIZE CACHE);
# the guest prints "acked <n>" once both returned, and goes on until
# /stop exists. Run it in the background (:meth:`NestedGuest.run`, with
# " & true").
NUMBERED_BLOCK = 1000
NUMBERED_WRITER = (
    'i=1; while [ ! -e /stop ]; do printf "seq %%08d" $i | '
    'dd of=/dev/$sd bs=512 seek=$((%d + i)) conv=sync,fsync oflag=direct '
    '2>/dev/null && echo "acked $i" || echo "write $i failed"; '
    'i=$((i + 1)); done' % NUMBERED_BLOCK)
_ACKED_RE = re.compile(r'acked (\d+)$')
_WRITE_FAILED_RE = re.compile(r'write \d+ failed$')
# The disk's identity as the guest sees it: unit serial, then WWID.
IDENTITY = ('echo "identity $(tail -c +5 /sys/block/$sd/device/vpd_pg80 | '
            'tr -d \'\\000\') $(cat /sys/block/$sd/device/wwid)"')


def acknowledged(lines):
    """The numbers whose writes the guest reported acknowledged."""
    return [int(match.group(1))
            for match in map(_ACKED_RE.match, lines) if match]


def failed_writes(lines):
    """The writer's failure lines."""
    return [line for line in lines if _WRITE_FAILED_RE.match(line)]


class Console:
    """A guest's console lines, read in the background, found by prefix.

    Every line is also printed, so pytest shows the guest's output of a
    failed test.
    """

    def __init__(self, name):
        self.name = name
        self.lines = queue.Queue()
        self.output = []
        self.started = time.monotonic()

    def follow(self, stream):
        """Read the lines of a text stream until it ends."""
        threading.Thread(target=self._read, args=(stream,),
                         daemon=True).start()

    def _read(self, stream):
        for line in stream:
            line = line.rstrip('\r\n')
            self.output.append(line)
            print('%s| [%5.0fs] %s' % (self.name, time.monotonic() -
                                       self.started, line), flush=True)
            self.lines.put(line)

    def expect(self, prefix, timeout):
        """Return the first unread line starting with prefix."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(
                    timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError('%s printed no %r within %ss; output:'
                                     '\n%s' % (self.name, prefix, timeout,
                                               '\n'.join(self.output)))
            if line.startswith(prefix):
                return line

    def printed(self, prefix):
        """Return the first line printed so far starting with prefix."""
        for line in self.output:
            if line.startswith(prefix):
                return line
        raise AssertionError('%s printed no %r; output:\n%s' % (
            self.name, prefix, '\n'.join(self.output)))


class NestedGuest:
    """QEMU attached to ``endpoint``; init reads sector 0, writes marker.

    After printing ``written`` (or ``write failed``) the guest runs the
    shell commands of :meth:`run` until :meth:`release`, so the test can
    act and look while the endpoint is held. ``more_endpoints`` are
    attached too, each as a vhost-scsi-pci device of its own.
    :meth:`monitor` runs a QEMU monitor command, e.g. ``stop`` to pause
    the guest; ``paused=True`` starts QEMU with its guest not yet
    running (``-S``). ``migratable`` sets the devices' QEMU property;
    ``incoming`` (a QEMU migration URI) starts QEMU waiting for the guest
    to arrive from another QEMU of the same command line.
    """

    def __init__(self, endpoint, marker, kernel_dir=vmrun.DEFAULT_KERNEL_DIR,
                 paused=False, more_endpoints=(), migratable=None,
                 incoming=None):
        endpoints = (endpoint,) + tuple(more_endpoints)
        initrd = vmrun.build_initramfs(kernel_dir, MODULES, INIT,
                                       dest_dir='/run')
        self.monitor_path = '/run/vhost-brick-guest-%s.monitor' % (
            os.urandom(4).hex())
        vmlinux = os.path.join(kernel_dir, 'kroot', 'boot', 'vmlinux-' +
                               vmrun.kernel_version(kernel_dir))
        self.command = (
            ['qemu-system-x86_64', '-accel', 'tcg',
             '-machine', 'pc', '-m', '256M', '-smp', '1', '-nodefaults',
             '-no-user-config', '-display', 'none', '-no-reboot',
             '-serial', 'stdio', '-kernel', vmlinux, '-initrd', initrd,
             '-append', 'console=ttyS0 panic=-1 quiet %s marker=%s '
             'disk_serial=%s scsi_targets=%s' % (
                 FAST_BOOT, marker, endpoint.luns[0].serial,
                 ','.join(sorted({str(ep.tpgt) for ep in endpoints}))),
             '-monitor', 'unix:%s,server=on,wait=off' % self.monitor_path] +
            (['-S'] if paused else []) +
            (['-incoming', incoming] if incoming else []))
        for index, attached in enumerate(endpoints):
            self.command += attach.qemu_device_args(
                attached, device_id='vhost%d' % index, num_queues=1,
                boot_tpgt=attached.tpgt, migratable=migratable)
        self.console = Console('nested guest')
        self.commands = 0

    def start(self):
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors='replace')
        self.console.follow(self.process.stdout)
        return self

    def expect(self, prefix, timeout=600):
        """Return the first unread console line starting with prefix.

        The default allows for a boot: 100 to 160 s here, and more than
        twice that on a slower, busier machine.
        """
        return self.console.expect(prefix, timeout)

    def printed(self, prefix):
        """Return the first console line so far starting with prefix."""
        return self.console.printed(prefix)

    def monitor(self, command, timeout=60):
        """Run a QEMU (HMP) monitor command; return what QEMU answered.

        Waits for QEMU to listen, so the first call also tells that its
        devices are realized (the vhost-scsi device open).
        """
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX) as conn:
            while True:
                try:
                    conn.connect(self.monitor_path)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if time.monotonic() > deadline or \
                            self.process.poll() is not None:
                        raise AssertionError('QEMU monitor did not listen; '
                                             'output:\n' +
                                             '\n'.join(self.console.output))
                    time.sleep(0.1)
            conn.settimeout(timeout)
            self._until_prompt(conn)
            conn.sendall(command.encode() + b'\n')
            return self._until_prompt(conn)

    @staticmethod
    def _until_prompt(conn):
        answer = b''
        while not answer.endswith(b'(qemu) '):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer.decode(errors='replace')

    def migrate(self, uri, timeout=300):
        """Migrate the guest to the QEMU waiting at uri (``-incoming``).

        :returns: QEMU's ``info migrate`` once it completed or failed, as
                  a dict of its ``name: value`` lines (lower-case names)
        """
        self.monitor('migrate -d %s' % uri)
        deadline = time.monotonic() + timeout
        while True:
            info = {}
            for line in self.monitor('info migrate').splitlines():
                name, colon, value = line.partition(':')
                if colon:
                    info[name.strip().lower()] = value.strip()
            if info.get('migration status') in ('completed', 'failed'):
                return info
            if time.monotonic() > deadline:
                raise AssertionError('migration still running: %s' % info)
            time.sleep(0.5)

    def vhost_workers(self):
        """The tasks serving this QEMU's vhost devices: (kind, id) pairs.

        vhost names its worker after the process that claimed the device
        (VHOST_SET_OWNER): ``vhost-<pid>``. Up to Linux 6.3 it is a
        ``kernel thread`` of its own; from 6.4 on a ``qemu thread``, a
        vhost_task in QEMU's own thread group.
        """
        name = 'vhost-%d\n' % self.process.pid
        workers = []
        for kind, directory in (('kernel thread', '/proc'),
                                ('qemu thread',
                                 '/proc/%d/task' % self.process.pid)):
            for task in filter(str.isdigit, os.listdir(directory)):
                with contextlib.suppress(OSError):  # gone meanwhile
                    with open('%s/%s/comm' % (directory, task)) as comm:
                        if comm.read() == name:
                            workers.append((kind, int(task)))
        return workers

    def run(self, command, timeout=300):
        """Run a shell command line in the guest, after ``written``.

        :returns: its exit status and the lines it printed (stdout and
                  stderr)
        """
        self.commands += 1
        begin, end = '@@begin-%d' % self.commands, '@@end-%d' % self.commands
        self.process.stdin.write('echo %s; { %s; } 2>&1; echo "%s $?"\n'
                                 % (begin, command, end))
        self.process.stdin.flush()
        self.expect(begin, timeout)
        lines = []
        while True:
            line = self.expect('', timeout)
            if line.startswith(end + ' '):
                return int(line.split()[1]), lines
            lines.append(line)

    def release(self):
        """Let the guest power off (no-op once it has)."""
        if self.process.poll() is None:
            try:
                self.process.stdin.write('go\n')
                self.process.stdin.flush()
            except BrokenPipeError:
                pass

    def kill(self):
        """Kill QEMU unless it has exited."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, timeout=120):
        """Wait for the guest to power off (kill it at the deadline)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                raise AssertionError('nested guest survived SIGKILL')
            raise AssertionError('nested guest did not power off')
