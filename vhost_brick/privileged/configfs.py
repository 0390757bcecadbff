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

"""LIO's objects in configfs: where they are, their attributes, reading them.

The layer under :mod:`~vhost_brick.privileged.lio` (endpoints) and
:mod:`~vhost_brick.privileged.backstores` (storage objects). Reads go to
configfs directly, so that reading one endpoint costs the same however
many LIO objects the host has; rtslib-fb walks all of them to list.
Callers translate OS errors; a FileNotFoundError from a reader means the
object went away meanwhile.
"""

import contextlib
import errno
import glob
import os
import re
import stat


CONFIGFS = '/sys/kernel/config'
TARGET_ROOT = CONFIGFS + '/target'
VHOST_FABRIC = TARGET_ROOT + '/vhost'
CORE = TARGET_ROOT + '/core'
# Default groups of a fabric directory that are not targets.
_FABRIC_GROUPS = ('discovery_auth',)
# configfs hands out at most one page per attribute.
_PAGE_SIZE = 4096

# In a storage object's info: "... readonly: 0|1 ... Major: M Minor: m
# ..." (iblock), "File: PATH" (fileio).
INFO_READ_ONLY = re.compile(r'readonly: (\d+)')
INFO_DEVICE = re.compile(r'Major: (\d+) Minor: (\d+)')
_INFO_FILE = re.compile(r'File: (\S+)')
_SERIAL_PREFIX = 'T10 VPD Unit Serial Number:'

# LIO's counters an operator graphs: per LUN (the endpoint's port) and
# per storage object (the device), as our name and its file under
# statistics/. The kernel counts data in whole MiB (bytes >> 20).
_PORT_COUNTERS = (('commands', 'scsi_tgt_port/in_cmds'),
                  ('read_mbytes', 'scsi_tgt_port/read_mbytes'),
                  ('write_mbytes', 'scsi_tgt_port/write_mbytes'))
_DEVICE_COUNTERS = (('resets', 'scsi_tgt_dev/resets'),
                    ('aborts_complete', 'scsi_tgt_dev/aborts_complete'),
                    ('aborts_no_task', 'scsi_tgt_dev/aborts_no_task'))


def read(path):
    """The value of a configfs attribute.

    os.read rather than open(): no file object per attribute, which is
    most of the cost of listing many endpoints. A configfs attribute is
    at most a page and comes whole in one read. A vhost TPG's nexus
    reads as ENODEV while none is set; that is ''.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, _PAGE_SIZE).decode().strip()
    except OSError as err:
        if err.errno != errno.ENODEV:
            raise
        return ''
    finally:
        os.close(fd)


def write(path, value):
    """Write a configfs attribute, which must exist."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def numbered(directory, prefix):
    """The numbers N of directory's entries called prefix + N, sorted."""
    start = len(prefix)
    return sorted(int(name[start:]) for name in os.listdir(directory)
                  if name.startswith(prefix) and name[start:].isdigit())


def glob_dirs(root, pattern):
    """The directories under root matching pattern (root taken literally)."""
    return [path for path in glob.glob(os.path.join(glob.escape(root),
                                                    pattern))
            if os.path.isdir(path)]


def target_dir(wwn):
    return '%s/%s' % (VHOST_FABRIC, wwn)


def read_serial(storage_dir):
    """The unit serial (VPD page 0x80) of a storage object; '' if none."""
    serial = read(os.path.join(storage_dir, 'wwn', 'vpd_unit_serial'))
    return serial[len(_SERIAL_PREFIX):].strip() \
        if serial.startswith(_SERIAL_PREFIX) else serial


def lun_link(lun_dir):
    """(link name, storage object path) of lun_dir's link, or None."""
    for entry in os.scandir(lun_dir):
        if entry.is_symlink():
            hba, name = os.readlink(entry.path).rsplit('/', 2)[-2:]
            return entry.name, '%s/%s/%s' % (CORE, hba, name)
    return None


def linked_storage(lun_dir):
    """The configfs path of the storage object lun_dir links, or None."""
    link = lun_link(lun_dir)
    return link[1] if link else None


def storage_objects(skip_hba=None):
    """(HBA, name, path) of every storage object on the host, sorted.

    :param skip_hba: an HBA directory name whose objects are left out
    """
    try:
        hbas = sorted(os.listdir(CORE))
    except FileNotFoundError:  # no LIO loaded: there are none
        return
    for hba in hbas:
        hba_dir = os.path.join(CORE, hba)
        if hba == skip_hba or not os.path.isdir(hba_dir):
            continue
        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
            for name in sorted(os.listdir(hba_dir)):
                path = os.path.join(hba_dir, name)
                if os.path.isdir(path):
                    yield hba, name, path


def storage_devices(storage_dir):
    """Device numbers a storage object of any backstore type uses."""
    numbers = set()
    info = read(os.path.join(storage_dir, 'info'))
    served = INFO_DEVICE.search(info)
    if served and served.groups() != ('0', '0'):
        numbers.add(os.makedev(*map(int, served.groups())))
    named = [read(os.path.join(storage_dir, 'udev_path'))]
    named.extend(_INFO_FILE.findall(info))
    for path in filter(None, named):
        with contextlib.suppress(OSError):
            node = os.stat(path)
            if stat.S_ISBLK(node.st_mode):
                numbers.add(node.st_rdev)
    return numbers


def _read_lun(lun_dir, number):
    """The dict of one LUN.

    The LUN's link points to core/<hba>/<backstore>; its attributes are
    read there, by an absolute path. A LUN without its link (an
    interrupted create) exports nothing: its device and backstore are ''.
    """
    storage_dir = linked_storage(lun_dir)
    if storage_dir is None:
        return {'lun': number, 'device_path': '', 'backstore': '',
                'serial': '', 'read_only': False, 'discard': False}
    read_only = INFO_READ_ONLY.search(read(storage_dir + '/info'))
    return {'lun': number,
            'device_path': read(storage_dir + '/udev_path'),
            'backstore': os.path.basename(storage_dir),
            'serial': read_serial(storage_dir),
            'read_only': bool(read_only and int(read_only.group(1))),
            'discard': read(storage_dir + '/attrib/emulate_tpu') == '1'}


def _read_tpg(wwn, tag):
    """The endpoint dict of one TPG.

    :raises: FileNotFoundError if the TPG goes away meanwhile
    """
    tpg_dir = '%s/tpgt_%d' % (target_dir(wwn), tag)
    lun_root = tpg_dir + '/lun'
    luns = []
    for number in numbered(lun_root, 'lun_'):
        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
            luns.append(_read_lun('%s/lun_%d' % (lun_root, number), number))
    return {'wwn': wwn, 'tpgt': tag, 'nexus': read(tpg_dir + '/nexus'),
            'luns': luns}


def read_target(wwn):
    """One endpoint dict per TPG of vhost target wwn, by tag.

    :raises: FileNotFoundError if there is no such target
    """
    described = []
    for tag in numbered(target_dir(wwn), 'tpgt_'):
        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
            described.append(_read_tpg(wwn, tag))
    return described


def read_stats(wwn):
    """The counters of wwn's LUNs in its lowest-numbered TPG.

    A LUN without its link (an interrupted create) counts nothing.

    :raises: FileNotFoundError if there is no such target
    """
    tags = numbered(target_dir(wwn), 'tpgt_')
    luns = []
    if tags:
        lun_root = '%s/tpgt_%d/lun' % (target_dir(wwn), tags[0])
        for number in numbered(lun_root, 'lun_'):
            lun_dir = '%s/lun_%d' % (lun_root, number)
            storage_dir = linked_storage(lun_dir)
            if storage_dir is None:
                continue
            counters = {'lun': number}
            for directory, names in ((lun_dir, _PORT_COUNTERS),
                                     (storage_dir, _DEVICE_COUNTERS)):
                for name, path in names:
                    counters[name] = int(read(
                        '%s/statistics/%s' % (directory, path)))
            luns.append(counters)
    return {'wwn': wwn, 'luns': luns}


def read_each_target(reader):
    """reader(wwn) of every vhost target on the host, by WWN.

    A target deleted meanwhile is left out; so is everything when there
    is no vhost fabric (no vhost_scsi, or no LIO at all).
    """
    try:
        wwns = sorted(entry.name for entry in os.scandir(VHOST_FABRIC)
                      if entry.is_dir() and entry.name not in _FABRIC_GROUPS)
    except FileNotFoundError:
        return []
    found = []
    for wwn in wwns:
        with contextlib.suppress(FileNotFoundError):
            found.append(reader(wwn))
    return found


def linked_storage_names():
    """Names of the storage objects some LUN of some fabric links to.

    One walk of the fabrics, cheaper than asking rtslib-fb for each
    storage object's attached LUNs (a walk per object).
    """
    linked = set()
    for fabric in os.listdir(TARGET_ROOT):
        fabric_dir = os.path.join(TARGET_ROOT, fabric)
        if fabric == 'core' or not os.path.isdir(fabric_dir):
            continue
        for lun_dir in glob_dirs(fabric_dir, '*/tpgt_*/lun/lun_*'):
            for name in os.listdir(lun_dir):
                link = os.path.join(lun_dir, name)
                if os.path.islink(link):
                    linked.add(os.path.basename(os.readlink(link)))
    return linked
