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

"""Cinder's LVM driver with its volumes exported over vhost-scsi.

Cinder picks an LVM target from a fixed ``target_helper`` map whose
option only takes Cinder's own names, so a target of another package
cannot be named there. ``volume_driver`` takes any class, though: this
one is Cinder's ``LVMVolumeDriver`` unchanged but for its target, for a
backend whose volume group is on the compute host itself::

    [lvm-vhost]
    volume_driver = vhost_brick.integrations.cinder_driver.VhostLVMVolumeDriver
    volume_group = cinder-volumes

Importing this module imports Cinder.
"""

from cinder.volume.drivers import lvm

from vhost_brick.integrations import cinder_target


class VhostLVMVolumeDriver(lvm.LVMVolumeDriver):
    """LVM volumes on this host, exported as vhost-scsi endpoints."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # LVMVolumeDriver built the target target_helper names; the
        # vhost target takes its place with the same arguments.
        self.target_driver = cinder_target.VhostTarget(
            configuration=self.configuration, executor=self._execute)
        self.protocol = self.target_driver.storage_protocol
