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

"""Nova's compute process, as the end-to-end test drives it.

Nova and Cinder register options of one name on oslo.config's global
CONF with different definitions (``default_availability_zone``), so they
cannot share a process, and in a deployment they never do. The test runs
Nova's side here, with the Python of an environment whose Nova 34 has
contrib/nova's patch (``VHOST_BRICK_NOVA_PYTHON``)::

    python -m vhost_brick.tests.functional.consumers.nova_compute

Requests and answers as :class:`~vhost_brick.tests.functional.base.Agent`
has them. Nova's ``LibvirtDriver`` runs with a real ``Host`` on
libvirt-python and libvirtd's ``qemu:///system``, its event thread
started as nova-compute starts it, and the volume driver its
``VOLUME_DRIVERS`` names for ``vhost``. Instances are Nova's
``Instance`` objects, by the UUID of their libvirt domain:

* ``attach(connection_info, instance_uuid, mountpoint)``: what Nova's
  ``attach_volume`` does up to its database bookkeeping (which needs
  Nova's database): connect, the device config, the attach-time checks,
  ``Guest.attach_device`` persistent and live; the connection_info as
  Nova keeps it and the hostdev XML;
* ``connect(connection_info, instance_uuid, mountpoint)``: what a hard
  reboot does for each volume when it builds the guest's new
  configuration (``_get_guest_storage_config``): connect from the stored
  connection_info, then the device config; its XML;
* ``find(instance_uuid, volume_id)``: the hostdev Nova's detach finds by
  the volume's alias in the domain's live XML, or None;
* ``detach(connection_info, instance_uuid, mountpoint)``: Nova's
  ``detach_volume``, which waits for libvirt's device-removed event,
  then disconnects;
* ``disconnect(connection_info)``: Nova's ``_disconnect_volume``.
"""

import faulthandler
import os
import signal
import sys
import traceback

from nova import conf as nova_conf
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host

from vhost_brick.tests.functional import service_agent

URI = 'qemu:///system'
# The nested guest answers an unplug request slowly under TCG; Nova's
# default is 20 s per attempt.
DETACH_TIMEOUT = 120


class Compute:
    """Nova's LibvirtDriver with its Host: the volume methods only.

    Built without ``LibvirtDriver.__init__``, which sets up all of a
    compute service (its virtapi, image cache, CPU models); the
    attributes the volume methods read are set as ``__init__`` sets them.
    """

    def __init__(self):
        objects.register_all()
        nova_conf.CONF.set_override('device_detach_timeout', DETACH_TIMEOUT,
                                    'libvirt')
        self.driver = libvirt_driver.LibvirtDriver.__new__(
            libvirt_driver.LibvirtDriver)
        self.driver.volume_drivers = {}
        self.driver._volume_api = None  # read only for encrypted volumes
        self.driver._compute_event_callback = None
        self.driver._device_event_handler = (
            libvirt_driver.AsyncDeviceEventsHandler())
        self.driver._host = libvirt_host.Host(
            URI, lifecycle_event_handler=self.driver.emit_event)
        self.driver._host.initialize()

    @staticmethod
    def instance(instance_uuid):
        return objects.Instance(uuid=instance_uuid)

    def _connected_config(self, connection_info, instance, mountpoint):
        self.driver._connect_volume(None, connection_info, instance)
        return self.driver._get_volume_config(
            connection_info, {'dev': mountpoint.rpartition('/')[2],
                              'bus': 'scsi', 'type': 'disk'})

    def attach(self, connection_info, instance_uuid, mountpoint):
        instance = self.instance(instance_uuid)
        guest = self.driver._host.get_guest(instance)
        conf = self._connected_config(connection_info, instance, mountpoint)
        self.driver._check_discard_for_attach_volume(conf, instance)
        guest.attach_device(conf, persistent=True, live=True)
        return {'connection_info': connection_info, 'hostdev': conf.to_xml()}

    def connect(self, connection_info, instance_uuid, mountpoint):
        return self._connected_config(
            connection_info, self.instance(instance_uuid),
            mountpoint).to_xml()

    def find(self, instance_uuid, volume_id):
        found = self.driver._get_guest_disk_device(
            self.driver._host.get_guest(self.instance(instance_uuid)), None,
            volume_uuid=volume_id)
        return None if found is None else {'hostdev': found.to_xml(),
                                           'wwpn': found.wwpn}

    def detach(self, connection_info, instance_uuid, mountpoint):
        self.driver.detach_volume(None, connection_info,
                                  self.instance(instance_uuid), mountpoint)

    def disconnect(self, connection_info):
        self.driver._disconnect_volume(None, connection_info, None)


def main():
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Nova's event and connection threads run until the process ends, as
    # in nova-compute: a normal exit would wait for them forever.
    try:
        compute = Compute()
        service_agent.serve(lambda name, *args, **kwargs: getattr(
            compute, name)(*args, **kwargs))
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)


if __name__ == '__main__':
    main()
