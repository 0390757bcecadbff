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

"""LIO backend of the privileged helper: vhost endpoints.

An endpoint is a vhost target with TPG 1, its nexus and LUN 0 linking
one of our backstores (:mod:`~vhost_brick.privileged.backstores`).
rtslib-fb checks WWNs and sets up configfs for a create; the objects
themselves are made, read and removed in configfs directly
(:mod:`~vhost_brick.privileged.configfs`), so that every operation costs
the same however many LIO objects the host has and does no more than the
kernel needs (rtslib-fb would look each object up again, level by
level).

This is the only module that imports rtslib-fb, and it does so lazily:
rtslib needs libudev at import time and touches configfs as soon as it
is used. Every rtslib and OS error is translated into a
:mod:`vhost_brick.exception` type here, in :func:`_translated`.
"""

import contextlib
import errno
import functools
import importlib
import logging
import os
import subprocess

from vhost_brick import exception
from vhost_brick.privileged import backstores
from vhost_brick.privileged import configfs
from vhost_brick.privileged import vhostdev
from vhost_brick import validation


LOG = logging.getLogger(__name__)

# rtslib-fb refuses to start unless the target dbroot directory exists.
DBROOT = '/etc/target'
TPGT = 1
LUN = 0
_GENERATE_ATTEMPTS = 8


def _rtslib():
    try:
        return importlib.import_module('rtslib_fb')
    except ImportError as err:
        raise exception.KernelSupportMissing(
            reason='rtslib-fb cannot be imported (%s); install rtslib-fb '
                   'and libudev' % err) from err


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
    if not os.path.isdir(configfs.TARGET_ROOT):
        _modprobe('configfs', 'target_core_mod')
        if not os.path.ismount(configfs.CONFIGFS):
            result = subprocess.run(
                ['mount', '-t', 'configfs', 'configfs', configfs.CONFIGFS],
                check=False, capture_output=True, text=True)
            if result.returncode:
                raise exception.KernelSupportMissing(
                    reason='configfs is not mounted at %s and mounting it '
                           'failed: %s' % (configfs.CONFIGFS,
                                           result.stderr.strip()))
        if not os.path.isdir(configfs.TARGET_ROOT):
            raise exception.KernelSupportMissing(
                reason='%s is missing; run "modprobe target_core_mod"'
                       % configfs.TARGET_ROOT)
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
        'configfs': os.path.ismount(configfs.CONFIGFS),
        'target_core_mod': os.path.isdir(configfs.TARGET_ROOT),
        'target_core_iblock': os.path.isdir('/sys/module/target_core_iblock'),
        # configfs shows the fabric only once someone makes a target.
        'vhost_scsi': (os.path.isdir('/sys/module/vhost_scsi') or
                       os.path.isdir(configfs.VHOST_FABRIC)),
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


def _ensure_vhost_fabric():
    """Make the vhost fabric's directory, loading vhost_scsi, if missing.

    What rtslib-fb's FabricModule does before its first target: the
    kernel makes the fabric only for a module that has registered it.
    """
    if os.path.isdir(configfs.VHOST_FABRIC):
        return
    _modprobe('vhost_scsi')
    try:
        os.mkdir(configfs.VHOST_FABRIC)
    except FileExistsError:
        pass
    except OSError as err:
        raise exception.KernelSupportMissing(
            reason='cannot make the vhost fabric in configfs (%s); run '
                   '"modprobe vhost_scsi"' % err) from err


def _describe(wwn):
    """The endpoint dict of a target: its lowest-numbered TPG.

    :raises: FileNotFoundError if there is no such target
    """
    described = configfs.read_target(wwn)
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


def _build(device, wwn, nexus, serial, read_only, discard):
    """Create backstore, target, TPG, nexus and LUN; undo all on failure.

    All in configfs directly. rtslib-fb would give the TPG a random
    nexus, to be dropped and written again, and look the TPG and the
    storage object up again for the LUN. The LUN is a directory and the
    kernel's link to the backstore, under a name of our choosing.

    :returns: the endpoint dict, from what was written and checked (the
              backstore's device and mode, by :func:`backstores.create`)
    """
    undo = []

    def make(directory):
        os.mkdir(directory)
        undo.append(functools.partial(os.rmdir, directory))

    try:
        name = backstores.name_of(wwn)
        backstore, discard = backstores.create(name, device, serial,
                                               read_only, discard)
        undo.append(functools.partial(backstores.remove, backstore))
        make(configfs.target_dir(wwn))
        tpg_dir = '%s/tpgt_%d' % (configfs.target_dir(wwn), TPGT)
        make(tpg_dir)
        configfs.write(tpg_dir + '/nexus', nexus)
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


def create(device, wwn, nexus, serial, read_only=False, discard=None,
           identities=None):
    """Create endpoint wwn exporting an admitted device.

    :param device: a :class:`devices.Device` from :func:`devices.admit`
    :param nexus: the nexus WWN, or None to generate one
    :param serial: the LUN's unit serial
    :param discard: see :func:`backstores.create`
    :param identities: a :class:`backstores.Identities` to refuse a
                       serial whose guest-visible identity is taken; None
                       for a restore, which brings back what was accepted
    :raises: EndpointExists if wwn exists (see :func:`existing` for
             retries), DeviceInUse if another LIO object uses the device,
             SerialInUse
    """
    wwn = validation.validate_wwn(wwn)
    nexus = validation.generate_wwn() if nexus is None else \
        validation.validate_nexus(nexus)
    serial = validation.validate_serial(serial)
    with _translated() as rtslib:
        _prepare(rtslib)
        if os.path.isdir(configfs.target_dir(wwn)):
            raise exception.EndpointExists(wwn=wwn,
                                           reason='it was made meanwhile')
        _check_wwn_supported(rtslib, wwn)
        backstores.refuse_users(device)
        backstores.remove_leftover(wwn)
        name = backstores.name_of(wwn)
        if identities is not None:
            identities.claim(serial, name)
        try:
            _ensure_vhost_fabric()
            return _build(device, wwn, nexus, serial,
                          validation.validate_read_only(read_only),
                          validation.validate_discard(discard))
        except BaseException:
            if identities is not None:
                identities.release(name)
            raise


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
        if not os.path.isdir(configfs.target_dir(wwn)):
            return wwn
    raise exception.BackendError(reason='no unused WWN found after %d '
                                        'attempts' % _GENERATE_ATTEMPTS)


def device_users(rdev):
    """Names (HBA/name) of the LIO storage objects that use device rdev."""
    with _os_errors_translated():
        return backstores.users(rdev)


def orphan_backstores():
    """Names of our backstores that no LUN of any fabric links to."""
    with _os_errors_translated():
        return backstores.orphans()


def delete_backstore(name):
    """Delete one of our backstores by name (no-op if absent)."""
    with _os_errors_translated():
        backstores.delete(name)


def show(wwn):
    """Return the endpoint dict of wwn; raise EndpointNotFound if absent."""
    wwn = validation.validate_wwn(wwn)
    with _os_errors_translated():
        try:
            return _describe(wwn)
        except FileNotFoundError:
            raise exception.EndpointNotFound(wwn=wwn) from None


def stats(wwn):
    """LIO's counters of each LUN of endpoint wwn, as :func:`show` sees it.

    :returns: ``{"wwn": wwn, "luns": [{"lun": N, "commands": ...}]}``
    :raises: EndpointNotFound
    """
    wwn = validation.validate_wwn(wwn)
    with _os_errors_translated():
        try:
            return configfs.read_stats(wwn)
        except FileNotFoundError:
            raise exception.EndpointNotFound(wwn=wwn) from None


def list_stats():
    """:func:`stats` of every vhost endpoint on the host."""
    with _os_errors_translated():
        return configfs.read_each_target(configfs.read_stats)


def list_endpoints():
    """Return one dict per TPG of every vhost target on the host."""
    with _os_errors_translated():
        return [tpg for tpgs in configfs.read_each_target(
            configfs.read_target) for tpg in tpgs]


def delete(wwn, claimer=None):
    """Delete endpoint wwn unless a hypervisor holds it.

    In configfs directly, as the floor of the benchmark does it: rtslib-fb
    would look every object up again, level by level, on the way down.

    :param claimer: a :class:`vhostdev.Claimer` to hold the endpoint with,
                    so that a batch shares one vhost device; None uses one
                    of its own
    :returns: False when there was no such endpoint
    """
    wwn = validation.validate_wwn(wwn)
    with _os_errors_translated():
        target = configfs.target_dir(wwn)
        if not os.path.isdir(target):
            backstores.remove_leftover(wwn)
            return False
        tpgs = ['%s/tpgt_%d' % (target, tag)
                for tag in configfs.numbered(target, 'tpgt_')]
        with (vhostdev.Claimer() if claimer is None
              else contextlib.nullcontext(claimer)) as claimer:
            if wwn in claimer.named_by_hypervisors():
                LOG.warning('Not deleting vhost endpoint %s: a hypervisor '
                            'that is paused or not started names it', wwn)
                raise exception.EndpointInUse(wwn=wwn)
            # Hold the endpoint while its LUNs go, so no hypervisor can
            # attach it half-deleted (one without a nexus cannot be held).
            with (claimer.claim(wwn)
                  if any(configfs.read(tpg + '/nexus') for tpg in tpgs)
                  else contextlib.nullcontext()):
                acls, luns = _check_removable(wwn, target, tpgs)
                _remove_acls(acls)
                removed = _remove_luns(luns)
        try:
            for directory in tpgs + [target]:
                os.rmdir(directory)
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise
            # A hypervisor attached between the claim and the rmdir.
            _restore_luns(removed)
            raise exception.EndpointInUse(wwn=wwn) from err
        # Our backstore is where our LUN linked it, in whichever HBA.
        own = {storage for _lun, _link, storage in removed
               if os.path.basename(storage) == backstores.name_of(wwn)}
        for path in own:
            backstores.remove(path)
        if not own:
            backstores.remove_leftover(wwn)
        return True


def _check_removable(wwn, target, tpgs):
    """Refuse, before removing anything, a delete that would stop half-way.

    The privsep daemon keeps no capabilities: it removes an entry only
    from a directory it may write. libvirt's DAC driver chowns a target's
    directory to QEMU's user while a domain uses it and gives it back
    after; one not given back would let the LUNs go and then stop at the
    TPG.

    :returns: the node ACL and the LUN directories of tpgs
    """
    acls = [acl for tpg in tpgs for acl in configfs.glob_dirs(tpg, 'acls/*')]
    luns = ['%s/lun/lun_%d' % (tpg, number) for tpg in tpgs
            for number in configfs.numbered(tpg + '/lun', 'lun_')]
    directories = [os.path.dirname(target), target]
    directories += [path for tpg in tpgs
                    for path in (tpg, tpg + '/acls', tpg + '/lun')]
    directories += [path for acl in acls
                    for path in [acl] + configfs.glob_dirs(acl, 'lun_*')]
    for directory in directories + luns:
        if not os.access(directory, os.W_OK | os.X_OK, effective_ids=True):
            raise exception.EndpointNotOwned(
                wwn=wwn, path=directory, uid=os.stat(directory).st_uid)
    return acls, luns


def _remove_acls(acls):
    """Remove node ACLs, each after its mapped LUNs, as rtslib-fb does.

    vhost_brick makes none, another tool may have. Like rtslib-fb's
    delete, a delete that fails later does not put them back.
    """
    for acl in acls:
        for mapped in configfs.glob_dirs(acl, 'lun_*'):
            for entry in os.scandir(mapped):
                if entry.is_symlink():
                    os.unlink(entry.path)
            os.rmdir(mapped)
        os.rmdir(acl)


def _remove_luns(luns):
    """Delete the LUN directories luns; return what puts them back.

    A LUN goes when its link to the storage object does; its directory
    after. One without its link, what an interrupted create or delete
    (ours or another tool's) leaves between its two steps, is only a
    directory.

    :returns: (LUN directory, link name, storage object path) of each
              LUN that exported a storage object
    """
    removed = []
    try:
        for lun in luns:
            link = configfs.lun_link(lun)
            if link is not None:
                os.unlink(os.path.join(lun, link[0]))
                removed.append((lun,) + link)
            os.rmdir(lun)
    except BaseException:
        _restore_luns(removed)
        raise
    return removed


def _restore_luns(removed):
    for lun, link, storage in removed:
        try:
            if not os.path.isdir(lun):
                os.mkdir(lun)
            os.symlink(storage, os.path.join(lun, link))
        except OSError:
            LOG.exception('Could not restore LUN %s', lun)
