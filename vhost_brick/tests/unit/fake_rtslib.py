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

"""A stand-in for the parts of rtslib-fb that vhost_brick uses.

Its objects live in a directory tree laid out like LIO's configfs
(``core/iblock_K/<name>`` with ``udev_path``, ``<fabric>/<wwn>/tpgt_N``
with ``nexus`` and ``lun/lun_M/<alias>`` linking a storage object), so
code that reads or writes configfs directly sees what the fake made, and
the fake sees what it made. :func:`mkdir`, :func:`rmdir` and
:func:`symlink`, installed in place of ``os.mkdir``, ``os.rmdir`` and
``os.symlink``, add what configfs does that a plain tree does not.

It models what the kernel and rtslib do that matters to the backend:
a new vhost TPG gets a random nexus, the nexus can only be dropped while
the TPG has no LUN, deleting a held TPG removes its LUNs and then fails
with EBUSY, a linked storage object cannot be removed, and rtslib-fb
creates every storage object in a new HBA directory of its own. A
storage object's ``info`` and ``wwn/vpd_unit_serial`` read as the kernel
renders them (:func:`shown`). Its ``attrib`` holds what iblock sets at
``enable`` (the discard limit, from ``STATE.no_discard``), and
:func:`check_write` refuses attribute writes as the kernel does.
``STATE.fail_on[step]`` makes one step raise, to test rollback.
"""

import errno
import itertools
import os
import re
import tempfile


_real_mkdir = os.mkdir
_real_rmdir = os.rmdir
_real_symlink = os.symlink
# Directories configfs makes along with their parent, and removes with it.
DEFAULT_GROUPS = ('wwn', 'lun', 'acls', 'attrib', 'statistics',
                  'scsi_tgt_dev', 'scsi_tgt_port')
# The counters under statistics/ that vhost_brick reads, by directory.
STORAGE_COUNTERS = ('scsi_tgt_dev/resets', 'scsi_tgt_dev/aborts_complete',
                    'scsi_tgt_dev/aborts_no_task')
LUN_COUNTERS = ('scsi_tgt_port/in_cmds', 'scsi_tgt_port/read_mbytes',
                'scsi_tgt_port/write_mbytes')
_FABRIC_DIR = re.compile(r'^(?!core$)[^/]+$')
_TARGET_DIR = re.compile(r'^(?!core/)[^/]+/[^/]+$')
_STORAGE_DIR = re.compile(r'^core/(iblock|fileio)_(\d+)/[^/]+$')
_TPG_DIR = re.compile(r'^[^/]+/([^/]+)/tpgt_\d+$')
_LUN_DIR = re.compile(r'^[^/]+/[^/]+/tpgt_\d+/lun/lun_\d+$')
_PLUGINS = {'iblock': 'block', 'fileio': 'fileio'}


class RTSLibError(Exception):
    pass


class RTSLibNotInCFSError(RTSLibError):
    pass


class _State:
    def __init__(self, root):
        self.root = root
        self.held = set()
        # Devices whose queue reports no discard.
        self.no_discard = set()
        self.fail_on = {}
        self.roots = 0
        self._serial = itertools.count(1)
        # What normalize_wwn accepts: rtslib-fb 2.2's NAA types.
        self.naa_types = r'naa\.[125c-fC-F][0-9a-fA-F]{15}$'

    def maybe_fail(self, step):
        if step in self.fail_on:
            raise self.fail_on.pop(step)

    def random_wwn(self):
        return 'naa.5001405%09x' % next(self._serial)

    def relative(self, path):
        """path relative to the root, or None if outside it."""
        if self.root is None:
            return None
        rel = os.path.relpath(os.path.abspath(path), self.root)
        return None if rel.startswith('..') else rel

    @property
    def storage(self):
        return {storage.name: storage for storage in _storage_objects()}

    @property
    def targets(self):
        return {(fabric, target.wwn): target
                for fabric in _entries(self.root) if fabric != 'core'
                for target in FabricModule(fabric).targets}


STATE = _State(None)


def reset(root=None):
    """Empty configfs (as after a reboot), at root or where it was."""
    global STATE
    root = root or STATE.root
    for name in os.listdir(root):
        _remove_tree(os.path.join(root, name))
    _real_mkdir(os.path.join(root, 'core'))
    STATE = _State(root)


def _remove_tree(path):
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            child = os.path.join(dirpath, name)
            if os.path.islink(child):
                os.unlink(child)
            else:
                _real_rmdir(child)
    _real_rmdir(path)


def _entries(directory):
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def _write(path, value):
    with open(path, 'w') as attr:
        attr.write(value)


def _read(path):
    with open(path) as attr:
        return attr.read()


def mkdir(path, mode=0o777, **kwargs):
    """os.mkdir, making configfs's attributes and default groups."""
    rel = None if kwargs else STATE.relative(path)
    for step, pattern in (('fabric', _FABRIC_DIR), ('target', _TARGET_DIR),
                          ('storage', _STORAGE_DIR), ('tpg', _TPG_DIR)):
        if rel is not None and pattern.match(rel):
            STATE.maybe_fail(step)
    _real_mkdir(path, mode, **kwargs)
    if rel is None:
        return
    if _STORAGE_DIR.match(rel):
        for attr in ('control', 'enable', 'udev_path', 'info'):
            _write(os.path.join(path, attr), '')
        _real_mkdir(os.path.join(path, 'wwn'))
        _write(os.path.join(path, 'wwn', 'vpd_unit_serial'), '')
        _real_mkdir(os.path.join(path, 'attrib'))
        for attr, default in ATTRIBUTES.items():
            _write(os.path.join(path, 'attrib', attr), default)
        _make_counters(path, STORAGE_COUNTERS)
    elif _LUN_DIR.match(rel):
        _make_counters(path, LUN_COUNTERS)
    elif _TPG_DIR.match(rel):
        _write(os.path.join(path, 'nexus'), '')
        _real_mkdir(os.path.join(path, 'lun'))
        _real_mkdir(os.path.join(path, 'acls'))


# A backstore's attributes that vhost_brick reads or writes, as made.
ATTRIBUTES = {'emulate_tpu': '0', 'emulate_fua_write': '1',
              'max_unmap_block_desc_count': '0'}


def _storage_device(directory):
    """The device a storage object was told to open."""
    options = dict(option.split('=', 1) for option in
                   _read(os.path.join(directory, 'control')).split(',')
                   if '=' in option)
    return options, options.get('udev_path') or _read(
        os.path.join(directory, 'udev_path'))


def _enabled(directory):
    return _read(os.path.join(directory, 'enable')) == '1'


def check_write(path):
    """Refuse an attribute write as the kernel would, or let it through.

    ``emulate_tpu`` = 1 needs the discard limits iblock reads at enable:
    before it, Linux 6.1 dereferences NULL (here: AssertionError, a bug
    of the caller); on a device without discard it is ENOSYS.
    """
    rel = STATE.relative(path) or ''
    if not rel.endswith('/attrib/emulate_tpu'):
        return
    storage = os.path.dirname(os.path.dirname(path))
    if not _enabled(storage):
        raise AssertionError('emulate_tpu written before enable: a NULL '
                             'dereference in Linux 6.1')
    if _storage_device(storage)[1] in STATE.no_discard:
        raise OSError(errno.ENOSYS, 'Function not implemented')


def _make_counters(path, counters):
    for counter in counters:
        counter = os.path.join(path, 'statistics', counter)
        os.makedirs(os.path.dirname(counter), exist_ok=True)
        _write(counter, '0\n')


def shown(path, rdev_of):
    """The file to read for configfs attribute path, as the kernel shows it.

    A storage object's ``info`` is rendered from its ``control`` options
    (or, for objects made through rtslib, its ``udev_path``) once it is
    enabled, with the device number rdev_of(path) of the device the
    kernel would open (0:0 for None, as a file's);
    ``wwn/vpd_unit_serial`` gets the kernel's prefix. Those are written
    to a temporary file, which the caller opens and removes; other paths
    are read as they are.
    """
    name, directory = os.path.basename(path), os.path.dirname(path)
    if name == 'vpd_unit_serial':
        text = 'T10 VPD Unit Serial Number: %s\n' % _read(path)
    elif name == 'max_unmap_block_desc_count' and _STORAGE_DIR.match(
            STATE.relative(os.path.dirname(directory)) or ''):
        storage = os.path.dirname(directory)
        has_discard = _storage_device(storage)[1] not in STATE.no_discard
        text = '%d\n' % (_enabled(storage) and has_discard)
    elif name == 'info' and _STORAGE_DIR.match(
            STATE.relative(directory) or ''):
        options, device = _storage_device(directory)
        enabled = _enabled(directory)
        rdev = enabled and rdev_of(device) or 0
        text = ('Status: ACTIVATED  Max Queue Depth: 0  iBlock device: x  '
                'UDEV PATH: %s  readonly: %s\n        Major: %d Minor: %d  '
                'CLAIMED: IBLOCK\n' % (device, options.get('readonly', 0),
                                       os.major(rdev), os.minor(rdev)))
    else:
        return path
    fd, rendered = tempfile.mkstemp(prefix='fake-configfs-')
    with os.fdopen(fd, 'w') as attr:
        attr.write(text)
    return rendered


def _pinned(path):
    """Whether path holds objects that rmdir must not take with it."""
    for entry in os.scandir(path):
        if entry.is_symlink() or (entry.is_dir() and (
                entry.name not in DEFAULT_GROUPS or _pinned(entry.path))):
            return True
    return False


def _links_to(path):
    """Whether a LUN of any fabric links the storage object at path."""
    root = STATE.root
    for fabric in _entries(root):
        for dirpath, dirnames, _files in os.walk(os.path.join(root, fabric)):
            for name in dirnames:
                link = os.path.join(dirpath, name)
                if os.path.islink(link) and os.path.samefile(link, path):
                    return True
    return False


def symlink(source, link):
    """os.symlink; in a LUN directory, the export, which may fail."""
    if _LUN_DIR.match(STATE.relative(os.path.dirname(link)) or ''):
        STATE.maybe_fail('lun')
    _real_symlink(source, link)


def rmdir(path, **kwargs):
    """os.rmdir with configfs's rules in the fake tree."""
    rel = None if kwargs else STATE.relative(path)
    if rel is None:
        return _real_rmdir(path, **kwargs)
    if not os.path.isdir(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT),
                                path)
    if _pinned(path):
        raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), path)
    tpg = _TPG_DIR.match(rel)
    if ((tpg and tpg.group(1) in STATE.held) or
            (_STORAGE_DIR.match(rel) and _links_to(path))):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
    _remove_tree(path)


class _Node:
    def __init__(self, path):
        self.path = path

    @property
    def exists(self):
        return os.path.isdir(self.path)


class RTSRoot:
    def __init__(self):
        STATE.roots += 1

    @property
    def storage_objects(self):
        return _storage_objects()


def _storage_objects():
    core = os.path.join(STATE.root, 'core')
    return [StorageObject.so_from_path(os.path.join(core, hba, name))
            for hba in _entries(core)
            for name in _entries(os.path.join(core, hba))
            if os.path.isdir(os.path.join(core, hba, name))]


class FabricModule(_Node):
    def __init__(self, name):
        super().__init__(os.path.join(STATE.root, name))
        self.name = name

    @property
    def targets(self):
        return [Target(self, wwn, mode='lookup')
                for wwn in _entries(self.path)]


class StorageObject(_Node):
    prefix = None

    def __init__(self, name, dev=None, index=None):
        core = os.path.join(STATE.root, 'core')
        self.name = name
        if dev is None:
            hbas = (['%s_%s' % (self.prefix, index)] if index is not None
                    else _entries(core))
            for hba in hbas:
                super().__init__(os.path.join(core, hba, name))
                if hba.startswith(self.prefix + '_') and self.exists:
                    return
            raise RTSLibNotInCFSError('Storage object %s/%s not found'
                                      % (self.plugin, name))
        if index is None:
            used = {hba.rsplit('_', 1)[1] for hba in _entries(core)}
            index = next(i for i in itertools.count() if str(i) not in used)
        hba = os.path.join(core, '%s_%s' % (self.prefix, index))
        if os.path.isdir(hba):
            # rtslib-fb 2.2.4: the HBA is created with the object's mode.
            raise RTSLibError('This _Backstore already exists in configFS')
        super().__init__(os.path.join(hba, name))
        mkdir(hba)
        mkdir(self.path)
        _write(os.path.join(self.path, 'udev_path'), dev)
        _write(os.path.join(self.path, 'enable'), '1')

    @property
    def plugin(self):
        return _PLUGINS[self.prefix]

    @property
    def udev_path(self):
        return _read(os.path.join(self.path, 'udev_path'))

    @classmethod
    def so_from_path(cls, path):
        prefix, index = os.path.basename(os.path.dirname(path)).rsplit('_', 1)
        so_class = {'iblock': BlockStorageObject,
                    'fileio': FileIOStorageObject}[prefix]
        return so_class(os.path.basename(path), index=index)

    def __repr__(self):
        return '<%s %s>' % (type(self).__name__, self.name)


class BlockStorageObject(StorageObject):
    prefix = 'iblock'


class FileIOStorageObject(StorageObject):
    prefix = 'fileio'


class Target(_Node):
    def __init__(self, fabric, wwn, mode='any'):
        super().__init__(os.path.join(fabric.path, wwn))
        self.fabric = fabric.name
        self.wwn = wwn
        if mode == 'lookup':
            if not self.exists:
                raise RTSLibNotInCFSError('No such Target in configfs')
            return
        if self.exists:
            raise RTSLibError('This Target already exists in configFS')
        STATE.maybe_fail('target')
        os.makedirs(fabric.path, exist_ok=True)
        mkdir(self.path)

    @property
    def tpgs(self):
        return [TPG(self, int(name[len('tpgt_'):]), mode='lookup')
                for name in _entries(self.path) if name.startswith('tpgt_')]

    def delete(self):
        for tpg in self.tpgs:
            tpg.delete()
        STATE.maybe_fail('delete_target')
        rmdir(self.path)

    def __repr__(self):
        return '<Target %s>' % self.wwn


class TPG(_Node):
    def __init__(self, target, tag, mode='any'):
        super().__init__(os.path.join(target.path, 'tpgt_%d' % tag))
        self.target = target
        self.tag = tag
        if self.exists and mode != 'create':
            return
        STATE.maybe_fail('tpg')
        mkdir(self.path)
        _write(os.path.join(self.path, 'nexus'), STATE.random_wwn())

    @property
    def luns(self):
        lun_root = os.path.join(self.path, 'lun')
        return [LUN(self, int(name[len('lun_'):]))
                for name in _entries(lun_root) if name.startswith('lun_')]

    @property
    def nexus(self):
        return _read(os.path.join(self.path, 'nexus'))

    @nexus.setter
    def nexus(self, value):
        if self.nexus:
            raise RTSLibError("The TPG's nexus initiator WWN is already set")
        STATE.maybe_fail('nexus')
        _write(os.path.join(self.path, 'nexus'), value)

    def delete(self):
        for lun in self.luns:
            lun.delete()
        rmdir(self.path)

    def __repr__(self):
        return '<TPG %s/%d>' % (self.target.wwn, self.tag)


class LUN(_Node):
    def __init__(self, tpg, lun, storage_object=None):
        super().__init__(os.path.join(tpg.path, 'lun', 'lun_%d' % lun))
        self.tpg = tpg
        self.lun = lun
        if storage_object is None:
            return
        STATE.maybe_fail('lun')
        mkdir(self.path)
        # Relative, as configfs reports a LUN's link.
        _real_symlink(os.path.relpath(storage_object.path, self.path),
                      os.path.join(self.path, '%010x' % lun))

    def _link(self):
        for name in _entries(self.path):
            if os.path.islink(os.path.join(self.path, name)):
                return os.path.join(self.path, name)
        return None

    @property
    def storage_object(self):
        link = self._link()
        if link is None:
            raise RTSLibError('Broken LUN in configFS, no storage object')
        return StorageObject.so_from_path(os.readlink(link))

    def break_link(self):
        """What a helper killed between LUN mkdir and symlink leaves."""
        os.unlink(self._link())

    def delete(self):
        STATE.maybe_fail('delete_lun')
        link = self._link()
        if link is not None:
            os.unlink(link)
        rmdir(self.path)


def fwrite(path, value):
    if not (path.endswith('/nexus') and value == 'NULL'):
        raise AssertionError('unexpected fwrite(%r, %r)' % (path, value))
    if _entries(os.path.join(os.path.dirname(path), 'lun')):
        raise OSError(errno.EBUSY, 'Device or resource busy')
    _write(path, '')


def normalize_wwn(wwn_types, wwn):
    """rtslib-fb 2.2's check of a target WWN (2.1 has no c-f)."""
    if wwn_types != ['naa'] or not re.match(STATE.naa_types, wwn):
        raise RTSLibError('WWN not valid as: %s' % ', '.join(wwn_types))
    return wwn, 'naa'


class utils:
    RTSLibError = RTSLibError
    RTSLibNotInCFSError = RTSLibNotInCFSError
    fwrite = staticmethod(fwrite)
    normalize_wwn = staticmethod(normalize_wwn)


def snapshot():
    """Everything in the fake configfs, for before/after comparisons."""
    return {
        'storage': sorted((s.plugin, s.name, s.udev_path)
                          for s in _storage_objects()),
        'targets': sorted(
            (t.fabric, t.wwn, tpg.tag, tpg.nexus,
             tuple(sorted((lun.lun, lun._link() and os.path.basename(
                 os.readlink(lun._link()))) for lun in tpg.luns)))
            for t in STATE.targets.values() for tpg in t.tpgs),
    }
