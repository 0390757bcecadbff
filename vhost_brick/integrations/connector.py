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
device as a vhost endpoint for QEMU. Requires the os-brick package
(``pip install vhost-brick[os-brick]``).
"""

import os

from os_brick.initiator import initiator_connector
from oslo_log import log as logging

from vhost_brick import attach
from vhost_brick import endpoint
from vhost_brick import executor
from vhost_brick.privileged import vhostdev


LOG = logging.getLogger(__name__)

#: connection_properties key that pins the endpoint's WWN (optional).
WWN_PROPERTY = 'vhost_wwn'


class VhostConnector(initiator_connector.InitiatorConnector):
    """Attach with an inner connector, then export over vhost-scsi.

    :param root_helper: as for every os-brick connector
    :param inner: the os-brick connector that attaches the volume to
                  this host (e.g. an iSCSI, RBD or local connector)
    :param vhost_executor: the :class:`~vhost_brick.VhostExecutor` to
                           use; by default one with this ``root_helper``
                           and ``execute``
    """

    def __init__(self, root_helper, inner, driver=None, execute=None,
                 vhost_executor=None, *args, **kwargs):
        super().__init__(root_helper, driver=driver, execute=execute,
                         *args, **kwargs)
        self.inner = inner
        self.vhost = vhost_executor or executor.VhostExecutor(
            root_helper, execute=execute)

    @staticmethod
    def get_connector_properties(root_helper, *args, **kwargs):
        """Tell Cinder this host can serve vhost-scsi to its guests."""
        return {'vhost_scsi': os.path.exists(vhostdev.VHOST_SCSI_DEVICE)}

    def connect_volume(self, connection_properties):
        """Attach with the inner connector and export the device.

        ``connection_properties`` may carry ``vhost_wwn`` to choose the
        endpoint's WWN (for a stable identity across reconnects).

        :returns: the inner connector's device info, plus ``vhost``
                  (the endpoint as a dict) and ``vhost_connection_info``
        """
        device_info = self.inner.connect_volume(connection_properties)
        try:
            exported = self.vhost.create_endpoint(
                device_info['path'],
                wwn=connection_properties.get(WWN_PROPERTY))
        except Exception:
            LOG.exception('Cannot export %s over vhost; detaching it again',
                          device_info.get('path'))
            self.inner.disconnect_volume(connection_properties, device_info)
            raise
        return dict(device_info, vhost=exported.to_dict(),
                    vhost_connection_info=attach.connection_info(exported))

    def disconnect_volume(self, connection_properties, device_info,
                          force=False, ignore_errors=False):
        """Delete the endpoint, then detach with the inner connector.

        A guest still holding the endpoint makes this raise
        :class:`~vhost_brick.exception.EndpointInUse` whatever ``force``
        and ``ignore_errors`` say, and nothing is detached: pulling the
        disk from under a running guest is never the right cleanup.
        """
        if device_info and 'vhost' in device_info:
            wwn = endpoint.VhostEndpoint.from_dict(device_info['vhost']).wwn
        else:
            wwn = connection_properties.get(WWN_PROPERTY)
        if wwn:
            self.vhost.delete_endpoint(wwn)
        else:
            LOG.warning('No vhost endpoint known for %s; detaching only',
                        connection_properties)
        self.inner.disconnect_volume(connection_properties, device_info,
                                     force=force,
                                     ignore_errors=ignore_errors)

    def extend_volume(self, connection_properties):
        """Extend with the inner connector; LIO sees the new size at once.

        The guest learns it on its next capacity read (rescan the disk in
        the guest).
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
