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

"""LIO backend of the privileged helper: vhost endpoints in configfs.

Endpoints are removed through rtslib-fb, which also checks WWNs and
sets up configfs; reads, and the backstore, target, TPG and LUN of a
create, go to configfs directly, so that every operation costs the same
however many LIO objects the host has (rtslib-fb walks all of them to
list, and every LUN of every fabric to delete a backstore) and a create
does no more than the kernel needs (rtslib-fb would look each new object
up again, level by level).

This is the only module that imports rtslib-fb, and it does so lazily:
rtslib needs libudev at import time and touches configfs as soon as it
is used. Every rtslib and OS error is translated into a
:mod:`vhost_brick.exception` type here, in :func:`_translated`.
"""

import contextlib
import errno
import functools
import glob
import importlib
import logging
import os
import re
import stat
import subprocess

from vhost_brick import exception
from vhost_brick.privileged import devices
from vhost_brick.privileged import vhostdev
from vhost_brick import validation


LOG = logging.getLogger(__name__)

CONFIGFS = '/sys/kernel/config'
TARGET_ROOT = CONFIGFS + '/target'
VHOST_FABRIC = TARGET_ROOT + '/vhost'
CORE = TARGET_ROOT + '/core'
# rtslib-fb refuses to start unless the target dbroot directory exists.
DBROOT = '/etc/target'
TPGT = 1
LUN = 0
# Backstores this library creates are named after their endpoint, which
# is how delete and cleanup recognise them and leave all others alone.
BACKSTORE_PREFIX = 'vhost-brick-'
# All of them live in this one iblock HBA (the kernel takes any number
# of devices per HBA), so a backstore is found by its path, with no
# scan of core/ and no search for a free HBA index. rtslib-fb gives each
# backstore an HBA of its own from 0 up, far from this number.
HBA_INDEX = 30306
# Default groups of a fabric directory that are not targets.
_FABRIC_GROUPS = ('discovery_auth',)
_GENERATE_ATTEMPTS = 8
# configfs hands out at most one page per attribute.
_PAGE_SIZE = 4096


def backstore_name(wwn):
    """Name of the block backstore vhost_brick creates for endpoint wwn."""
    return BACKSTORE_PREFIX + wwn[len('naa.'):]


def _rtslib():
    try:
        return importlib.import_module('rtslib_fb')
    except ImportError as err:
        raise exception.KernelSupportMissing(
            reason='rtslib-fb cannot be imported (%s); install rtslib-fb '
                   'and libudev' % err) from err


def _not_found_error(rtslib):
    """rtslib-fb 2.2 renamed RTSLibNotInCFS to RTSLibNotInCFSError."""
    return getattr(rtslib.utils, 'RTSLibNotInCFSError', None) or \
        rtslib.utils.RTSLibNotInCFS


@contextlib.contextmanager
def _os_errors_translated():
    """Translate OS errors raised inside the block."""
    try:
        yield
    except OSError as err:
        raise exception.BackendError(reason=str(err)) from err


@contextlib.contextmanager
def _translated():
    """Translate rtslib and OS errors raised inside the block."""
    rtslib = _rtslib()
    with _os_errors_translated():
        try:
            yield rtslib
        except exception.VhostBrickException:
            raise
        except rtslib.RTSLibError as err:
            raise exception.BackendError(reason=str(err)) from err


def _modprobe(*modules):
    subprocess.run(['modprobe', '-a'] + list(modules), check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_prepared = False


def _prepare(rtslib):
    """Make configfs and the target core usable, as rtslib expects.

    Once per process: a helper call that goes through several of the
    functions below (create after unused_wwn, restore of N endpoints)
    need not mount, check and construct RTSRoot again each time.
    """
    global _prepared
    if _prepared:
        return
    if not os.path.isdir(TARGET_ROOT):
        _modprobe('configfs', 'target_core_mod')
        if not os.path.ismount(CONFIGFS):
            result = subprocess.run(
                ['mount', '-t', 'configfs', 'configfs', CONFIGFS],
                check=False, capture_output=True, text=True)
            if result.returncode:
                raise exception.KernelSupportMissing(
                    reason='configfs is not mounted at %s and mounting it '
                           'failed: %s' % (CONFIGFS, result.stderr.strip()))
        if not os.path.isdir(TARGET_ROOT):
            raise exception.KernelSupportMissing(
                reason='%s is missing; run "modprobe target_core_mod"'
                       % TARGET_ROOT)
    os.makedirs(DBROOT, exist_ok=True)
    rtslib.RTSRoot()
    _prepared = True


def kernel_support():
    """Report, without changing anything, what vhost-scsi needs.

    :returns: dict of check name to bool
    """
    try:
        importlib.import_module('rtslib_fb')
        rtslib_ok = True
    except ImportError:
        rtslib_ok = False
    return {
        'configfs': os.path.ismount(CONFIGFS),
        'target_core_mod': os.path.isdir(TARGET_ROOT),
        'target_core_iblock': os.path.isdir('/sys/module/target_core_iblock'),
        # configfs shows the fabric only once someone makes a target.
        'vhost_scsi': (os.path.isdir('/sys/module/vhost_scsi') or
                       os.path.isdir(VHOST_FABRIC)),
        'vhost_device': os.path.exists(vhostdev.VHOST_SCSI_DEVICE),
        'rtslib_fb': rtslib_ok,
    }


def versions():
    """The running kernel's release and rtslib-fb's version (None: absent).

    What the tested combinations are stated in (README, testing docs).
    """
    return {'kernel_release': os.uname().release,
            'rtslib_fb_version': _rtslib_version()}


def _rtslib_version():
    """The installed rtslib-fb's version, from its metadata's name.

    importlib.metadata would search every path entry, which made the
    helper's verify 60 % slower under TCG; rtslib-fb 2.2 has no
    __version__.
    """
    try:
        rtslib = importlib.import_module('rtslib_fb')
    except ImportError:
        return None
    site = os.path.dirname(os.path.dirname(rtslib.__file__))
    for name in sorted(os.listdir(site)):
        stem, suffix = os.path.splitext(name)
        project, _, version = stem.partition('-')
        if suffix in ('.dist-info', '.egg-info') and \
                project.lower().replace('-', '_') == 'rtslib_fb':
            return version
    return getattr(rtslib, '__version__', None)


def _vhost_fabric(rtslib):
    return rtslib.FabricModule('vhost')


def _ensure_vhost_fabric():
    """Make the vhost fabric's directory, loading vhost_scsi, if missing.

    What rtslib-fb's FabricModule does before its first target: the
    kernel makes the fabric only for a module that has registered it.
    """
    if os.path.isdir(VHOST_FABRIC):
        return
    _modprobe('vhost_scsi')
    try:
        os.mkdir(VHOST_FABRIC)
    except FileExistsError:
        pass
    except OSError as err:
        raise exception.KernelSupportMissing(
            reason='cannot make the vhost fabric in configfs (%s); run '
                   '"modprobe vhost_scsi"' % err) from err


def _target_dir(wwn):
    return '%s/%s' % (VHOST_FABRIC, wwn)


def _lookup_target(rtslib, wwn):
    """Return the vhost target with this WWN, or None."""
    if not os.path.isdir(_target_dir(wwn)):
        return None
    try:
        return rtslib.Target(_vhost_fabric(rtslib), wwn, mode='lookup')
    except _not_found_error(rtslib):
        return None


def _read(path):
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


def _numbered(directory, prefix):
    """The numbers N of directory's entries called prefix + N, sorted."""
    start = len(prefix)
    return sorted(int(name[start:]) for name in os.listdir(directory)
                  if name.startswith(prefix) and name[start:].isdigit())


# In a backstore's info: "... readonly: 0|1 ... Major: M Minor: m ...".
_INFO_READ_ONLY = re.compile(r'readonly: (\d+)')
_INFO_DEVICE = re.compile(r'Major: (\d+) Minor: (\d+)')
_INFO_FILE = re.compile(r'File: (\S+)')
_SERIAL_PREFIX = 'T10 VPD Unit Serial Number:'


def _read_serial(storage_dir):
    serial = _read(os.path.join(storage_dir, 'wwn', 'vpd_unit_serial'))
    return serial[len(_SERIAL_PREFIX):].strip() \
        if serial.startswith(_SERIAL_PREFIX) else serial


def _read_lun(lun_dir, number):
    """The dict of one LUN, read from configfs.

    The LUN's link points to core/<hba>/<backstore>; its attributes are
    read there, by an absolute path. A LUN without its link (an
    interrupted create) exports nothing: its device and backstore are ''.
    """
    storage_dir = _linked_storage(lun_dir)
    if storage_dir is None:
        return {'lun': number, 'device_path': '', 'backstore': '',
                'serial': '', 'read_only': False, 'discard': False}
    read_only = _INFO_READ_ONLY.search(_read(storage_dir + '/info'))
    return {'lun': number,
            'device_path': _read(storage_dir + '/udev_path'),
            'backstore': os.path.basename(storage_dir),
            'serial': _read_serial(storage_dir),
            'read_only': bool(read_only and int(read_only.group(1))),
            'discard': _read(storage_dir + '/attrib/emulate_tpu') == '1'}


def _read_tpg(wwn, tag):
    """The endpoint dict of one TPG, read from configfs.

    :raises: FileNotFoundError if the TPG goes away meanwhile
    """
    tpg_dir = '%s/tpgt_%d' % (_target_dir(wwn), tag)
    lun_root = tpg_dir + '/lun'
    luns = []
    for number in _numbered(lun_root, 'lun_'):
        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
            luns.append(_read_lun('%s/lun_%d' % (lun_root, number), number))
    return {'wwn': wwn, 'tpgt': tag, 'nexus': _read(tpg_dir + '/nexus'),
            'luns': luns}


def _read_target(wwn):
    """One endpoint dict per TPG of vhost target wwn, by tag.

    :raises: FileNotFoundError if there is no such target
    """
    described = []
    for tag in _numbered(_target_dir(wwn), 'tpgt_'):
        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
            described.append(_read_tpg(wwn, tag))
    return described


def _describe(wwn):
    """The endpoint dict of a target: its lowest-numbered TPG.

    :raises: FileNotFoundError if there is no such target
    """
    described = _read_target(wwn)
    if not described:
        return {'wwn': wwn, 'tpgt': TPGT, 'nexus': '', 'luns': []}
    return described[0]


def _same_device(path_a, path_b):
    try:
        return os.stat(path_a).st_rdev == os.stat(path_b).st_rdev
    except OSError:
        return path_a == path_b


def existing(wwn, device_path, nexus=None, serial=None, read_only=False,
             discard=None):
    """The endpoint wwn if a create of these arguments made it, else None.

    A create that is retried finds its endpoint; one that asks for
    something else than what wwn exports gets EndpointExists.
    """
    try:
        described = _describe(wwn)
    except FileNotFoundError:
        return None
    luns = [lun for lun in described['luns']
            if _same_device(lun['device_path'], device_path)]
    differences = []
    if not luns:
        differences.append('it exports %s, not %s' % (
            ', '.join(lun['device_path'] for lun in described['luns']) or
            'no device', device_path))
    elif luns[0]['read_only'] != read_only or \
            serial not in (None, luns[0]['serial']) or \
            discard not in (None, luns[0]['discard']):
        differences.append('its LUN has serial %s%s%s' % (
            luns[0]['serial'], ', read-only' if luns[0]['read_only'] else '',
            ', discard' if luns[0]['discard'] else ', no discard'))
    if nexus is not None and described['nexus'] != nexus:
        differences.append('its nexus is %s, not %s'
                           % (described['nexus'], nexus))
    if differences:
        raise exception.EndpointExists(wwn=wwn,
                                       reason='; '.join(differences))
    LOG.info('vhost endpoint %s already exports %s', wwn, device_path)
    return described


def _storage_devices(storage_dir):
    """Device numbers a storage object of any backstore type uses."""
    numbers = set()
    info = _read(os.path.join(storage_dir, 'info'))
    served = _INFO_DEVICE.search(info)
    if served and served.groups() != ('0', '0'):
        numbers.add(os.makedev(*map(int, served.groups())))
    named = [_read(os.path.join(storage_dir, 'udev_path'))]
    named.extend(_INFO_FILE.findall(info))
    for path in filter(None, named):
        with contextlib.suppress(OSError):
            node = os.stat(path)
            if stat.S_ISBLK(node.st_mode):
                numbers.add(node.st_rdev)
    return numbers


def lio_users(rdev, include_own=True):
    """Names (plugin HBA/name) of the storage objects that use rdev.

    Our own backstores are enabled iblock ones, which the kernel already
    reports through the exclusive open (:func:`devices.admit`), so the
    create path skips them: its cost then grows with the other LIO
    users' objects, not with our endpoints.
    """
    names = []
    with _os_errors_translated():
        try:
            hbas = sorted(os.listdir(CORE))
        except FileNotFoundError:  # no LIO loaded: nothing uses it
            return names
        for hba in hbas:
            hba_dir = os.path.join(CORE, hba)
            if not os.path.isdir(hba_dir) or (
                    not include_own and hba == 'iblock_%d' % HBA_INDEX):
                continue
            for name in sorted(os.listdir(hba_dir)):
                storage_dir = os.path.join(hba_dir, name)
                if not os.path.isdir(storage_dir):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if rdev in _storage_devices(storage_dir):
                        names.append('%s/%s' % (hba, name))
    return names


def _refuse_lio_users(device):
    users = lio_users(device.rdev, include_own=False)
    if users:
        raise exception.DeviceInUse(
            device=device.path, rule=devices.LIO_BACKSTORE,
            reason='LIO storage object %s uses it' % ', '.join(users))


def _backstore_path(name):
    return os.path.join(CORE, 'iblock_%d' % HBA_INDEX, name)


def _find_backstore(name):
    """The configfs path of our backstore called name, or None."""
    path = _backstore_path(name)
    return path if os.path.isdir(path) else None


def _locate_backstore(name):
    """Like _find_backstore, also finding one in an HBA of its own.

    Versions before HBA_INDEX gave each backstore its own HBA; finding
    those takes a scan of core/, so only cleanup paths look for them.
    """
    return _find_backstore(name) or next(
        iter(_glob_dirs(CORE, 'iblock_*/' + glob.escape(name))), None)


def _write(path, value):
    """Write a configfs attribute, which must exist."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _create_backstore(name, device, serial, read_only, discard):
    """Create, enable and tune our block backstore on an admitted device.

    Written to configfs directly: rtslib-fb (2.2.4) makes the HBA
    directory of every storage object it creates and fails when that
    directory exists, so it cannot put a second one in our HBA. The
    kernel opens the device by the name in ``control``, so it gets the
    resolved node that was checked, and what it opened is verified.

    :param discard: see :func:`_tune`
    :returns: the backstore's configfs path, and whether the guest gets
              discard
    """
    path = _backstore_path(name)
    with contextlib.suppress(FileExistsError):
        os.mkdir(os.path.dirname(path))
    try:
        os.mkdir(path)
        # udev_path= in control is what the kernel opens; the udev_path
        # attribute is what readers (and rtslib, targetcli) see. Neither
        # path can hold a comma, which would start another option.
        _write(os.path.join(path, 'control'), 'udev_path=%s,readonly=%d'
               % (device.node, read_only))
        _write(os.path.join(path, 'udev_path'), device.path)
        _write(os.path.join(path, 'enable'), '1')
        _check_served(path, device, read_only)
        discard = _tune(path, device, discard)
        # Before any LUN links it: the kernel refuses a new serial then.
        _write(os.path.join(path, 'wwn', 'vpd_unit_serial'), serial)
    except BaseException:
        _remove_backstore(path)
        raise
    return path, discard


def _tune(path, device, discard):
    """Give the guest the device's discard, and only FUA it can trust.

    Runs after ``enable``, when iblock has read the device's limits, and
    before a LUN links the backstore. On Linux 6.1, writing 1 to
    ``emulate_tpu``, ``emulate_tpws`` or ``unmap_zeroes_data`` before
    ``enable`` dereferences a NULL pointer in the kernel (fixed in 6.12
    by "scsi: target: Fix unmap setup during configuration").
    ``unmap_zeroes_data`` stays 0: nothing tells whether the device
    zeroes what it discards, and dm-thin does not below its chunk size.

    :param discard: None gives the guest discard exactly when the device
                    has it, True requires it, False hides it
    :returns: whether the guest gets discard
    :raises: DiscardNotSupported if discard is True and the device has
             none
    """
    attrib = os.path.join(path, 'attrib')
    # iblock copies the device's discard limits at enable; none, none.
    supported = _read(os.path.join(attrib, 'max_unmap_block_desc_count')) \
        not in ('', '0')
    if discard and not supported:
        raise exception.DiscardNotSupported(
            device=device.path, reason='its queue reports no discard')
    if discard is None:
        discard = supported
    if discard:
        _write(os.path.join(attrib, 'emulate_tpu'), '1')
    if devices.acknowledges_fua_from_cache(device.rdev):
        # The guest then flushes instead, and iblock honours flushes.
        _write(os.path.join(attrib, 'emulate_fua_write'), '0')
    return discard


def _check_served(path, device, read_only):
    """Refuse a backstore that serves another device than was admitted."""
    info = _read(os.path.join(path, 'info'))
    served = _INFO_DEVICE.search(info)
    flag = _INFO_READ_ONLY.search(info)
    served = served and os.makedev(*map(int, served.groups()))
    if served != device.rdev or not flag or \
            bool(int(flag.group(1))) != read_only:
        raise exception.DeviceNotAllowed(
            device=device.path, rule=devices.CHANGED,
            reason='LIO serves %r, not %d:%d%s as checked'
                   % (info, os.major(device.rdev), os.minor(device.rdev),
                      ' read-only' if read_only else ''))


def _remove_backstore(path):
    """Remove our backstore at path, and its HBA if nothing else uses it.

    No LUN of ours links it any more, so one rmdir does it, where
    rtslib-fb's StorageObject.delete() would first look for LUNs using
    it in every TPG of every fabric. A LUN that is not ours still
    linking it keeps it: the kernel refuses (EBUSY) and we leave it.
    """
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        if err.errno != errno.EBUSY:
            raise
        LOG.warning('Leaving backstore %s: a LUN that vhost_brick did '
                    'not make still exports it', path)
        return
    try:
        os.rmdir(os.path.dirname(path))
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EBUSY, errno.ENOENT):
            raise


def _delete_leftover_backstore(wwn):
    """Delete a backstore of ours for wwn that no LUN of ours uses.

    Only the shared HBA is looked at, so that the delete path never scans
    core/; a leftover in an HBA of its own is cleanup's to find.
    """
    path = _find_backstore(backstore_name(wwn))
    if path is not None:
        LOG.warning('Removing backstore %s left behind by an interrupted '
                    'call', path)
        _remove_backstore(path)


def _build(device, wwn, nexus, serial, read_only, discard):
    """Create backstore, target, TPG, nexus and LUN; undo all on failure.

    All in configfs directly. rtslib-fb would give the TPG a random
    nexus, to be dropped and written again, and look the TPG and the
    storage object up again for the LUN. The LUN is a directory and the
    kernel's link to the backstore, under a name of our choosing.

    :returns: the endpoint dict, from what was written and checked (the
              backstore's device and mode in :func:`_check_served`)
    """
    undo = []

    def make(directory):
        os.mkdir(directory)
        undo.append(functools.partial(os.rmdir, directory))

    try:
        name = backstore_name(wwn)
        backstore, discard = _create_backstore(name, device, serial,
                                               read_only, discard)
        undo.append(functools.partial(_remove_backstore, backstore))
        make(_target_dir(wwn))
        tpg_dir = '%s/tpgt_%d' % (_target_dir(wwn), TPGT)
        make(tpg_dir)
        _write(tpg_dir + '/nexus', nexus)
        lun_dir = '%s/lun/lun_%d' % (tpg_dir, LUN)
        make(lun_dir)
        os.symlink(backstore, os.path.join(lun_dir, name))
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except OSError:
                LOG.exception('Rollback could not undo %s', step)
        raise
    return {'wwn': wwn, 'tpgt': TPGT, 'nexus': nexus,
            'luns': [{'lun': LUN, 'device_path': device.path,
                      'backstore': name, 'serial': serial,
                      'read_only': read_only, 'discard': discard}]}


def create(device, wwn, nexus, serial, read_only=False, discard=None):
    """Create endpoint wwn exporting an admitted device.

    :param device: a :class:`devices.Device` from :func:`devices.admit`
    :param nexus: the nexus WWN, or None to generate one
    :param serial: the LUN's unit serial
    :param discard: see :func:`_tune`
    :raises: EndpointExists if wwn exists (see :func:`existing` for
             retries), DeviceInUse if another LIO object uses the device
    """
    wwn = validation.validate_wwn(wwn)
    nexus = validation.generate_wwn() if nexus is None else \
        validation.validate_nexus(nexus)
    serial = validation.validate_serial(serial)
    with _translated() as rtslib:
        _prepare(rtslib)
        if os.path.isdir(_target_dir(wwn)):
            raise exception.EndpointExists(wwn=wwn,
                                           reason='it was made meanwhile')
        _check_wwn_supported(rtslib, wwn)
        _refuse_lio_users(device)
        _delete_leftover_backstore(wwn)
        _ensure_vhost_fabric()
        return _build(device, wwn, nexus, serial,
                      validation.validate_read_only(read_only),
                      validation.validate_discard(discard))


def _check_wwn_supported(rtslib, wwn):
    """Refuse a WWN the installed rtslib-fb cannot make a target of.

    rtslib-fb before 2.2 takes NAA types 1, 2 and 5 only, not the
    locally assigned c-f that vhost_brick (and the kernel) accept.
    """
    try:
        rtslib.utils.normalize_wwn(['naa'], wwn)
    except rtslib.RTSLibError as err:
        raise exception.InvalidWWN(
            wwn=wwn, reason='rtslib-fb %s cannot make a target of it (%s); '
                            'locally assigned NAA types need rtslib-fb 2.2'
                            % (versions()['rtslib_fb_version'], err)) from err


def unused_wwn():
    """Return a generated WWN that no vhost target uses."""
    for _attempt in range(_GENERATE_ATTEMPTS):
        wwn = validation.generate_wwn()
        if not os.path.isdir(_target_dir(wwn)):
            return wwn
    raise exception.BackendError(reason='no unused WWN found after %d '
                                        'attempts' % _GENERATE_ATTEMPTS)


def orphan_backstores():
    """Names of our backstores that no LUN of any fabric links to."""
    with _os_errors_translated():
        ours = {os.path.basename(path) for path in _glob_dirs(
            CORE, 'iblock_*/' + glob.escape(BACKSTORE_PREFIX) + '*')}
        return sorted(ours - _linked_backstores()) if ours else []


def _linked_backstores():
    """Names of the backstores some LUN of some fabric links to.

    One walk of the fabrics in configfs, cheaper than asking rtslib-fb
    for each backstore's attached LUNs (a walk per backstore).
    """
    linked = set()
    for fabric in os.listdir(TARGET_ROOT):
        fabric_dir = os.path.join(TARGET_ROOT, fabric)
        if fabric == 'core' or not os.path.isdir(fabric_dir):
            continue
        for lun_dir in _glob_dirs(fabric_dir, '*/tpgt_*/lun/lun_*'):
            for name in os.listdir(lun_dir):
                link = os.path.join(lun_dir, name)
                if os.path.islink(link):
                    linked.add(os.path.basename(os.readlink(link)))
    return linked


def _glob_dirs(root, pattern):
    return [path for path in glob.glob(os.path.join(glob.escape(root),
                                                    pattern))
            if os.path.isdir(path)]


def delete_backstore(name):
    """Delete one of our backstores by name (no-op if absent)."""
    if not name.startswith(BACKSTORE_PREFIX):
        raise exception.BackendError(reason='%s is not a vhost_brick '
                                            'backstore' % name)
    with _os_errors_translated():
        path = _locate_backstore(name)
        if path is not None:
            _remove_backstore(path)


def show(wwn):
    """Return the endpoint dict of wwn; raise EndpointNotFound if absent."""
    wwn = validation.validate_wwn(wwn)
    with _os_errors_translated():
        try:
            return _describe(wwn)
        except FileNotFoundError:
            raise exception.EndpointNotFound(wwn=wwn) from None


# LIO's counters an operator graphs: per LUN (the endpoint's port) and
# per backstore (the device), as our name and its file under statistics/.
# The kernel counts data in whole MiB (bytes >> 20).
_PORT_COUNTERS = (('commands', 'scsi_tgt_port/in_cmds'),
                  ('read_mbytes', 'scsi_tgt_port/read_mbytes'),
                  ('write_mbytes', 'scsi_tgt_port/write_mbytes'))
_DEVICE_COUNTERS = (('resets', 'scsi_tgt_dev/resets'),
                    ('aborts_complete', 'scsi_tgt_dev/aborts_complete'),
                    ('aborts_no_task', 'scsi_tgt_dev/aborts_no_task'))


def stats(wwn):
    """LIO's counters of each LUN of endpoint wwn, as :func:`show` sees it.

    :returns: ``{"wwn": wwn, "luns": [{"lun": N, "commands": ...}]}``
    :raises: EndpointNotFound
    """
    wwn = validation.validate_wwn(wwn)
    with _os_errors_translated():
        try:
            return _read_stats(wwn)
        except FileNotFoundError:
            raise exception.EndpointNotFound(wwn=wwn) from None


def list_stats():
    """:func:`stats` of every vhost endpoint on the host."""
    return _read_each_target(_read_stats)


def _read_stats(wwn):
    """The counters of wwn's LUNs in its lowest-numbered TPG.

    A LUN without its link (an interrupted create) counts nothing.

    :raises: FileNotFoundError if there is no such target
    """
    tags = _numbered(_target_dir(wwn), 'tpgt_')
    luns = []
    if tags:
        lun_root = '%s/tpgt_%d/lun' % (_target_dir(wwn), tags[0])
        for number in _numbered(lun_root, 'lun_'):
            lun_dir = '%s/lun_%d' % (lun_root, number)
            storage_dir = _linked_storage(lun_dir)
            if storage_dir is None:
                continue
            counters = {'lun': number}
            for directory, names in ((lun_dir, _PORT_COUNTERS),
                                     (storage_dir, _DEVICE_COUNTERS)):
                for name, path in names:
                    counters[name] = int(_read(
                        '%s/statistics/%s' % (directory, path)))
            luns.append(counters)
    return {'wwn': wwn, 'luns': luns}


def _linked_storage(lun_dir):
    """The configfs path of the backstore lun_dir links, or None."""
    for entry in os.scandir(lun_dir):
        if entry.is_symlink():
            hba, name = os.readlink(entry.path).rsplit('/', 2)[-2:]
            return '%s/%s/%s' % (CORE, hba, name)
    return None


def _read_each_target(read):
    """read(wwn) of every vhost target on the host, by WWN.

    A target deleted meanwhile is left out; so is everything when there
    is no vhost fabric (no vhost_scsi, or no LIO at all).
    """
    with _os_errors_translated():
        try:
            wwns = sorted(entry.name for entry in os.scandir(VHOST_FABRIC)
                          if entry.is_dir() and
                          entry.name not in _FABRIC_GROUPS)
        except FileNotFoundError:
            return []
        found = []
        for wwn in wwns:
            with contextlib.suppress(FileNotFoundError):
                found.append(read(wwn))
        return found


def list_endpoints():
    """Return one dict per TPG of every vhost target on the host."""
    return [tpg for tpgs in _read_each_target(_read_target) for tpg in tpgs]


def delete(wwn, claimer=None):
    """Delete endpoint wwn unless a hypervisor holds it.

    :param claimer: a :class:`vhostdev.Claimer` to hold the endpoint with,
                    so that a batch shares one vhost device; None uses one
                    of its own
    :returns: False when there was no such endpoint
    """
    wwn = validation.validate_wwn(wwn)
    with _translated() as rtslib:
        _prepare(rtslib)
        target = _lookup_target(rtslib, wwn)
        if target is None:
            _delete_leftover_backstore(wwn)
            return False
        tpgs = list(target.tpgs)
        with (vhostdev.Claimer() if claimer is None
              else contextlib.nullcontext(claimer)) as claimer:
            if wwn in claimer.named_by_hypervisors():
                LOG.warning('Not deleting vhost endpoint %s: a hypervisor '
                            'that is paused or not started names it', wwn)
                raise exception.EndpointInUse(wwn=wwn)
            # Hold the endpoint while its LUNs go, so no hypervisor can
            # attach it half-deleted (one without a nexus cannot be held).
            with (claimer.claim(wwn) if any(tpg.nexus for tpg in tpgs)
                  else contextlib.nullcontext()):
                removed = _remove_luns(rtslib, tpgs)
        try:
            target.delete()
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise
            # A hypervisor attached between the claim and the rmdir.
            _restore_luns(rtslib, removed)
            raise exception.EndpointInUse(wwn=wwn) from err
        # Our backstore is where our LUN linked it, in whichever HBA.
        own = {storage.path for _tpg, _lun, storage in removed
               if storage.name == backstore_name(wwn)}
        for path in own:
            _remove_backstore(path)
        if not own:
            _delete_leftover_backstore(wwn)
        return True


def _storage_of(rtslib, lun):
    """The LUN's storage object, or None for a LUN without its link.

    A LUN directory whose link is missing is what an interrupted create
    or delete (ours or another tool's) leaves between its two steps.
    """
    try:
        return lun.storage_object
    except rtslib.RTSLibError:
        return None


def _remove_luns(rtslib, tpgs):
    """Delete every LUN of tpgs; return what is needed to put them back."""
    removed = []
    try:
        for tpg in tpgs:
            for lun in list(tpg.luns):
                storage = _storage_of(rtslib, lun)
                if storage is None:
                    os.rmdir(lun.path)  # rtslib cannot delete it
                    continue
                lun.delete()
                removed.append((tpg, lun.lun, storage))
    except BaseException:
        _restore_luns(rtslib, removed)
        raise
    return removed


def _restore_luns(rtslib, removed):
    for tpg, lun, storage in removed:
        try:
            rtslib.LUN(tpg, lun, storage)
        except (rtslib.RTSLibError, OSError):
            LOG.exception('Could not restore LUN %(lun)d of %(tpg)s',
                          {'lun': lun, 'tpg': tpg})
