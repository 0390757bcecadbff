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

"""Cinder target serving volumes local to their compute host over vhost-scsi.

:class:`VhostTarget` satisfies ``cinder.volume.targets.driver.Target``:
the constructor arguments Cinder's volume drivers pass, ``protocol``,
the ``location``/``auth`` export info they store, and every abstract
method. It does not import Cinder, so that vhost_brick installs without
it; the ``cinder`` tox environment checks it against Cinder's own class.
Cinder selects it through
:class:`vhost_brick.integrations.cinder_driver.VhostLVMVolumeDriver`
(see the integration page of the docs).
"""

import socket

from oslo_config import cfg
from oslo_log import log as logging

from vhost_brick import attach
from vhost_brick import exception
from vhost_brick import executor
from vhost_brick.integrations import volume as volume_export
from vhost_brick import opts


LOG = logging.getLogger(__name__)
CONF = cfg.CONF

#: The connector property os-brick hosts that can serve vhost-scsi set.
CONNECTOR_PROPERTY = 'vhost_scsi'


def _cinder_option(name, default):
    """An option of Cinder's own configuration, where Cinder runs."""
    try:
        return CONF[name]
    except cfg.NoSuchOptError:
        return default


class VhostTarget:
    """Export Cinder volumes on this host as vhost-scsi endpoints.

    One endpoint per volume, named by :func:`volume_export.volume_wwn`,
    with the volume id as the LUN's unit serial.

    :param configuration: the backend's configuration, as Cinder passes;
                          its ``vhost_discard`` (see :mod:`vhost_brick.opts`)
                          False hides discard from the guests
    :param root_helper: by default Cinder's own, ``sudo cinder-rootwrap
                        <rootwrap_config>``; it starts vhost_brick's
                        privsep daemon (its filter must be in Cinder's
                        ``rootwrap.d``)
    :param executor: Cinder's execute callable; used only with
                     ``[vhost_brick] privileged_mode = helper``
    :param host: the host the volumes are local to; connectors from any
                 other host are refused (default: Cinder's ``host``)
    :param vhost_executor: a :class:`~vhost_brick.VhostExecutor` to use
                           instead of one built from the above
    """

    protocol = 'vhost'
    storage_protocol = 'vhost'
    SHARED_TARGET_SUPPORT = False
    SECONDARY_IP_SUPPORT = False

    def __init__(self, *args, **kwargs):
        self.configuration = kwargs.get('configuration')
        discard = True
        if self.configuration is not None:
            self.configuration.append_config_values(opts.cinder_backend_opts)
            discard = self.configuration.safe_get('vhost_discard')
        # None: discard exactly where the volume's device has it.
        self._discard = None if discard else False
        self.db = kwargs.get('db')
        self._root_helper = kwargs.get('root_helper') or (
            'sudo cinder-rootwrap %s' % _cinder_option(
                'rootwrap_config', '/etc/cinder/rootwrap.conf'))
        self.host = kwargs.get('host') or _cinder_option(
            'host', socket.gethostname())
        self.vhost = kwargs.get('vhost_executor') or \
            executor.VhostExecutor.for_service(self._root_helper,
                                               kwargs.get('executor'))

    @staticmethod
    def _read_only(volume):
        """Whether Cinder attaches the volume read-only (admin metadata).

        Read only if loaded: a lazy load would query Cinder's database.
        """
        metadata = volume.get('admin_metadata', None) or {}
        return metadata.get('readonly') == 'True'

    def _export(self, volume, volume_path):
        return volume_export.export(self.vhost, volume_path, volume.id,
                                    read_only=self._read_only(volume),
                                    discard=self._discard)

    def create_export(self, context, volume, volume_path):
        """Export the volume; Cinder stores ``location`` (the WWN)."""
        exported = self._export(volume, volume_path)
        return {'location': exported.wwn, 'auth': None}

    def ensure_export(self, context, volume, volume_path):
        """Recreate the export if it is missing (after a reboot)."""
        self._export(volume, volume_path)

    def remove_export(self, context, volume):
        """Remove the export; refused while a guest holds it."""
        self.vhost.delete_endpoint(volume_export.volume_wwn(volume.id))

    def validate_connector(self, connector):
        """Only a vhost-capable connector on this host can attach.

        Where Cinder runs, a refusal is Cinder's InvalidConnectorException
        naming the property and why (Cinder's volume manager answers it
        with a 400; any other exception becomes a 500), raised from
        vhost_brick's InvalidConnector, which is raised alone without
        Cinder.
        """
        problem = self._connector_problem(connector or {})
        if problem is None:
            return True
        prop, reason = problem
        error = exception.InvalidConnector(
            connector=(connector or {}).get('host', connector),
            reason='%s: %s' % (prop, reason))
        try:
            from cinder import exception as cinder_exception
        except ImportError:
            raise error from None
        raise cinder_exception.InvalidConnectorException(
            missing='%s (%s)' % (prop, reason)) from error

    def _connector_problem(self, connector):
        """(property, why) of what keeps connector from attaching, or None."""
        if not connector.get('host'):
            return 'host', 'the connector names no host'
        if connector['host'] != self.host:
            return 'host', ('it is %s, but vhost-scsi endpoints are local '
                            'to %s' % (connector['host'], self.host))
        if connector.get(CONNECTOR_PROPERTY) is not True:
            return CONNECTOR_PROPERTY, (
                'not true: os-brick\'s own get_connector_properties never '
                'sets it; vhost_brick\'s sets it on a host whose kernel has '
                'vhost_scsi loaded')
        return None

    def initialize_connection(self, volume, connector):
        """connection_info for the guest's hypervisor on this host.

        ``data`` also names the ``volume_id``, from which the os-brick
        connector finds the endpoint again.
        """
        self.validate_connector(connector)
        info = attach.connection_info(
            self.vhost.get_endpoint(volume_export.volume_wwn(volume.id)))
        info['data']['volume_id'] = volume.id
        return info

    def terminate_connection(self, volume, connector, **kwargs):
        """Nothing to undo: the endpoint lives until remove_export."""

    @staticmethod
    def are_same_connector(A, B):
        """Cinder's default: connectors of the same host are the same."""
        a_host = A.get('host')
        return bool(a_host) and a_host == B.get('host')

    def extend_target(self, volume):
        """LIO reads the new size of the block device by itself.

        The guest sees it after it rescans the disk; no event tells it.
        """
