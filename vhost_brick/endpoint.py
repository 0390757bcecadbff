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

"""Immutable descriptions of vhost-scsi endpoints."""

import dataclasses

from vhost_brick import exception


@dataclasses.dataclass(frozen=True)
class VhostLun:
    """One LUN of an endpoint and the block device behind it."""

    lun: int
    device_path: str
    backstore: str
    #: the unit serial (VPD page 0x80) the guest sees
    serial: str
    #: whether the guest sees the LUN write-protected
    read_only: bool
    #: whether the guest may discard (UNMAP) blocks of the LUN
    discard: bool

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(lun=int(data['lun']), device_path=data['device_path'],
                   backstore=data['backstore'], serial=data['serial'],
                   read_only=bool(data['read_only']),
                   discard=bool(data['discard']))


@dataclasses.dataclass(frozen=True)
class VhostEndpoint:
    """A vhost target WWN, its TPG and nexus, and the LUNs it exports.

    ``wwn`` is what the kernel reports, which is the string to hand to
    QEMU (``-device vhost-scsi-pci,wwpn=...``) or libvirt.
    """

    wwn: str
    tpgt: int
    nexus: str
    luns: tuple

    def __post_init__(self):
        object.__setattr__(self, 'luns', tuple(self.luns))

    def to_dict(self):
        return {'wwn': self.wwn, 'tpgt': self.tpgt, 'nexus': self.nexus,
                'luns': [lun.to_dict() for lun in self.luns]}

    @classmethod
    def from_dict(cls, data):
        return cls(wwn=data['wwn'], tpgt=int(data['tpgt']),
                   nexus=data['nexus'],
                   luns=tuple(VhostLun.from_dict(lun)
                              for lun in data['luns']))


@dataclasses.dataclass(frozen=True)
class Failure:
    """One item of a batch that failed, and the typed error it raised.

    ``item`` is what the caller passed for it: the endpoint spec of a
    create, the WWN of a delete or restore.
    """

    item: object
    error: exception.VhostBrickException

    @classmethod
    def from_dict(cls, data):
        return cls(item=data['item'],
                   error=exception.from_report(data['error']))


def _endpoints(data):
    return tuple(VhostEndpoint.from_dict(ep) for ep in data)


def _failures(data):
    return tuple(Failure.from_dict(failure) for failure in data)


@dataclasses.dataclass(frozen=True)
class CreateReport:
    """What :meth:`VhostExecutor.create_endpoints` did."""

    created: tuple
    failed: tuple

    @classmethod
    def from_dict(cls, data):
        return cls(created=_endpoints(data['created']),
                   failed=_failures(data['failed']))


@dataclasses.dataclass(frozen=True)
class DeleteReport:
    """What :meth:`VhostExecutor.delete_endpoints` did, by WWN."""

    deleted: tuple
    absent: tuple
    failed: tuple

    @classmethod
    def from_dict(cls, data):
        return cls(deleted=tuple(data['deleted']),
                   absent=tuple(data['absent']),
                   failed=_failures(data['failed']))


@dataclasses.dataclass(frozen=True)
class RestoreReport:
    """What :meth:`VhostExecutor.restore` did, endpoint by endpoint."""

    restored: tuple
    already_present: tuple
    failed: tuple

    @classmethod
    def from_dict(cls, data):
        return cls(restored=_endpoints(data['restored']),
                   already_present=_endpoints(data['already_present']),
                   failed=_failures(data['failed']))
