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

"""vhost_brick's block backstores: LIO storage objects on admitted devices.

Made, tuned and removed in configfs directly: rtslib-fb (2.2.4) makes
the HBA directory of every storage object it creates and fails when that
directory exists, so it cannot put a second one in our HBA, and its
StorageObject.delete() looks for LUNs using the object in every TPG of
every fabric. Also here: what the host's other storage objects tell a
create, the LIO users of a device and the guest-visible identities
already taken. Callers translate OS errors.
"""

import contextlib
import errno
import glob
import logging
import os

from vhost_brick import exception
from vhost_brick.privileged import configfs
from vhost_brick.privileged import devices


LOG = logging.getLogger(__name__)

# Backstores this library creates are named after their endpoint, which
# is how delete and cleanup recognise them and leave all others alone.
PREFIX = 'vhost-brick-'
# All of them live in this one iblock HBA (the kernel takes any number
# of devices per HBA), so a backstore is found by its path, with no
# scan of core/ and no search for a free HBA index. rtslib-fb gives each
# backstore an HBA of its own from 0 up, far from this number.
HBA_INDEX = 30306
HBA = 'iblock_%d' % HBA_INDEX
# The IEEE company id LIO puts in a NAA designator unless told another
# (the storage object's wwn/company_id); ours keep it.
LIO_COMPANY_ID = 0x001405
# spc_gen_naa_6h_vendor_specific takes this many hex digits of the serial.
_NAA_SERIAL_DIGITS = 25
_HEX_DIGITS = frozenset('0123456789abcdef')


def name_of(wwn):
    """Name of the block backstore vhost_brick creates for endpoint wwn."""
    return PREFIX + wwn[len('naa.'):]


def path_of(name):
    return os.path.join(configfs.CORE, HBA, name)


def find(name):
    """The configfs path of our backstore called name, or None."""
    path = path_of(name)
    return path if os.path.isdir(path) else None


def locate(name):
    """Like :func:`find`, also finding one in an HBA of its own.

    Versions before HBA_INDEX gave each backstore its own HBA; finding
    those takes a scan of core/, so only cleanup paths look for them.
    """
    return find(name) or next(iter(configfs.glob_dirs(
        configfs.CORE, 'iblock_*/' + glob.escape(name))), None)


def naa_designator(serial, company_id=LIO_COMPANY_ID):
    """The NAA designator LIO derives from serial, as the guest shows it.

    As the guest's ``device/wwid`` reads it. What
    spc_gen_naa_6h_vendor_specific builds: NAA 6, the company id, then
    the first 25 hex digits found in the serial (either case, other
    characters skipped), padded with zeros. A storage object without a
    serial has none (None).
    """
    if not serial:
        return None
    return 'naa.6%06x%s' % (company_id, _serial_digits(serial))


def _serial_digits(serial):
    """The serial's part of its designator: 25 hex digits, zero-padded."""
    digits = [char for char in serial.lower() if char in _HEX_DIGITS]
    return ''.join(digits[:_NAA_SERIAL_DIGITS]).ljust(_NAA_SERIAL_DIGITS,
                                                      '0')


def _company_id(storage_dir):
    """The company id a storage object's designator carries."""
    try:
        return int(configfs.read(os.path.join(storage_dir, 'wwn',
                                              'company_id')), 16)
    except FileNotFoundError:  # a kernel without the attribute
        return LIO_COMPANY_ID


def _owner(hba, name):
    return '%s/%s' % (hba, name)


class Identities:
    """The NAA designators the host's storage objects give their guests.

    Other LIO users' objects are few and their serials read from
    configfs; ours are many, and their serial digits are listed from a
    :class:`~vhost_brick.privileged.state.IdentityIndex` that our HBA's
    listing settles: an entry whose backstore is gone is dropped, and a
    backstore without exactly one entry is read and indexed. So a create
    costs two directory listings, not a read per endpoint on the host.
    Loaded at the first claim and kept for the call (a batch shares it);
    a candidate owner is read again before it refuses, so one removed
    or changed since does not. Use within one call under the host lock.
    """

    def __init__(self, index):
        self._index = index
        # Others' serial digits to {owner (HBA/name): its configfs path}.
        self._others = None
        # Our backstores' names to their serial digits.
        self._ours = None

    def claim(self, serial, name):
        """Index serial as our backstore name's, unless another gives it.

        Before the backstore is made, so that a crash leaves it indexed;
        :meth:`release` undoes it for a create that failed.

        :param name: the backstore about to get serial, which may hold it
                     already (an interrupted create's leftover)
        :raises: SerialInUse
        """
        self._load()
        digits = _serial_digits(serial)
        others = [owner for owner in self._owners(digits)
                  if owner != _owner(HBA, name)]
        if others:
            raise exception.SerialInUse(serial=serial,
                                        designator=naa_designator(serial),
                                        owner=', '.join(others))
        previous = self._ours.pop(name, None)
        self._ours[name] = digits
        self._index.update(new=[(name, digits)],
                           stale=[(name, previous)] if previous else [])

    def release(self, name):
        """Forget a claim whose backstore was not made after all."""
        self._load()
        digits = self._ours.pop(name, None)
        if digits is not None:
            self._index.update(stale=[(name, digits)])

    def _owners(self, digits):
        """Owners whose serial gives digits with LIO's company id."""
        candidates = dict(self._others.get(digits, {}))
        candidates.update((_owner(HBA, name), path_of(name))
                          for name, ours in self._ours.items()
                          if ours == digits)
        return [owner for owner, path in sorted(candidates.items())
                if _gives(path, digits)]

    def _load(self):
        if self._others is None:
            self._others = {}
            self._read_others()
            self._list_ours()

    def _read_others(self):
        """Read the serial of every storage object outside our HBA."""
        for hba, name, path in configfs.storage_objects(skip_hba=HBA):
            with contextlib.suppress(FileNotFoundError):
                serial = configfs.read_serial(path)
                if serial:
                    self._others.setdefault(_serial_digits(serial), {})[
                        _owner(hba, name)] = path

    def _list_ours(self):
        """Take our backstores' digits from the index, settling it.

        The part of a create whose cost grows with our endpoints: built
        with comprehensions, and configfs paths made only for the few
        backstores read or compared, not for every one.
        """
        indexed = {}
        for name, digits in self._index.entries():
            indexed.setdefault(name, []).append(digits)
        present = _names_in_our_hba()
        stale = [(name, digits) for name, entries in indexed.items()
                 if name not in present or len(entries) > 1
                 for digits in entries]
        self._ours = {name: entries[0] for name, entries in indexed.items()
                      if len(entries) == 1 and name in present}
        new = []
        for name in sorted(present.difference(self._ours)):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                serial = configfs.read_serial(path_of(name))
                if serial:
                    self._ours[name] = _serial_digits(serial)
                    new.append((name, self._ours[name]))
        if new or stale:
            self._index.update(new=new, stale=stale)


def _names_in_our_hba():
    """Names in our HBA's directory: its objects, hba_info and hba_mode."""
    try:
        return set(os.listdir(os.path.join(configfs.CORE, HBA)))
    except FileNotFoundError:
        return set()


def _gives(path, digits):
    """Whether the storage object at path gives the designator of digits.

    Read again: it may have been removed since it was listed.
    """
    try:
        serial = configfs.read_serial(path)
        return (bool(serial) and _serial_digits(serial) == digits and
                _company_id(path) == LIO_COMPANY_ID)
    except FileNotFoundError:
        return False


def users(rdev, include_own=True):
    """Names (HBA/name) of the storage objects that use rdev.

    Our own backstores are enabled iblock ones, which the kernel already
    reports through the exclusive open (:func:`devices.admit`), so the
    create path skips them: its cost then grows with the other LIO
    users' objects, not with our endpoints.
    """
    names = []
    for hba, name, path in configfs.storage_objects(
            skip_hba=None if include_own else HBA):
        with contextlib.suppress(FileNotFoundError):
            if rdev in configfs.storage_devices(path):
                names.append(_owner(hba, name))
    return names


def refuse_users(device):
    """Refuse a device that a storage object not of ours uses."""
    found = users(device.rdev, include_own=False)
    if found:
        raise exception.DeviceInUse(
            device=device.path, rule=devices.LIO_BACKSTORE,
            reason='LIO storage object %s uses it' % ', '.join(found))


def create(name, device, serial, read_only, discard):
    """Create, enable and tune our block backstore on an admitted device.

    The kernel opens the device by the name in ``control``, so it gets
    the resolved node that was checked, and what it opened is verified.

    :param discard: see :func:`_tune`
    :returns: the backstore's configfs path, and whether the guest gets
              discard
    """
    path = path_of(name)
    with contextlib.suppress(FileExistsError):
        os.mkdir(os.path.dirname(path))
    try:
        os.mkdir(path)
        # udev_path= in control is what the kernel opens; the udev_path
        # attribute is what readers (and rtslib, targetcli) see. Neither
        # path can hold a comma, which would start another option.
        configfs.write(os.path.join(path, 'control'),
                       'udev_path=%s,readonly=%d' % (device.node, read_only))
        configfs.write(os.path.join(path, 'udev_path'), device.path)
        configfs.write(os.path.join(path, 'enable'), '1')
        _check_served(path, device, read_only)
        discard = _tune(path, device, discard)
        # Before any LUN links it: the kernel refuses a new serial then.
        configfs.write(os.path.join(path, 'wwn', 'vpd_unit_serial'), serial)
    except BaseException:
        remove(path)
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
    supported = configfs.read(os.path.join(
        attrib, 'max_unmap_block_desc_count')) not in ('', '0')
    if discard and not supported:
        raise exception.DiscardNotSupported(
            device=device.path, reason='its queue reports no discard')
    if discard is None:
        discard = supported
    if discard:
        configfs.write(os.path.join(attrib, 'emulate_tpu'), '1')
    if devices.acknowledges_fua_from_cache(device.rdev):
        # The guest then flushes instead, and iblock honours flushes.
        configfs.write(os.path.join(attrib, 'emulate_fua_write'), '0')
    return discard


def _check_served(path, device, read_only):
    """Refuse a backstore that serves another device than was admitted."""
    info = configfs.read(os.path.join(path, 'info'))
    served = configfs.INFO_DEVICE.search(info)
    flag = configfs.INFO_READ_ONLY.search(info)
    served = served and os.makedev(*map(int, served.groups()))
    if served != device.rdev or not flag or \
            bool(int(flag.group(1))) != read_only:
        raise exception.DeviceNotAllowed(
            device=device.path, rule=devices.CHANGED,
            reason='LIO serves %r, not %d:%d%s as checked'
                   % (info, os.major(device.rdev), os.minor(device.rdev),
                      ' read-only' if read_only else ''))


def remove(path):
    """Remove our backstore at path, and its HBA if nothing else uses it.

    No LUN of ours links it any more, so one rmdir does it. A LUN that
    is not ours still linking it keeps it: the kernel refuses (EBUSY)
    and we leave it.
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


def remove_leftover(wwn):
    """Remove a backstore of ours for wwn that no LUN of ours uses.

    Only the shared HBA is looked at, so that the delete path never scans
    core/; a leftover in an HBA of its own is cleanup's to find.
    """
    path = find(name_of(wwn))
    if path is not None:
        LOG.warning('Removing backstore %s left behind by an interrupted '
                    'call', path)
        remove(path)


def orphans():
    """Names of our backstores that no LUN of any fabric links to."""
    ours = {os.path.basename(path) for path in configfs.glob_dirs(
        configfs.CORE, 'iblock_*/' + glob.escape(PREFIX) + '*')}
    return sorted(ours - configfs.linked_storage_names()) if ours else []


def delete(name):
    """Delete one of our backstores by name (no-op if absent)."""
    if not name.startswith(PREFIX):
        raise exception.BackendError(reason='%s is not a vhost_brick '
                                            'backstore' % name)
    path = locate(name)
    if path is not None:
        remove(path)
