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

"""Cinder target helper serving host-local volumes over vhost-scsi.

:class:`VhostTarget` has the shape of Cinder's
``cinder.volume.targets.driver.Target``, so a volume driver whose
volumes live on the compute host (local LVM, say) can hand them to a
guest on that host through the kernel vhost-scsi target, e.g. with
``target_helper`` pointing here. Cinder itself is not imported.
"""

import hashlib
import socket

from oslo_log import log as logging

from vhost_brick import attach
from vhost_brick import exception
from vhost_brick import executor
from vhost_brick import validation


LOG = logging.getLogger(__name__)


class VhostTarget:
    """Export Cinder volumes on this host as vhost-scsi endpoints.

    :param root_helper: root helper for the executor; Cinder passes its
                        ``sudo cinder-rootwrap ...`` string
    :param host: the host the volumes are local to; connectors from any
                 other host are refused (default: this host's name)
    :param vhost_executor: a :class:`~vhost_brick.VhostExecutor`; by
                           default one with ``root_helper``
    """

    storage_protocol = 'vhost'
    SHARED_TARGET_SUPPORT = False
    SECONDARY_IP_SUPPORT = False

    def __init__(self, *args, **kwargs):
        self.configuration = kwargs.get('configuration')
        self.db = kwargs.get('db')
        self._root_helper = kwargs.get('root_helper', 'sudo')
        self.host = kwargs.get('host') or socket.gethostname()
        self.vhost = kwargs.get('vhost_executor') or executor.VhostExecutor(
            self._root_helper)

    @staticmethod
    def volume_wwn(volume):
        """The endpoint WWN of a volume: stable, derived from its id."""
        digest = hashlib.sha256(str(volume.id).encode()).hexdigest()
        return validation.GENERATED_WWN_PREFIX + digest[:9]

    def create_export(self, context, volume, volume_path):
        """Export the volume; Cinder stores the WWN as provider_location."""
        exported = self.vhost.create_endpoint(volume_path,
                                              wwn=self.volume_wwn(volume))
        return {'provider_location': exported.wwn, 'provider_auth': None}

    def ensure_export(self, context, volume, volume_path):
        """Recreate the export if it is missing (after a reboot)."""
        self.vhost.create_endpoint(volume_path, wwn=self.volume_wwn(volume))

    def remove_export(self, context, volume):
        """Remove the export; refused while a guest holds it."""
        self.vhost.delete_endpoint(self.volume_wwn(volume))

    def validate_connector(self, connector):
        """Only a connector on this host can reach a vhost endpoint."""
        if not connector or not connector.get('host'):
            raise exception.InvalidConnector(connector=connector,
                                             reason='it names no host')
        if connector['host'] != self.host:
            raise exception.InvalidConnector(
                connector=connector['host'],
                reason='vhost-scsi endpoints are local to %s' % self.host)
        return True

    def initialize_connection(self, volume, connector):
        """connection_info for the guest's hypervisor on this host."""
        self.validate_connector(connector)
        return attach.connection_info(
            self.vhost.get_endpoint(self.volume_wwn(volume)))

    def terminate_connection(self, volume, connector, **kwargs):
        """Nothing to undo: the endpoint lives until remove_export."""

    @staticmethod
    def are_same_connector(A, B):
        a_host = A.get('host')
        return bool(a_host) and a_host == B.get('host')

    def extend_target(self, volume):
        """LIO reads the new size of the block device by itself."""
