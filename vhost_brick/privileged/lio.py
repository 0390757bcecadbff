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

Targets, TPGs and LUNs are made and removed through rtslib-fb; reads and
our backstores go to configfs directly, so that every operation costs
the same however many LIO objects the host has (rtslib-fb walks all of
them to list, and every LUN of every fabric to delete a backstore).

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
import subprocess
import uuid

from vhost_brick import exception
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
            if 'Could not create' in str(err) and 'FabricModule' in str(err):
                raise exception.KernelSupportMissing(
                    reason='%s; run "modprobe vhost_scsi"' % err) from err
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
        'vhost_scsi': os.path.isdir(VHOST_FABRIC),
        'vhost_device': os.path.exists(vhostdev.VHOST_SCSI_DEVICE),
        'rtslib_fb': rtslib_ok,
    }


def _vhost_fabric(rtslib):
    return rtslib.FabricModule('vhost')


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


def _read_lun(lun_dir, number):
    """The dict of one LUN, read from configfs.

    The LUN's link points to core/<hba>/<backstore>; its attributes are
    read there, by an absolute path. A LUN without its link (an
    interrupted create) exports nothing: its device and backstore are ''.
    """
    for entry in os.scandir(lun_dir):
        if entry.is_symlink():
            hba, name = os.readlink(entry.path).rsplit('/', 2)[-2:]
            return {'lun': number,
                    'device_path': _read('%s/%s/%s/udev_path'
                                         % (CORE, hba, name)),
                    'backstore': name}
    return {'lun': number, 'device_path': '', 'backstore': ''}


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


def _check_retry(described, device_path, nexus):
    """Return the existing endpoint if this create is a retry of its own."""
    wwn = described['wwn']
    devices = [lun['device_path'] for lun in described['luns']]
    if not any(_same_device(dev, device_path) for dev in devices):
        raise exception.EndpointExists(
            wwn=wwn, reason='it exports %s, not %s'
                            % (', '.join(devices) or 'no device',
                               device_path))
    if nexus is not None and described['nexus'] != nexus:
        raise exception.EndpointExists(
            wwn=wwn, reason='its nexus is %s, not %s'
                            % (described['nexus'], nexus))
    LOG.info('vhost endpoint %s already exports %s', wwn, device_path)
    return described


def _holders_of(rtslib, device_path):
    """Names of LIO backstores configured on the same device."""
    names = []
    for storage in rtslib.RTSRoot().storage_objects:
        udev_path = getattr(storage, 'udev_path', '')
        if udev_path and _same_device(udev_path, device_path):
            names.append('%s/%s' % (storage.plugin, storage.name))
    return names


def _check_device_free(rtslib, device_path):
    """Refuse a device that someone holds exclusively, LIO included.

    An enabled LIO block backstore holds its device exclusively, so one
    O_EXCL open answers for all of them without scanning configfs; the
    scan only runs to name the holder in the error.
    """
    try:
        fd = os.open(device_path, os.O_RDONLY | os.O_EXCL | os.O_NONBLOCK)
    except OSError as err:
        if err.errno != errno.EBUSY:
            raise exception.InvalidDevice(device=device_path,
                                          reason=err.strerror) from err
        holders = _holders_of(rtslib, device_path)
        raise exception.DeviceInUse(
            device=device_path,
            reason=('exported by LIO backstore %s' % ', '.join(holders)
                    if holders else 'held open exclusively '
                                    '(mounted, or used by another driver)')
        ) from err
    os.close(fd)


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


def _create_backstore(name, device_path):
    """Create and enable our block backstore on device_path; its path.

    Written to configfs directly: rtslib-fb (2.2.4) makes the HBA
    directory of every storage object it creates and fails when that
    directory exists, so it cannot put a second one in our HBA.
    """
    path = _backstore_path(name)
    with contextlib.suppress(FileExistsError):
        os.mkdir(os.path.dirname(path))
    try:
        os.mkdir(path)
        # udev_path= in control configures the device; the udev_path
        # attribute is what readers (and rtslib, targetcli) see.
        _write(os.path.join(path, 'control'), 'udev_path=%s' % device_path)
        _write(os.path.join(path, 'udev_path'), device_path)
        _write(os.path.join(path, 'enable'), '1')
        # A unit serial, as rtslib-fb gives, so the guest sees a WWN.
        _write(os.path.join(path, 'wwn', 'vpd_unit_serial'),
               str(uuid.uuid4()))
    except BaseException:
        _remove_backstore(path)
        raise
    return path


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


def _create_tpg(rtslib, target, nexus):
    """Create the endpoint's TPG with its nexus; return the rtslib TPG.

    Made in configfs directly: rtslib-fb gives every TPG it creates a
    random nexus, which would then have to be read, dropped and written
    again (a third of rtslib's share of a create).
    """
    tpg_dir = os.path.join(target.path, 'tpgt_%d' % TPGT)
    os.mkdir(tpg_dir)
    _write(os.path.join(tpg_dir, 'nexus'), nexus)
    return rtslib.TPG(target, TPGT, mode='lookup')


def _build(rtslib, device_path, wwn, nexus):
    """Create backstore, target, TPG, nexus and LUN; undo all on failure."""
    undo = []
    try:
        name = backstore_name(wwn)
        undo.append(functools.partial(
            _remove_backstore, _create_backstore(name, device_path)))
        target = rtslib.Target(_vhost_fabric(rtslib), wwn, mode='create')
        undo.append(target.delete)
        tpg = _create_tpg(rtslib, target, nexus)
        rtslib.LUN(tpg, LUN, rtslib.BlockStorageObject(name,
                                                       index=HBA_INDEX))
        return _describe(wwn)
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except (rtslib.RTSLibError, OSError):
                LOG.exception('Rollback could not undo %s', step)
        raise


def create(device_path, wwn=None, nexus=None):
    """Create an endpoint exporting device_path; see VhostExecutor."""
    validation.validate_device_path(device_path)
    if wwn is not None:
        wwn = validation.validate_wwn(wwn)
    if nexus is not None:
        nexus = validation.validate_nexus(nexus)
    with _translated() as rtslib:
        _prepare(rtslib)
        if wwn is None:
            wwn = unused_wwn()
        elif os.path.isdir(_target_dir(wwn)):
            return _check_retry(_describe(wwn), device_path, nexus)
        _check_device_free(rtslib, device_path)
        _delete_leftover_backstore(wwn)
        return _build(rtslib, device_path, wwn,
                      nexus or validation.generate_wwn())


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


def list_endpoints():
    """Return one dict per TPG of every vhost target on the host."""
    with _os_errors_translated():
        try:
            wwns = sorted(entry.name for entry in os.scandir(VHOST_FABRIC)
                          if entry.is_dir() and
                          entry.name not in _FABRIC_GROUPS)
        except FileNotFoundError:  # no vhost_scsi, or no LIO at all
            return []
        endpoints = []
        for wwn in wwns:
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                endpoints.extend(_read_target(wwn))
        return endpoints


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
        # Hold the endpoint while its LUNs go, so no hypervisor can
        # attach it half-deleted (one without a nexus cannot be held).
        claim = vhostdev.claim if claimer is None else claimer.claim
        with (claim(wwn) if any(tpg.nexus for tpg in tpgs)
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
