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

"""Tell whether a hypervisor holds, or will hold, a vhost-scsi endpoint.

configfs exposes no "in use" attribute, and deleting a held endpoint
half-succeeds (the kernel removes its LUNs, hot-unplugging the disks from
the running guest, then refuses to remove the TPG). The kernel's answer
is to try to claim the endpoint the way QEMU does, through
``/dev/vhost-scsi``: the kernel skips TPGs another vhost device holds, so
the claim fails (ENODEV on 6.x, EEXIST on older kernels).

The claim only sees a running device. QEMU releases the endpoint while
its guest is paused (``stop``: a pause, a snapshot, the end of a
migration) and has not claimed it before the guest's driver starts the
device, yet it dies if the endpoint is gone when it does. Those are
found by name (:meth:`Claimer.named_by_hypervisors`): a process that
owns a vhost device (QEMU does from the moment the device is realized)
and names the WWN on its command line (``-device
vhost-scsi-pci,wwpn=...``, libvirt's JSON ``-device``), or a running
libvirt domain whose live status names it (devices libvirt hot-plugged,
which are not on the command line).
"""

import contextlib
import errno
import fcntl
import os
import re
import struct

from vhost_brick import exception


VHOST_SCSI_DEVICE = '/dev/vhost-scsi'

_VHOST_VIRTIO = 0xAF
# struct vhost_scsi_target {int abi_version; char vhost_wwpn[224];
#     unsigned short vhost_tpgt; unsigned short reserved;}
_TARGET = struct.Struct('=i224sHH')
# struct vhost_memory {__u32 nregions; __u32 padding;} with no regions.
_EMPTY_MEMORY_TABLE = bytes(8)


def _io(nr):
    return (_VHOST_VIRTIO << 8) | nr


def _iow(nr, size):
    return (1 << 30) | (size << 16) | (_VHOST_VIRTIO << 8) | nr


VHOST_SET_OWNER = _io(0x01)
VHOST_SET_MEM_TABLE = _iow(0x03, len(_EMPTY_MEMORY_TABLE))
VHOST_SCSI_SET_ENDPOINT = _iow(0x40, _TARGET.size)
VHOST_SCSI_CLEAR_ENDPOINT = _iow(0x41, _TARGET.size)

_HELD_ERRNOS = (errno.ENODEV, errno.EEXIST)

PROC = '/proc'
# libvirt's live status of each running domain, with hot-plugged devices.
LIBVIRT_STATUS_DIR = '/run/libvirt/qemu'
_WWN_RE = re.compile(rb'naa\.[0-9a-f]{16}', re.IGNORECASE)
_WORKER_RE = re.compile(rb'vhost-(\d+)\n\Z')
# A QEMU command line can be tens of KiB; most entries are one read.
_PROC_READ_SIZE = 65536


def _read_proc(pid, name):
    """/proc/<pid>/<name>, or b'' for a process gone meanwhile.

    os.read rather than open(): a delete reads this for every process on
    the host, and a file object per read was most of that cost.
    """
    try:
        fd = os.open('%s/%s/%s' % (PROC, pid, name),
                     os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b''
    try:
        chunks = []
        while chunk := os.read(fd, _PROC_READ_SIZE):
            chunks.append(chunk)
        return b''.join(chunks)
    except OSError:
        return b''
    finally:
        os.close(fd)


def _owns_vhost_worker(pid, kernel_thread_owners):
    """Whether process pid owns a vhost device.

    Its worker is named ``vhost-<pid>``: a kernel thread on Linux 6.1, a
    thread of the process itself (a vhost_task) from 6.4 on. Read from
    ``comm``, which any process may read; a process's open files would
    need ptrace access, which the capability-less privsep daemon lacks
    for a QEMU running as root.
    """
    if pid in kernel_thread_owners:
        return True
    worker = b'vhost-%s\n' % pid.encode()
    try:
        tasks = os.listdir('%s/%s/task' % (PROC, pid))
    except OSError:
        return False
    return any(_read_proc(pid, 'task/%s/comm' % tid) == worker
               for tid in tasks)


def _named_by_processes():
    """WWNs on the command line of a process that owns a vhost device."""
    naming = {}
    kernel_thread_owners = set()
    own = str(os.getpid())
    for pid in os.listdir(PROC):
        if not pid.isdigit() or pid == own:
            continue
        cmdline = _read_proc(pid, 'cmdline')
        if cmdline:
            wwns = _WWN_RE.findall(cmdline)
            if wwns:
                naming[pid] = wwns
            continue
        # An empty command line: a kernel thread, or a process gone.
        owner = _WORKER_RE.match(_read_proc(pid, 'comm'))
        if owner:
            kernel_thread_owners.add(owner.group(1).decode())
    return {wwn.decode().lower() for pid, wwns in naming.items()
            if _owns_vhost_worker(pid, kernel_thread_owners)
            for wwn in wwns}


def _named_by_libvirt():
    """WWNs named by the live status of a running libvirt domain."""
    named = set()
    try:
        names = os.listdir(LIBVIRT_STATUS_DIR)
    except OSError:  # no libvirt here
        return named
    for name in names:
        if not name.endswith('.xml'):
            continue
        try:
            with open(os.path.join(LIBVIRT_STATUS_DIR, name), 'rb') as status:
                named.update(wwn.decode().lower()
                             for wwn in _WWN_RE.findall(status.read()))
        except OSError:
            continue
    return named


class Claimer:
    """A /dev/vhost-scsi device that claims endpoints one after another.

    Opening the device and becoming its owner (the kernel starts a worker
    thread) is most of a claim's cost, about 23 ms of 24 under TCG, so a
    batch of deletes shares one device. Use as a context manager.
    """

    def __init__(self):
        self._fd = None
        self._named = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _owned_device(self):
        if self._fd is None:
            fd = os.open(VHOST_SCSI_DEVICE, os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, VHOST_SET_OWNER)
                # Without a memory table the kernel fails the claim with
                # EFAULT.
                fcntl.ioctl(fd, VHOST_SET_MEM_TABLE, _EMPTY_MEMORY_TABLE)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def named_by_hypervisors(self):
        """WWNs that a hypervisor names, claimed now or not; see above.

        Found once per Claimer, so a batch of deletes scans /proc once.
        """
        if self._named is None:
            self._named = _named_by_processes() | _named_by_libvirt()
        return self._named

    @contextlib.contextmanager
    def claim(self, wwn):
        """Hold endpoint ``wwn`` like a hypervisor would, inside the block.

        While held, no hypervisor can attach the endpoint. Only call this
        for a WWN whose TPGs exist and have a nexus: the kernel reports a
        missing target with the same errno as a held one.

        :raises: :class:`~vhost_brick.exception.EndpointInUse` when another
                 vhost device already holds it
        """
        target = _TARGET.pack(0, wwn.encode('ascii'), 0, 0)
        fd = self._owned_device()
        try:
            fcntl.ioctl(fd, VHOST_SCSI_SET_ENDPOINT, target)
        except OSError as err:
            if err.errno in _HELD_ERRNOS:
                raise exception.EndpointInUse(wwn=wwn) from err
            self.close()  # in an unknown state: the next claim reopens
            raise
        try:
            yield
        finally:
            try:
                fcntl.ioctl(fd, VHOST_SCSI_CLEAR_ENDPOINT, target)
            except BaseException:
                self.close()
                raise


@contextlib.contextmanager
def claim(wwn):
    """Hold endpoint ``wwn`` inside the block, with a device of its own.

    See :meth:`Claimer.claim`.
    """
    with Claimer() as claimer, claimer.claim(wwn):
        yield
