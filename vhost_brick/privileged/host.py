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

"""The privileged operations: LIO changes recorded in the state file.

Every function here runs as root under the host lock. Changes to LIO go
through :mod:`vhost_brick.privileged.lio`; the record of what
vhost_brick owns goes through :mod:`vhost_brick.privileged.state`,
written as an intent before LIO is touched and settled after it. The
batch functions do the same endpoint by endpoint, in one call and one
lock hold: each endpoint is all-or-nothing, and its failure is reported
without stopping the rest.
"""

import contextlib
import logging
import os
import uuid

from vhost_brick import exception
from vhost_brick.privileged import backstores
from vhost_brick.privileged import devices
from vhost_brick.privileged import lio
from vhost_brick.privileged import state
from vhost_brick.privileged import vhostdev
from vhost_brick import validation


LOG = logging.getLogger(__name__)


def _fields(entry):
    """An endpoint or record entry without its key and status."""
    return {key: value for key, value in entry.items()
            if key not in ('wwn', 'status')}


def _converge(record, wwn):
    """Finish what a crashed call left for wwn; return its live entry."""
    entry = record.get(wwn)
    if entry is None or entry['status'] == state.PRESENT:
        return entry
    LOG.warning('Converging endpoint %(wwn)s left %(status)s by an '
                'interrupted call', {'wwn': wwn, 'status': entry['status']})
    lio.delete(wwn)
    record.discard(wwn)
    return None


def create(record, allowed_devices, device_path, wwn=None, nexus=None,
           serial=None, read_only=False, discard=None):
    """Create an endpoint and record it; see VhostExecutor.create_endpoint.

    :param allowed_devices: the root configuration's device patterns
    """
    spec, = validation.validate_endpoint_specs([{
        'device_path': device_path, 'wwn': wwn, 'nexus': nexus,
        'serial': serial, 'read_only': read_only, 'discard': discard}])
    return _create(record, allowed_devices,
                   backstores.Identities(record.identities), **spec)


def _admit(device_path, allowed_devices):
    """devices.admit, naming the LIO object that holds a busy device."""
    try:
        return devices.admit(device_path, allowed_devices)
    except exception.DeviceInUse as err:
        if err.kwargs['rule'] != devices.HELD_EXCLUSIVELY:
            raise
        users = lio.device_users(os.stat(device_path).st_rdev)
        if not users:
            raise
        raise exception.DeviceInUse(
            device=device_path, rule=devices.LIO_BACKSTORE,
            reason='LIO storage object %s uses it' % ', '.join(users)
        ) from err


def _create(record, allowed_devices, identities, device_path, wwn, nexus,
            serial, read_only, discard):
    """create() of input already validated.

    :param identities: the :class:`backstores.Identities` of the call
    """
    wwn = lio.unused_wwn() if wwn is None else wwn
    previous = _converge(record, wwn)
    found = lio.existing(wwn, device_path, nexus=nexus, serial=serial,
                         read_only=read_only, discard=discard)
    if found is not None:
        return found
    device = _admit(device_path, allowed_devices)
    serial = str(uuid.uuid4()) if serial is None else serial
    lun = {'lun': lio.LUN, 'device_path': device_path,
           'backstore': backstores.name_of(wwn), 'serial': serial,
           'read_only': read_only, 'discard': discard,
           'identity': device.identity}
    if previous is None:
        record.set(wwn, state.CREATING, luns=[lun])
    try:
        endpoint = lio.create(device, wwn, nexus, serial, read_only,
                              discard, identities=identities)
    except BaseException:
        if previous is None:
            record.discard(wwn)
        raise
    record.set(wwn, state.PRESENT, nexus=endpoint['nexus'],
               tpgt=endpoint['tpgt'], luns=[lun])
    return endpoint


def delete(record, wwn, claimer=None):
    """Delete an endpoint and forget it; False if there was none.

    :param claimer: see :func:`vhost_brick.privileged.lio.delete`
    """
    wwn = validation.validate_wwn(wwn)
    previous = record.get(wwn)
    if previous is not None:
        record.set(wwn, state.DELETING, **_fields(previous))
    try:
        deleted = lio.delete(wwn, claimer=claimer)
    except BaseException:
        if previous is not None and previous['status'] == state.PRESENT:
            record.set(wwn, state.PRESENT, **_fields(previous))
        raise
    record.discard(wwn)
    return deleted or previous is not None


@contextlib.contextmanager
def _reported(failed, item):
    """Run one item of a batch; append its failure to failed, not raise."""
    try:
        yield
    except exception.VhostBrickException as err:
        failed.append({'item': item, 'error': exception.to_report(err)})
    except Exception as err:
        LOG.exception('Batch item %s failed unexpectedly', item)
        failed.append({'item': item, 'error': exception.to_report(
            exception.BackendError(reason=str(err)))})


def create_many(record, allowed_devices, specs):
    """Create each endpoint of specs as :func:`create` would.

    :param specs: mappings with ``device_path`` and optional ``wwn``,
                  ``nexus``, ``serial`` and ``read_only``; the whole
                  batch is refused if one is invalid
    :returns: dict with ``created`` (endpoint dicts) and ``failed``
              (``{"item": spec, "error": report}`` dicts)
    """
    specs = validation.validate_endpoint_specs(specs)
    report = {'created': [], 'failed': []}
    identities = backstores.Identities(record.identities)
    for spec in specs:
        with _reported(report['failed'], spec):
            report['created'].append(
                _create(record, allowed_devices, identities, **spec))
    return report


def delete_many(record, wwns):
    """Delete each endpoint of wwns as :func:`delete` would.

    :returns: dict with ``deleted`` and ``absent`` (WWNs) and ``failed``
              (``{"item": wwn, "error": report}`` dicts)
    """
    wwns = validation.validate_wwns(wwns)
    report = {'deleted': [], 'absent': [], 'failed': []}
    with vhostdev.Claimer() as claimer:
        for wwn in wwns:
            with _reported(report['failed'], wwn):
                deleted = delete(record, wwn, claimer=claimer)
                report['deleted' if deleted else 'absent'].append(wwn)
    return report


def restore(record, allowed_devices):
    """Recreate recorded endpoints that LIO lost, e.g. after a reboot.

    Endpoints come back with the same WWN, nexus, unit serial, read-only
    flag and discard policy, on a device admitted as for a create. A
    device whose identity differs from the recorded one (its name now
    belongs to another disk) is refused. Ones already present are left alone, a
    refused or missing device is reported without stopping the others,
    and nothing that is not in the record is touched. Serials are not
    refused again for a guest identity another storage object gives
    (:func:`create` does): a restore brings back what was accepted.

    :returns: dict with ``restored`` and ``already_present`` (lists of
              endpoint dicts) and ``failed`` (``{"item": wwn, "error":
              report}`` dicts)
    """
    report = {'restored': [], 'already_present': [], 'failed': []}
    for wwn, entry in sorted(record.load().items()):
        with _reported(report['failed'], wwn):
            if entry['status'] != state.PRESENT:
                _converge(record, wwn)
                continue
            live = _live(wwn)
            if live is not None and _matches(live, entry):
                report['already_present'].append(live)
                continue
            if live is not None:
                LOG.warning('Endpoint %s differs from its record; '
                            'rebuilding it', wwn)
                lio.delete(wwn)
            report['restored'].append(
                _recreate(record, allowed_devices, wwn, entry))
    for failure in report['failed']:
        LOG.error('Cannot restore endpoint %(wwn)s: %(error)s',
                  {'wwn': failure['item'],
                   'error': failure['error']['message']})
    return report


def _recreate(record, allowed_devices, wwn, entry):
    """Create wwn again as entry records it; record what was applied."""
    lun = dict(entry['luns'][0])
    device = _admit(lun['device_path'], allowed_devices)
    if lun.get('identity') is not None and \
            device.identity != lun['identity']:
        raise exception.DeviceNotAllowed(
            device=lun['device_path'], rule=devices.IDENTITY,
            reason='it is now %s, not the recorded %s'
                   % (device.identity, lun['identity']))
    # Entries of format 2 had neither: the serial is fixed from now on.
    lun.setdefault('serial', str(uuid.uuid4()))
    lun.setdefault('read_only', False)
    lun.setdefault('identity', device.identity)
    # Before format 4: discard as the device has it.
    lun.setdefault('discard', None)
    endpoint = lio.create(device, wwn, entry['nexus'], lun['serial'],
                          lun['read_only'], lun['discard'])
    if lun != entry['luns'][0]:
        record.set(wwn, state.PRESENT, **dict(_fields(entry), luns=[lun]))
    return endpoint


def _live(wwn):
    try:
        return lio.show(wwn)
    except exception.EndpointNotFound:
        return None


def _matches(live, entry):
    """Whether a live endpoint is what entry records.

    Entries of format 2 have no serial or read-only flag to compare; a
    discard policy of None accepts what the device gave.
    """
    if live['nexus'] != entry['nexus'] or \
            len(live['luns']) != len(entry['luns']):
        return False
    return all(live_lun.get(key) == lun[key]
               for live_lun, lun in zip(live['luns'], entry['luns'])
               for key in ('device_path', 'serial', 'read_only', 'discard')
               if lun.get(key) is not None)


def cleanup(record):
    """Remove what interrupted calls of ours left behind.

    Only objects recognisable as ours are considered: endpoints recorded
    as being created or deleted, and backstores named by vhost_brick that
    no LUN uses (with their LUN-less target, if any).

    :returns: dict with ``endpoints`` (WWNs removed) and ``backstores``
              (names removed)
    """
    removed = {'endpoints': [], 'backstores': []}
    for name in record.remove_temporaries():
        LOG.warning('Removed state file %s left by an interrupted call',
                    name)
    for wwn, entry in sorted(record.load().items()):
        if entry['status'] != state.PRESENT and _converge(record, wwn) is None:
            removed['endpoints'].append(wwn)
    recorded = record.load()
    for name in lio.orphan_backstores():
        wwn = 'naa.' + name[len(backstores.PREFIX):]
        live = _live(wwn)
        if live is not None and not live['luns'] and wwn not in recorded:
            lio.delete(wwn)
            removed['endpoints'].append(wwn)
        lio.delete_backstore(name)
        removed['backstores'].append(name)
    return removed
