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
    """Attach a volume of this host to its guest over vhost-scsi.

    ``connection_info['data']`` is what
    :meth:`vhost_brick.integrations.cinder_target.VhostTarget.initialize_connection`
    gives. :meth:`connect_volume` exports its ``device_path`` through
    :class:`~vhost_brick.integrations.connector.VhostConnector` with
    os-brick's ``LOCAL`` connector, so the endpoint is made again from
    the stored data alone, under the same WWN (the volume id's), when
    Nova replays it at a hard reboot or a host's boot.
    """

    def __init__(self, host):
        super().__init__(host, is_block_dev=False)
        self.connector = connector.factory('LOCAL', utils.get_root_helper())

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
        device_info = self.connector.connect_volume(data)
        data['wwpn'] = device_info['vhost']['wwn']

    def disconnect_volume(self, connection_info, instance, force=False):
        """Delete the volume's endpoint; refused while a guest holds it.

        Nova has detached the device from the guest first.
        """
        LOG.debug('Removing the vhost endpoint of volume %s',
                  connection_info['data'].get('volume_id'),
                  instance=instance)
        self.connector.disconnect_volume(connection_info['data'], None,
                                         force=force)

    def extend_volume(self, connection_info, instance, requested_size):
        """Return the volume's new size in bytes, as its device has it.

        LIO serves the new size at once; a running guest sees it after it
        rescans the disk (``echo 1 > /sys/class/block/sdX/device/rescan``).
        """
        return self.connector.extend_volume(connection_info['data'])
