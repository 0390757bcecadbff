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

"""Nova's libvirt volume driver for ``driver_volume_type`` ``vhost``.

Nova takes volume drivers only from its fixed ``VOLUME_DRIVERS`` table,
so it loads this one once ``contrib/nova``'s patch names it there
(``'vhost': 'vhost_brick.integrations.nova.LibvirtVhostVolumeDriver'``);
the patch also teaches Nova to find the hostdev again to detach it. The
guest gets the volume as a ``<hostdev mode='subsystem' type='scsi_host'>``
whose source is the endpoint, not as a ``<disk>``.

Importing this module imports Nova.
"""

from lxml import etree
from nova import exception as nova_exception
from nova import utils
from nova.virt import block_device as driver_block_device
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt.volume import volume as libvirt_volume
from os_brick import exception as brick_exception
from os_brick import initiator
from oslo_log import log as logging

from vhost_brick import attach
from vhost_brick.integrations import connector


LOG = logging.getLogger(__name__)


class LibvirtConfigGuestHostdevVhost(vconfig.LibvirtConfigGuestHostdev):
    """A vhost-scsi endpoint as a libvirt ``scsi_host`` hostdev.

    Written by :func:`vhost_brick.attach.libvirt_hostdev_xml` (it reads
    the ``wwn`` of the endpoint it is given, as of this), with the
    alias by which Nova finds a volume's device (``ua-<volume id>``).
    It also has what Nova's attach path reads of a volume's config:
    ``serial``, and ``driver_discard`` and ``target_bus``, which stay
    None because the endpoint, not libvirt, gives the guest its discard
    and its SCSI bus.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mode = 'subsystem'
        self.type = 'scsi_host'
        self.wwn = None  # the endpoint's, libvirt's source wwpn
        self.alias = None
        self.serial = None
        self.driver_discard = None
        self.target_bus = None

    def format_dom(self):
        return etree.fromstring(attach.libvirt_hostdev_xml(
            self, alias=self.alias))

    def parse_dom(self, xmldoc):
        super().parse_dom(xmldoc)
        source = xmldoc.find('source')
        alias = xmldoc.find('alias')
        self.wwn = None if source is None else source.get('wwpn')
        self.alias = None if alias is None else alias.get('name')


class LibvirtVhostVolumeDriver(libvirt_volume.LibvirtBaseVolumeDriver):
    """Attach a volume to its guest over vhost-scsi.

    ``connection_info['data']`` is what
    :meth:`vhost_brick.integrations.cinder_target.VhostTarget.initialize_connection`
    gives (a device of this host), or the properties of another os-brick
    connector that attaches the volume to the host, named by
    ``vhost_inner_protocol`` (``ISCSI``, ``RBD``, ...; default
    ``LOCAL``). :meth:`connect_volume` attaches the device with that
    connector and exports it through
    :class:`~vhost_brick.integrations.connector.VhostConnector`, so the
    endpoint is made again from the stored data alone, under the same
    WWN (the volume id's), when Nova replays it at a hard reboot, a
    host's boot or on a live migration's destination.
    """

    def __init__(self, host):
        super().__init__(host, is_block_dev=False)
        self._connectors = {}

    def _connector(self, connection_info):
        """The vhost connector over the volume's inner protocol.

        :raises: InvalidVolume for a protocol os-brick does not know
        """
        protocol = connection_info['data'].get(
            connector.INNER_PROTOCOL_PROPERTY, initiator.LOCAL)
        if not isinstance(protocol, str):
            raise nova_exception.InvalidVolume(
                reason='%s must name an os-brick protocol, not %r'
                       % (connector.INNER_PROTOCOL_PROPERTY, protocol))
        if protocol not in self._connectors:
            try:
                self._connectors[protocol] = connector.factory(
                    protocol, utils.get_root_helper())
            except brick_exception.InvalidConnectorProtocol as error:
                raise nova_exception.InvalidVolume(
                    reason='%s %r: %s' % (connector.INNER_PROTOCOL_PROPERTY,
                                          protocol, error)) from error
        return self._connectors[protocol]

    def get_config(self, connection_info, disk_info):
        """The hostdev that attaches the volume's endpoint."""
        conf = LibvirtConfigGuestHostdevVhost()
        conf.wwn = connection_info['data']['wwpn']
        conf.alias = vconfig.make_libvirt_device_alias(
            driver_block_device.get_volume_id(connection_info))
        conf.serial = connection_info.get('serial')
        return conf

    def connect_volume(self, connection_info, instance):
        """Export the volume's device; keep its endpoint's WWN in data.

        :raises: MultiattachNotSupportedByVirtDriver for a multiattach
                 volume, InvalidVolume for front-end QoS (libvirt's
                 ``iotune`` applies to a ``<disk>`` only); nothing is
                 exported then
        """
        data = connection_info['data']
        volume_id = driver_block_device.get_volume_id(connection_info)
        if connection_info.get('multiattach'):
            raise nova_exception.MultiattachNotSupportedByVirtDriver(
                volume_id=volume_id)
        if data.get('qos_specs'):
            raise nova_exception.InvalidVolume(
                reason='volume %s has front-end QoS, which libvirt applies '
                       'to a disk, not to a vhost-scsi hostdev' % volume_id)
        LOG.debug('Exporting volume %s over vhost', volume_id,
                  instance=instance)
        device_info = self._connector(connection_info).connect_volume(data)
        data['wwpn'] = device_info['vhost']['wwn']

    def disconnect_volume(self, connection_info, instance, force=False):
        """Delete the volume's endpoint; refused while a guest holds it.

        Nova has detached the device from the guest first.
        """
        LOG.debug('Removing the vhost endpoint of volume %s',
                  connection_info['data'].get('volume_id'),
                  instance=instance)
        self._connector(connection_info).disconnect_volume(
            connection_info['data'], None, force=force)

    def extend_volume(self, connection_info, instance, requested_size):
        """Return the volume's new size in bytes, as its device has it.

        LIO serves the new size at once; a running guest sees it after it
        rescans the disk (``echo 1 > /sys/class/block/sdX/device/rescan``).
        """
        return self._connector(connection_info).extend_volume(
            connection_info['data'])

    def migratable(self, connection_info):
        """Whether the volume can follow its guest to another host."""
        return self._connector(connection_info).migratable

    def get_guest_xml(self, xml, connection_info):
        """The domain XML Nova defines, migratable if the volume is.

        QEMU's vhost-scsi device blocks live migration unless told
        otherwise; see :func:`vhost_brick.attach.libvirt_migratable_xml`
        for how, and what it costs.
        """
        if not self.migratable(connection_info):
            return xml
        return attach.libvirt_migratable_xml(xml)

    def check_can_live_migrate(self, connection_info, guest):
        """Refuse a live migration the volume cannot follow.

        :param guest: the running guest (Nova's ``Guest``)
        :raises: MigrationPreCheckError naming the volume and why: its
                 device is this host's alone, or the domain was started
                 without the migratable setting (the volume was
                 hot-plugged into a guest that had no migratable vhost
                 volume when it started)
        """
        volume_id = driver_block_device.get_volume_id(connection_info)
        if not self.migratable(connection_info):
            raise nova_exception.MigrationPreCheckError(reason=(
                'vhost volume %s is on a device of this host alone '
                '(%s connector): it cannot follow the instance to another '
                'host' % (volume_id, connection_info['data'].get(
                    connector.INNER_PROTOCOL_PROPERTY, initiator.LOCAL))))
        if not attach.libvirt_domain_migratable(guest.get_xml_desc()):
            raise nova_exception.MigrationPreCheckError(reason=(
                'vhost volume %s was attached to a domain started without '
                'QEMU\'s migratable setting for vhost-scsi; hard reboot '
                'the instance to start it with the setting' % volume_id))
