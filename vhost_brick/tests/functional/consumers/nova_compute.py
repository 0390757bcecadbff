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
has them. Every call goes through Nova's own ``LibvirtDriver`` methods
and the volume driver its ``VOLUME_DRIVERS`` names for ``vhost``:

* ``connect(connection_info)``: the connection_info as Nova keeps it
  after ``connect_volume``, and the hostdev XML Nova attaches;
* ``find(domain_xml, volume_id)``: the hostdev Nova's detach finds by the
  volume's alias in a domain's live XML, or None;
* ``disconnect(connection_info)``.
"""

import faulthandler
import signal

from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import guest as libvirt_guest

from vhost_brick.tests.functional import service_agent


class LiveDomain:
    """A libvirt domain as Nova's Guest reads it: its live XML."""

    def __init__(self, xml):
        self.xml = xml

    def XMLDesc(self, flags=0):
        if flags:
            raise ValueError('Nova asked for XML flags %#x, not the live '
                             'XML' % flags)
        return self.xml


class Compute:
    """Nova's LibvirtDriver, unconnected: its volume methods only."""

    def __init__(self):
        self.driver = libvirt_driver.LibvirtDriver.__new__(
            libvirt_driver.LibvirtDriver)
        self.driver.volume_drivers = {}
        self.driver._host = None

    def connect(self, connection_info):
        volume_driver = self.driver._get_volume_driver(connection_info)
        volume_driver.connect_volume(connection_info, None)
        return {'connection_info': connection_info,
                'hostdev': volume_driver.get_config(connection_info,
                                                    {}).to_xml()}

    def find(self, domain_xml, volume_id):
        found = self.driver._get_guest_disk_device(
            libvirt_guest.Guest(LiveDomain(domain_xml)), None,
            volume_uuid=volume_id)
        return None if found is None else {'hostdev': found.to_xml(),
                                           'wwpn': found.wwpn}

    def disconnect(self, connection_info):
        self.driver._get_volume_driver(connection_info).disconnect_volume(
            connection_info, None)


def main():
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    compute = Compute()
    service_agent.serve(
        lambda name, *args, **kwargs: getattr(compute, name)(*args, **kwargs))


if __name__ == '__main__':
    main()
