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

"""LIO backend of the privileged helper: vhost endpoints through rtslib-fb.

This is the only module that imports rtslib-fb, and it does so lazily:
rtslib needs libudev at import time and touches configfs as soon as it
is used. Every rtslib and OS error is translated into a
:mod:`vhost_brick.exception` type here, in :func:`_translated`.
"""

import contextlib
import errno
import glob
import importlib
import logging
import os
import subprocess

from vhost_brick import exception
from vhost_brick import validation
from vhost_brick import vhostdev


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
_GENERATE_ATTEMPTS = 8


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
def _translated():
    """Translate rtslib and OS errors raised inside the block."""
    rtslib = _rtslib()
    try:
        yield rtslib
    except exception.VhostBrickException:
        raise
    except rtslib.RTSLibError as err:
        if 'Could not create' in str(err) and 'FabricModule' in str(err):
            raise exception.KernelSupportMissing(
                reason='%s; run "modprobe vhost_scsi"' % err) from err
        raise exception.BackendError(reason=str(err)) from err
    except OSError as err:
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


def _lookup_target(rtslib, wwn):
    """Return the vhost target with this WWN, or None."""
    if not os.path.isdir(VHOST_FABRIC):
        return None
    try:
        return rtslib.Target(_vhost_fabric(rtslib), wwn, mode='lookup')
    except _not_found_error(rtslib):
        return None


def _storage_of(rtslib, lun):
    """The LUN's storage object, or None for a LUN without its link.

    A LUN directory whose link is missing is what an interrupted create
    or delete (ours or another tool's) leaves between its two steps.
    """
    try:
        return lun.storage_object
    except rtslib.RTSLibError:
        return None


def _describe_lun(rtslib, lun):
    storage = _storage_of(rtslib, lun)
    if storage is None:
        return {'lun': lun.lun, 'device_path': '', 'backstore': ''}
    return {'lun': lun.lun, 'device_path': storage.udev_path or '',
            'backstore': storage.name}


def _describe_tpg(rtslib, target, tpg):
    return {'wwn': target.wwn, 'tpgt': tpg.tag, 'nexus': tpg.nexus or '',
            'luns': sorted((_describe_lun(rtslib, lun) for lun in tpg.luns),
                           key=lambda lun: lun['lun'])}


def _describe(rtslib, target):
    """The endpoint dict of a target: its lowest-numbered TPG."""
    tpgs = sorted(target.tpgs, key=lambda tpg: tpg.tag)
    if not tpgs:
        return {'wwn': target.wwn, 'tpgt': TPGT, 'nexus': '', 'luns': []}
    return _describe_tpg(rtslib, target, tpgs[0])


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


def _find_backstore(rtslib, name):
    """Our block backstore called name, or None.

    Found by one glob of core/ rather than rtslib-fb's process-wide
    backstore cache, which goes stale as soon as this process creates or
    deletes a backstore with an explicit index.
    """
    for path in glob.glob(os.path.join(CORE, 'iblock_*', glob.escape(name))):
        index = os.path.basename(os.path.dirname(path))[len('iblock_'):]
        return rtslib.BlockStorageObject(name, index=int(index))
    return None


def _free_hba_index():
    """An iblock HBA index no directory in core/ uses.

    rtslib-fb picks indexes from its cache of HBAs that hold a storage
    object, and so collides with an empty HBA directory (left by a crash
    between its two mkdirs), which it then cannot create again.
    """
    used = {int(entry[len('iblock_'):]) for entry in os.listdir(CORE)
            if entry.startswith('iblock_') and entry[7:].isdigit()}
    return min(set(range(len(used) + 1)) - used)


def _delete_own_backstore(rtslib, wwn):
    """Delete the backstore vhost_brick made for wwn; False if none."""
    storage = _find_backstore(rtslib, backstore_name(wwn))
    if storage is None:
        return False
    storage.delete()
    return True


def _set_nexus(rtslib, tpg, nexus):
    # rtslib gives every new vhost TPG a random nexus; replacing it means
    # dropping that one first, which the kernel allows until a LUN exists.
    rtslib.utils.fwrite(os.path.join(tpg.path, 'nexus'), 'NULL')
    tpg.nexus = nexus


def _build(rtslib, device_path, wwn, nexus):
    """Create backstore, target, TPG, nexus and LUN; undo all on failure."""
    created = []
    try:
        storage = rtslib.BlockStorageObject(backstore_name(wwn),
                                            dev=device_path,
                                            index=_free_hba_index())
        created.append(storage)
        target = rtslib.Target(_vhost_fabric(rtslib), wwn, mode='create')
        created.append(target)
        tpg = rtslib.TPG(target, TPGT, mode='create')
        _set_nexus(rtslib, tpg, nexus)
        rtslib.LUN(tpg, LUN, storage)
        return _describe(rtslib, target)
    except BaseException:
        for obj in reversed(created):
            try:
                obj.delete()
            except (rtslib.RTSLibError, OSError):
                LOG.exception('Rollback could not delete %s', obj)
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
            wwn = _unused_wwn(rtslib)
        else:
            target = _lookup_target(rtslib, wwn)
            if target is not None:
                return _check_retry(_describe(rtslib, target), device_path,
                                    nexus)
        _check_device_free(rtslib, device_path)
        if _delete_own_backstore(rtslib, wwn):
            LOG.warning('Removed backstore %s left behind by an '
                        'interrupted create', backstore_name(wwn))
        return _build(rtslib, device_path, wwn,
                      nexus or validation.generate_wwn())


def _unused_wwn(rtslib):
    for _attempt in range(_GENERATE_ATTEMPTS):
        wwn = validation.generate_wwn()
        if _lookup_target(rtslib, wwn) is None:
            return wwn
    raise exception.BackendError(reason='no unused WWN found after %d '
                                        'attempts' % _GENERATE_ATTEMPTS)


def unused_wwn():
    """Return a generated WWN that no vhost target uses."""
    with _translated() as rtslib:
        _prepare(rtslib)
        return _unused_wwn(rtslib)


def orphan_backstores():
    """Names of our backstores that no LUN of any fabric links to."""
    with _translated() as rtslib:
        _prepare(rtslib)
        linked = _linked_backstores()
        return sorted(
            storage.name for storage in rtslib.RTSRoot().storage_objects
            if storage.name.startswith(BACKSTORE_PREFIX) and
            storage.plugin == 'block' and storage.name not in linked)


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
    with _translated() as rtslib:
        _prepare(rtslib)
        storage = _find_backstore(rtslib, name)
        if storage is not None:
            storage.delete()


def show(wwn):
    """Return the endpoint dict of wwn; raise EndpointNotFound if absent."""
    wwn = validation.validate_wwn(wwn)
    with _translated() as rtslib:
        _prepare(rtslib)
        target = _lookup_target(rtslib, wwn)
        if target is None:
            raise exception.EndpointNotFound(wwn=wwn)
        return _describe(rtslib, target)


def list_endpoints():
    """Return one dict per TPG of every vhost target on the host."""
    with _translated() as rtslib:
        _prepare(rtslib)
        if not os.path.isdir(VHOST_FABRIC):
            return []
        return [_describe_tpg(rtslib, target, tpg)
                for target in _vhost_fabric(rtslib).targets
                for tpg in sorted(target.tpgs, key=lambda tpg: tpg.tag)]


def delete(wwn):
    """Delete endpoint wwn unless a hypervisor holds it.

    :returns: False when there was no such endpoint
    """
    wwn = validation.validate_wwn(wwn)
    with _translated() as rtslib:
        _prepare(rtslib)
        target = _lookup_target(rtslib, wwn)
        if target is None:
            if _delete_own_backstore(rtslib, wwn):
                LOG.warning('Removed backstore %s left behind by an '
                            'interrupted create', backstore_name(wwn))
            return False
        tpgs = list(target.tpgs)
        # Hold the endpoint while its LUNs go, so no hypervisor can
        # attach it half-deleted (one without a nexus cannot be held).
        with (vhostdev.claim(wwn) if any(tpg.nexus for tpg in tpgs)
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
        _delete_own_backstore(rtslib, wwn)
        return True


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
