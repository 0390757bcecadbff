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

"""Tell whether a hypervisor holds a vhost-scsi endpoint.

configfs exposes no "in use" attribute, and deleting a held endpoint
half-succeeds (the kernel removes its LUNs, hot-unplugging the disks from
the running guest, then refuses to remove the TPG). The only reliable
probe is to try to claim the endpoint the way QEMU does, through
``/dev/vhost-scsi``: the kernel skips TPGs another vhost device holds, so
the claim fails (ENODEV on 6.x, EEXIST on older kernels).
"""

import contextlib
import errno
import fcntl
import os
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


class Claimer:
    """A /dev/vhost-scsi device that claims endpoints one after another.

    Opening the device and becoming its owner (the kernel starts a worker
    thread) is most of a claim's cost, about 23 ms of 24 under TCG, so a
    batch of deletes shares one device. Use as a context manager.
    """

    def __init__(self):
        self._fd = None

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
