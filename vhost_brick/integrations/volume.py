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

"""One Cinder volume, one endpoint: names both integrations agree on.

The Cinder target and the os-brick connector derive a volume's endpoint
from its id alone, so whoever holds only the volume id (Nova's persisted
connection data, Cinder's ``ensure_export`` after a reboot) finds the
same endpoint again. The id is also the LUN's unit serial: the guest
sees it, and a retried export can tell its own endpoint from another
volume's whose WWN happens to be the same.
"""

import hashlib
import os

from oslo_log import log as logging

from vhost_brick import exception
from vhost_brick import validation


LOG = logging.getLogger(__name__)


def volume_wwn(volume_id):
    """The endpoint WWN of a volume: LIO's naa.5001405 + 9 hex digits.

    Stable, derived from the id. 36 bits of a hash: two volumes on one
    host share a WWN with odds of about 1 in 14,000 at 10,000 volumes,
    and the second export then fails with EndpointExists (its serial
    differs) instead of reusing the first volume's endpoint.
    """
    if not volume_id:
        raise exception.Invalid(reason='a volume id is needed to name its '
                                       'vhost endpoint')
    digest = hashlib.sha256(str(volume_id).encode()).hexdigest()
    return validation.GENERATED_WWN_PREFIX + digest[:9]


def export(vhost, device_path, volume_id=None, wwn=None, read_only=False,
           discard=None):
    """Export a volume's block device; return its endpoint.

    The volume id, if known, is the LUN's unit serial; else the serial is
    generated.

    Retry-safe: the endpoint this volume already has is returned. An
    endpoint of this WWN that exports the same device with the same
    access but no serial of this volume (made before serials were set)
    or another discard (made before the backend changed its policy) is
    kept as it is, with a warning, rather than refused: a guest may be
    using it.

    :param vhost: a :class:`~vhost_brick.VhostExecutor`
    :param wwn: the endpoint's WWN; by default :func:`volume_wwn`
    :param discard: see :meth:`~vhost_brick.VhostExecutor.create_endpoint`
    :raises: Invalid (neither volume_id nor wwn), what
             :meth:`~vhost_brick.VhostExecutor.create_endpoint` raises;
             EndpointExists when the WWN serves anything else
    """
    wwn = wwn or volume_wwn(volume_id)
    serial = None if volume_id is None else str(volume_id)
    try:
        return vhost.create_endpoint(device_path, wwn=wwn, serial=serial,
                                     read_only=read_only, discard=discard)
    except exception.EndpointExists:
        current = vhost.get_endpoint(wwn)
        lun = current.luns[0] if current.luns else None
        if lun is None or lun.read_only != read_only or \
                os.path.normpath(lun.device_path) != \
                os.path.normpath(device_path):
            raise
        LOG.warning('vhost endpoint %(wwn)s of volume %(volume)s has unit '
                    'serial %(serial)s and discard %(discard)s, not what '
                    'was asked; kept as it is',
                    {'wwn': wwn, 'volume': volume_id, 'serial': lun.serial,
                     'discard': lun.discard})
        return current
