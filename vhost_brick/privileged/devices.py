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

"""Which block devices root may hand to a guest, and what each one is.

A vhost endpoint gives a guest raw read-write access to a block device,
so root checks every device it is asked to export, whoever asks:

- its path, normalised, is under ``/dev`` and so is the node it resolves
  to, through directories only root can write (``/dev/shm`` is not one);
- the path matches one of the ``allowed_devices`` patterns of the
  root-owned configuration (:mod:`.rootconf`);
- neither the device, a partition of it nor its parent disk is mounted,
  used as swap or held by device-mapper or md (``holders``);
- it is not on the disk that holds the host's root filesystem;
- nothing holds it open exclusively (the kernel's own claim: mounts,
  swap, device-mapper, LIO block backstores).

:mod:`.lio` adds one more, which needs configfs: no LIO storage object
of any type already uses it.

The node is resolved once and opened once; the open descriptor must be
the device that was checked, and its identity (:func:`identity`) is
what the state records, so that a restore after a reboot exports the
same disk or nothing.
"""

import collections
import errno
import fcntl
import fnmatch
import os
import stat
import struct

from vhost_brick import exception
from vhost_brick import validation


SYS_DEV_BLOCK = '/sys/dev/block'
MOUNTINFO = '/proc/self/mountinfo'
SWAPS = '/proc/swaps'
DEV = '/dev'

# The rules, as DeviceNotAllowed and DeviceInUse name them.
OUTSIDE_DEV = 'outside-dev'
UNSAFE_DIRECTORY = 'unsafe-directory'
ALLOWED_DEVICES = 'allowed_devices'
ROOT_DISK = 'root-disk'
MOUNTED = 'mounted'
SWAP = 'swap'
HOLDERS = 'holders'
HELD_EXCLUSIVELY = 'held-exclusively'
CHANGED = 'changed'
LIO_BACKSTORE = 'lio-backstore'
IDENTITY = 'identity'

# ioctl LOOP_GET_STATUS64 and struct loop_info64: lo_device, lo_inode,
# lo_rdevice, lo_offset, lo_sizelimit, then fields we do not read.
LOOP_GET_STATUS64 = 0x4C05
_LOOP_INFO64 = struct.Struct('=QQQQQIIII64s64s32sQQ')

Device = collections.namedtuple('Device', 'path node rdev identity')
Device.__doc__ = """A device admitted for export.

path: as the caller gave it, which the state records and LIO reports;
node: the ``/dev`` node it resolved to, which the kernel is told to open;
rdev: the device number that was checked and opened;
identity: what the device is beyond its name (:func:`identity`), or None.
"""


def _refuse(device_path, rule, reason):
    return exception.DeviceNotAllowed(device=device_path, rule=rule,
                                      reason=reason)


def _in_use(device_path, rule, reason):
    return exception.DeviceInUse(device=device_path, rule=rule, reason=reason)


def matches(path, pattern):
    """Whether path matches a glob pattern, one component at a time.

    ``*``, ``?`` and ``[...]`` never cross a ``/``; a ``**`` component
    matches any number of components, none included.
    """
    return _match_parts(path.split('/'), pattern.split('/'))


def _match_parts(parts, patterns):
    if not patterns:
        return not parts
    if patterns[0] == '**':
        return any(_match_parts(parts[start:], patterns[1:])
                   for start in range(len(parts) + 1))
    return (bool(parts) and fnmatch.fnmatchcase(parts[0], patterns[0]) and
            _match_parts(parts[1:], patterns[1:]))


def _under_dev(path):
    return path.startswith(DEV + '/')


def _check_directories(device_path, path):
    """Refuse a path through a directory that a non-root user can change.

    Root's is the effective user's: the unit tests run as anyone.
    """
    directory = os.path.dirname(path)
    while _under_dev(directory + '/') and directory != '/':
        info = os.stat(directory)
        if info.st_uid != os.geteuid() or \
                info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise _refuse(device_path, UNSAFE_DIRECTORY,
                          '%s can be changed by users other than root'
                          % directory)
        directory = os.path.dirname(directory)


def _sysfs(rdev):
    """The sysfs directory of block device rdev, resolved.

    ``/sys/dev/block/M:m`` is a link into /sys/devices, whose directories
    are real ones: one readlink resolves it, where realpath would look
    at every component of the path. No such device gives the link's own
    path, which is no directory.
    """
    link = '%s/%d:%d' % (SYS_DEV_BLOCK, os.major(rdev), os.minor(rdev))
    try:
        return os.path.normpath(os.path.join(SYS_DEV_BLOCK,
                                             os.readlink(link)))
    except OSError:
        return link


def _read(path):
    with open(path) as attr:
        return attr.read().strip()


def _rdev_of(sysdir):
    major, minor = _read(os.path.join(sysdir, 'dev')).split(':')
    return os.makedev(int(major), int(minor))


def _is_partition(sysdir):
    return os.path.exists(os.path.join(sysdir, 'partition'))


def _disk_of(sysdir):
    """The whole disk's sysfs directory of a disk or a partition."""
    return os.path.dirname(sysdir) if _is_partition(sysdir) else sysdir


def _family(sysdir):
    """sysfs directories of the device, its partitions and its parent disk.

    The kernel names a partition after its disk (sda1, nvme0n1p1), so
    only entries of that name are looked at, not queue/, power/, mq/...
    """
    family = [sysdir]
    if _is_partition(sysdir):
        family.append(os.path.dirname(sysdir))
    else:
        disk = os.path.basename(sysdir)
        family.extend(entry.path for entry in os.scandir(sysdir)
                      if entry.name.startswith(disk) and entry.is_dir() and
                      _is_partition(entry.path))
    return family


def _mounted():
    """Device numbers of every mounted filesystem's source."""
    numbers = set()
    with open(MOUNTINFO) as mountinfo:
        for line in mountinfo:
            major, minor = line.split()[2].split(':')
            numbers.add(os.makedev(int(major), int(minor)))
    return numbers


def _swaps():
    """Device numbers of the block devices in use as swap."""
    numbers = set()
    with open(SWAPS) as swaps:
        next(swaps, None)  # the header
        for line in swaps:
            path = line.split()[0].replace('\\040', ' ')
            try:
                info = os.stat(path)
            except OSError:
                continue
            if stat.S_ISBLK(info.st_mode):
                numbers.add(info.st_rdev)
    return numbers


def _root_disks(root_dev):
    """sysfs directories of the whole disks under the root filesystem.

    The root's device root_dev, then what it is built on (device-mapper
    and md ``slaves``, recursively), each taken as its whole disk.
    """
    pending = [_sysfs(root_dev)]
    disks = set()
    while pending:
        sysdir = pending.pop()
        if not os.path.isdir(sysdir):
            continue  # not a block device: tmpfs, 9p, nfs, ...
        disks.add(_disk_of(sysdir))
        slaves = os.path.join(sysdir, 'slaves')
        if os.path.isdir(slaves):
            pending.extend(os.path.realpath(entry.path)
                           for entry in os.scandir(slaves))
    return disks


def _check_use(device_path, rdev, root_dev):
    """Refuse a device that the host itself uses, directly or nearby.

    :param root_dev: the device number of the root filesystem
    """
    sysdir = _sysfs(rdev)
    if _disk_of(sysdir) in _root_disks(root_dev):
        raise _refuse(device_path, ROOT_DISK,
                      'it is on the disk that holds the root filesystem')
    mounted, swaps = _mounted(), _swaps()
    for member in _family(sysdir):
        name = os.path.basename(member)
        number = _rdev_of(member)
        if number in mounted:
            raise _in_use(device_path, MOUNTED, '%s is mounted' % name)
        if number in swaps:
            raise _in_use(device_path, SWAP, '%s is in use as swap' % name)
        holders = sorted(os.listdir(os.path.join(member, 'holders')))
        if holders:
            raise _in_use(device_path, HOLDERS, '%s is held by %s'
                          % (name, ', '.join(holders)))


def _open_exclusive(device_path, node):
    try:
        return os.open(node, os.O_RDONLY | os.O_EXCL | os.O_NONBLOCK |
                       os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.EBUSY:
            raise _in_use(device_path, HELD_EXCLUSIVELY,
                          'the kernel reports it held exclusively (a '
                          'mount, swap, device-mapper, md or a LIO '
                          'backstore)') from err
        raise exception.InvalidDevice(device=device_path,
                                      reason=err.strerror) from err


def admit(device_path, allowed_devices):
    """Check device_path against every rule; return the admitted Device.

    :param allowed_devices: glob patterns (see :func:`matches`)
    :raises: InvalidDevice for a path that is not a usable block device,
             DeviceNotAllowed (DeviceInUse for a device in use) naming
             the rule that refused it
    """
    validation.validate_device_path(device_path)
    normal = os.path.normpath(device_path)
    node = os.path.realpath(device_path)
    if node != device_path:
        # What the kernel is told to open: checked as the caller's path is.
        validation.validate_device_path(node)
    for path in dict.fromkeys((normal, node)):
        if not _under_dev(path):
            raise _refuse(device_path, OUTSIDE_DEV,
                          '%s is not under %s/' % (path, DEV))
        _check_directories(device_path, path)
    if not any(matches(normal, pattern) for pattern in allowed_devices):
        raise _refuse(device_path, ALLOWED_DEVICES,
                      'it matches none of %s' % ', '.join(allowed_devices))
    rdev = os.stat(node).st_rdev
    _check_use(device_path, rdev, os.stat('/').st_dev)
    fd = _open_exclusive(device_path, node)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISBLK(opened.st_mode) or opened.st_rdev != rdev:
            raise _refuse(device_path, CHANGED,
                          '%s changed while it was being checked' % node)
        return Device(device_path, node, rdev, identity(fd, rdev))
    finally:
        os.close(fd)


def acknowledges_fua_from_cache(rdev):
    """Whether a FUA write to rdev may complete from a volatile cache.

    True for a device with a volatile write cache (``write back``) and no
    native FUA: loop devices, SATA disks with ``libata.fua=0`` (the
    default), device-mapper over either. LIO's iblock passes FUA on only
    to a device with native FUA, so a guest told that FUA works would
    have its FUA writes (journal commits) acknowledged from that cache.
    A partition's queue is its disk's.
    """
    queue = os.path.join(_disk_of(_sysfs(rdev)), 'queue')
    return (_read(os.path.join(queue, 'write_cache')) == 'write back' and
            _read(os.path.join(queue, 'fua')) == '0')


def identity(fd, rdev):
    """What the open device fd is, beyond its name; None if unknown.

    Device names (sdX, dm-N, loopN) are handed out again at every boot;
    these survive it: a loop device's backing file (device, inode,
    offset, size limit), a device-mapper UUID, a SCSI or NVMe WWID, a
    virtio-blk serial. A partition adds its number to its disk's.
    """
    sysdir = _sysfs(rdev)
    disk = _disk_of(sysdir)
    found = _disk_identity(fd, disk)
    if found is None or disk == sysdir:
        return found
    return '%s part%s' % (found, _read(os.path.join(sysdir, 'partition')))


def _disk_identity(fd, disk):
    if os.path.isdir(os.path.join(disk, 'loop')):
        try:
            info = _LOOP_INFO64.unpack(fcntl.ioctl(
                fd, LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size)))
        except OSError:
            return None  # an unbound loop device
        device, inode, _rdevice, offset, sizelimit = info[:5]
        return 'loop dev=%d ino=%d offset=%d sizelimit=%d' % (
            device, inode, offset, sizelimit)
    for attribute, kind in (('dm/uuid', 'dm-uuid'),
                            ('device/wwid', 'wwid'), ('wwid', 'wwid'),
                            ('serial', 'serial')):
        try:
            value = _read(os.path.join(disk, attribute))
        except OSError:
            continue
        if value:
            return '%s %s' % (kind, value)
    return None
