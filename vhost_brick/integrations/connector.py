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

"""os-brick connector that hands the volume to a guest over vhost-scsi.

:class:`VhostConnector` wraps any other os-brick connector: that one
attaches the volume to the host, this one exports the resulting block
device as a vhost endpoint for QEMU. The endpoint is named after the
volume id in the connection properties, so a caller holding only what
it persisted (Nova's ``connection_info['data']``) disconnects it, and a
repeated connect returns the same endpoint. Requires the os-brick
package (``pip install vhost-brick[os-brick]``).
"""

import os

from os_brick import initiator
from os_brick.initiator import connector as brick_connector
from os_brick.initiator import initiator_connector
from oslo_log import log as logging

from vhost_brick import attach
from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick import executor
from vhost_brick.integrations import volume as volume_export
from vhost_brick.privileged import vhostdev


LOG = logging.getLogger(__name__)

#: connection_properties key that pins the endpoint's WWN (optional).
WWN_PROPERTY = 'vhost_wwn'
#: What get_connector_properties adds: whether this host serves vhost.
CONNECTOR_PROPERTY = 'vhost_scsi'
#: connection_properties key naming the os-brick protocol of the inner
#: connector where the consumer picks it from the data (Nova's driver);
#: LOCAL if absent, as for the volumes of vhost_brick's Cinder target.
INNER_PROTOCOL_PROPERTY = 'vhost_inner_protocol'
#: os-brick protocols whose connectors attach a volume over a network,
#: so that another host can attach the same device: a guest on such a
#: volume can be live-migrated. Any other (LOCAL, or one not listed) pins
#: the guest to its host.
SHARED_PROTOCOLS = frozenset((
    initiator.ISCSI, initiator.ISER, initiator.FIBRE_CHANNEL,
    initiator.NVME, initiator.NVMEOF, initiator.RBD, initiator.SCALEIO,
    initiator.STORPOOL))


def factory(protocol, root_helper, driver=None, use_multipath=False,
            device_scan_attempts=initiator.DEVICE_SCAN_ATTEMPTS_DEFAULT,
            arch=None, vhost_executor=None, *args, **kwargs):
    """os-brick's connector factory, its connector wrapped for vhost.

    Takes the arguments of ``InitiatorConnector.factory``; ``protocol``
    names the inner connector (``ISCSI``, ``RBD``, ``LOCAL``, ...). An
    RBD volume is mapped on the host (``do_local_attach``, krbd) unless
    told otherwise: vhost exports a block device, not librbd's handle.
    """
    if isinstance(protocol, str) and protocol.upper() == initiator.RBD:
        kwargs.setdefault('do_local_attach', True)
    inner = brick_connector.InitiatorConnector.factory(
        protocol, root_helper, driver=driver, use_multipath=use_multipath,
        device_scan_attempts=device_scan_attempts, arch=arch, *args,
        **kwargs)
    return VhostConnector(root_helper, inner, driver=driver,
                          execute=kwargs.get('execute'),
                          vhost_executor=vhost_executor, protocol=protocol)


def get_connector_properties(root_helper, my_ip, multipath,
                             enforce_multipath, host=None, execute=None):
    """os-brick's connector properties, plus ``vhost_scsi``.

    What Nova would send Cinder; the vhost target refuses a connector
    without ``vhost_scsi: True``.
    """
    properties = brick_connector.get_connector_properties(
        root_helper, my_ip, multipath, enforce_multipath, host=host,
        execute=execute)
    properties.update(VhostConnector.get_connector_properties(root_helper))
    return properties


class VhostConnector(initiator_connector.InitiatorConnector):
    """Attach with an inner connector, then export over vhost-scsi.

    :param root_helper: as for every os-brick connector; it starts
                        vhost_brick's privsep daemon
    :param inner: the os-brick connector that attaches the volume to
                  this host (e.g. an iSCSI, RBD or local connector)
    :param execute: used by the endpoint executor only with
                    ``[vhost_brick] privileged_mode = helper``
    :param vhost_executor: the :class:`~vhost_brick.VhostExecutor` to
                           use instead of one built from the above
    :param protocol: the inner connector's os-brick protocol, which
                     tells whether the volume can follow a migrating
                     guest (:attr:`migratable`); unknown: it cannot
    """

    def __init__(self, root_helper, inner, driver=None, execute=None,
                 vhost_executor=None, protocol=None, *args, **kwargs):
        super().__init__(root_helper, driver=driver, execute=execute,
                         *args, **kwargs)
        self.inner = inner
        self.protocol = protocol
        self.vhost = vhost_executor or executor.VhostExecutor.for_service(
            root_helper, execute)

    @staticmethod
    def get_connector_properties(root_helper, *args, **kwargs):
        """Tell Cinder this host can serve vhost-scsi to its guests."""
        return {CONNECTOR_PROPERTY:
                os.path.exists(vhostdev.VHOST_SCSI_DEVICE)}

    @property
    def migratable(self):
        """Whether a guest on this volume can be live-migrated.

        True where the inner connector attaches over a network
        (:data:`SHARED_PROTOCOLS`): the destination host attaches the
        same device and exports it under the same WWN and serial, both
        derived from the volume id. False for a device of this host
        alone (``LOCAL``: an LV, a local disk), which cannot follow.
        """
        return isinstance(self.protocol, str) and \
            self.protocol.upper() in SHARED_PROTOCOLS

    @staticmethod
    def _wwn(connection_properties):
        """The endpoint's WWN: pinned, or derived from the volume id."""
        return connection_properties.get(WWN_PROPERTY) or \
            volume_export.volume_wwn(connection_properties.get('volume_id'))

    def connect_volume(self, connection_properties):
        """Attach with the inner connector and export the device.

        The endpoint is named by ``vhost_wwn`` if the properties pin one,
        else after ``volume_id``, which is also the LUN's unit serial;
        ``access_mode: ro`` exports it read-only; ``discard: False``
        (Cinder's word that the volume must not be discarded) hides
        discard from the guest, which otherwise gets it exactly when the
        device has it. Connecting a volume again returns the endpoint it
        has.

        :returns: the inner connector's device info, plus ``vhost``
                  (the endpoint as a dict) and ``vhost_connection_info``
        :raises: Invalid (no volume_id and no vhost_wwn; nothing is
                 attached), and what the inner connector and
                 :meth:`~vhost_brick.VhostExecutor.create_endpoint` raise
        """
        wwn = self._wwn(connection_properties)
        device_info = self.inner.connect_volume(connection_properties)
        try:
            exported = volume_export.export(
                self.vhost, device_info['path'],
                connection_properties.get('volume_id'), wwn=wwn,
                read_only=connection_properties.get('access_mode') == 'ro',
                discard=False if connection_properties.get('discard') is
                False else None)
        except Exception:
            LOG.exception('Cannot export %s over vhost; detaching it again',
                          device_info.get('path'))
            self.inner.disconnect_volume(connection_properties, device_info)
            raise
        return dict(device_info, vhost=exported.to_dict(),
                    vhost_connection_info=attach.connection_info(exported))

    def _endpoint_to_remove(self, connection_properties, device_info):
        """The WWN of this volume's endpoint, None if it has none.

        Without device info (Nova passes None) the endpoint is found from
        the properties, and removed only if it is this volume's: its
        serial is the volume id, or it exports the inner connector's
        device for the volume.
        """
        if device_info and 'vhost' in device_info:
            return endpoint.VhostEndpoint.from_dict(device_info['vhost']).wwn
        wwn = self._wwn(connection_properties)
        if connection_properties.get(WWN_PROPERTY):
            return wwn
        try:
            current = self.vhost.get_endpoint(wwn)
        except exception.EndpointNotFound:
            return None
        volume_id = str(connection_properties['volume_id'])
        paths = {os.path.normpath(path) for path in
                 self.inner.get_volume_paths(connection_properties)}
        if any(lun.serial == volume_id or
               os.path.normpath(lun.device_path) in paths
               for lun in current.luns):
            return wwn
        raise exception.EndpointExists(
            wwn=wwn, reason='it is not the endpoint of volume %s; left in '
                            'place, nothing detached' % volume_id)

    def disconnect_volume(self, connection_properties, device_info,
                          force=False, ignore_errors=False):
        """Delete the endpoint, then detach with the inner connector.

        ``device_info`` may be None, as Nova passes it: the endpoint is
        then found from the properties alone. A guest still holding the
        endpoint makes this raise
        :class:`~vhost_brick.exception.EndpointInUse` whatever ``force``
        and ``ignore_errors`` say, and nothing is detached: pulling the
        disk from under a running guest is never the right cleanup.
        """
        wwn = self._endpoint_to_remove(connection_properties, device_info)
        if wwn:
            self.vhost.delete_endpoint(wwn)
        self.inner.disconnect_volume(connection_properties, device_info,
                                     force=force,
                                     ignore_errors=ignore_errors)

    def extend_volume(self, connection_properties):
        """Extend with the inner connector; return the new size in bytes.

        LIO sees the new size at once; the guest only after it rescans
        the disk (``echo 1 > /sys/class/block/sdX/device/rescan``): no
        event tells it.
        """
        return self.inner.extend_volume(connection_properties)

    def get_volume_paths(self, connection_properties):
        return self.inner.get_volume_paths(connection_properties)

    def check_valid_device(self, path, run_as_root=True):
        return self.inner.check_valid_device(path, run_as_root=run_as_root)

    def get_search_path(self):
        return self.inner.get_search_path()

    def get_all_available_volumes(self, connection_properties=None):
        return self.inner.get_all_available_volumes(connection_properties)
