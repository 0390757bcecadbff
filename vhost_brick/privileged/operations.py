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

"""The privileged operations, as both root entry paths run them.

The helper command (one root process per call, through rootwrap or
sudo) and the privsep daemon (one per service) both land here. Each
operation takes the host-wide lock, exclusive for changes and shared
for reads, so the two paths may run on one host at once; reads then
never see the half-made objects of a concurrent change. The state
directory comes from the root-owned configuration file, never from the
caller. Input is validated again further down (host, lio), since
whoever calls here may be any user the root helper lets through.
"""

import configparser
import contextlib
import fcntl
import os

from vhost_brick import exception
from vhost_brick.privileged import host
from vhost_brick.privileged import lio
from vhost_brick.privileged import state


# Serialises every privileged change on this host, whoever makes it. In
# a directory of root's own under /run, where no other user can create,
# hold or replace the file; in world-writable /run/lock anyone could
# hold it (flock needs only a read descriptor) or plant a symlink.
LOCK_FILE = '/run/vhost-brick/endpoints.lock'
# Root-owned configuration; the caller cannot point root elsewhere.
CONFIG_FILE = '/etc/vhost-brick/vhost-brick.conf'


@contextlib.contextmanager
def _host_lock(shared=False):
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        lock = os.open(LOCK_FILE, flags, 0o600)
    except FileNotFoundError:  # the first call since boot
        os.makedirs(os.path.dirname(LOCK_FILE), mode=0o700, exist_ok=True)
        lock = os.open(LOCK_FILE, flags, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


def _state_path():
    """``[vhost_brick] state_path`` from the root-owned config file.

    Read with configparser rather than oslo.config, which would double
    the helper's start-up; the option is declared in
    :mod:`vhost_brick.opts` with the same default.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(CONFIG_FILE)
    except configparser.Error as err:
        raise exception.BackendError(
            reason='cannot parse %s: %s' % (CONFIG_FILE, err)) from err
    path = parser.get('vhost_brick', 'state_path',
                      fallback=state.DEFAULT_STATE_PATH)
    if not os.path.isabs(path):
        raise exception.BackendError(
            reason='state_path %r in %s is not an absolute path'
                   % (path, CONFIG_FILE))
    return path


def _record():
    return state.EndpointRecord(_state_path())


def create(device_path, wwn=None, nexus=None):
    with _host_lock():
        return host.create(_record(), device_path, wwn=wwn, nexus=nexus)


def create_many(specs):
    with _host_lock():
        return host.create_many(_record(), specs)


def delete(wwn):
    with _host_lock():
        return {'deleted': host.delete(_record(), wwn)}


def delete_many(wwns):
    with _host_lock():
        return host.delete_many(_record(), wwns)


def show(wwn):
    with _host_lock(shared=True):
        return lio.show(wwn)


def list_endpoints():
    with _host_lock(shared=True):
        return lio.list_endpoints()


def restore():
    with _host_lock():
        return host.restore(_record())


def cleanup():
    with _host_lock():
        return host.cleanup(_record())


def verify():
    """Report kernel support; raise KernelSupportMissing for a gap."""
    report = lio.kernel_support()
    missing = sorted(name for name, present in report.items() if not present)
    if missing:
        raise exception.KernelSupportMissing(
            reason='missing: %s; load the modules with "modprobe -a '
                   'target_core_iblock vhost_scsi"' % ', '.join(missing))
    return report
