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
caller, and so does the device policy (:mod:`.devices`). Input is
validated again further down (host, devices, lio), since whoever calls
here may be any user the root helper lets through.
"""

import contextlib
import fcntl
import os
import stat
import time

from vhost_brick import exception
from vhost_brick.privileged import host
from vhost_brick.privileged import lio
from vhost_brick.privileged import rootconf
from vhost_brick.privileged import state


# Serialises every privileged change on this host, whoever makes it. In
# a directory of root's own under /run, where no other user can create,
# hold or replace the file; in world-writable /run/lock anyone could
# hold it (flock needs only a read descriptor) or plant a symlink.
LOCK_FILE = '/run/vhost-brick/endpoints.lock'
PROC_LOCKS = '/proc/locks'
# Polling interval of a lock wait, doubling from the first to the last.
_LOCK_POLL = (0.005, 0.1)


def _open_lock():
    """The lock file, made if missing; refused unless private to root.

    Root's is the effective user's: the unit tests run as anyone.
    """
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        lock = os.open(LOCK_FILE, flags, 0o600)
    except FileNotFoundError:  # the first call since boot
        os.makedirs(os.path.dirname(LOCK_FILE), mode=0o700, exist_ok=True)
        lock = os.open(LOCK_FILE, flags, 0o600)
    try:
        state.refuse_unless_private(os.path.dirname(LOCK_FILE),
                                    os.stat(os.path.dirname(LOCK_FILE)),
                                    stat.S_ISDIR)
        state.refuse_unless_private(LOCK_FILE, os.fstat(lock), stat.S_ISREG)
    except BaseException:
        os.close(lock)
        raise
    return lock


def lock_holders(lock):
    """Who holds the flock on the open file lock, as "pid N (command)"."""
    info = os.fstat(lock)
    inode = '%02x:%02x:%d' % (os.major(info.st_dev), os.minor(info.st_dev),
                              info.st_ino)
    holders = []
    with contextlib.suppress(OSError), open(PROC_LOCKS) as locks:
        for line in locks:
            fields = line.split()
            if '->' in fields or len(fields) < 6 or fields[5] != inode:
                continue  # a waiter, or another file
            holders.append('pid %s (%s)' % (fields[4], _command(fields[4])))
    return ', '.join(holders) or 'an unknown process'


def _command(pid):
    try:
        with open('/proc/%s/cmdline' % pid, 'rb') as cmdline:
            return cmdline.read().replace(b'\0', b' ').decode(
                errors='replace').strip() or '?'
    except OSError:
        return 'gone'


@contextlib.contextmanager
def _host_lock(timeout, shared=False):
    """Hold the host lock inside the block; wait for it at most timeout s.

    :raises: LockTimeout naming the holder when the wait is over
    """
    lock = _open_lock()
    try:
        deadline = time.monotonic() + timeout
        pause = _LOCK_POLL[0]
        while True:
            try:
                fcntl.flock(lock, (fcntl.LOCK_SH if shared
                                   else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise exception.LockTimeout(
                        timeout=timeout, path=LOCK_FILE,
                        holder=lock_holders(lock)) from None
                time.sleep(pause)
                pause = min(pause * 2, _LOCK_POLL[1])
        yield
    finally:
        os.close(lock)


@contextlib.contextmanager
def _locked(shared=False):
    """The root configuration, under the host lock."""
    config = rootconf.load()
    with _host_lock(config.lock_timeout, shared=shared):
        yield config


def _record(config):
    return state.EndpointRecord(config.state_path)


def create(device_path, wwn=None, nexus=None, serial=None, read_only=False,
           discard=None):
    with _locked() as config:
        return host.create(_record(config), config.allowed_devices,
                           device_path, wwn=wwn, nexus=nexus, serial=serial,
                           read_only=read_only, discard=discard)


def create_many(specs):
    with _locked() as config:
        return host.create_many(_record(config), config.allowed_devices,
                                specs)


def delete(wwn):
    with _locked() as config:
        return {'deleted': host.delete(_record(config), wwn)}


def delete_many(wwns):
    with _locked() as config:
        return host.delete_many(_record(config), wwns)


def show(wwn):
    with _locked(shared=True):
        return lio.show(wwn)


def list_endpoints():
    with _locked(shared=True):
        return lio.list_endpoints()


def stats(wwn):
    with _locked(shared=True):
        return lio.stats(wwn)


def list_stats():
    with _locked(shared=True):
        return lio.list_stats()


def restore():
    with _locked() as config:
        return host.restore(_record(config), config.allowed_devices)


def cleanup():
    with _locked() as config:
        return host.cleanup(_record(config))


def verify():
    """Report kernel support and versions; KernelSupportMissing for a gap."""
    report = lio.kernel_support()
    found = lio.versions()
    missing = sorted(name for name, present in report.items() if not present)
    if missing:
        raise exception.KernelSupportMissing(
            reason='missing: %s (kernel %s, rtslib-fb %s); load the modules '
                   'with "modprobe -a target_core_iblock vhost_scsi"'
                   % (', '.join(missing), found['kernel_release'],
                      found['rtslib_fb_version']))
    return dict(report, **found)
