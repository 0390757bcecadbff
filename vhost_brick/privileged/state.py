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

"""The helper's own record of the endpoints vhost_brick created.

LIO keeps nothing across a reboot, and rtslib-fb's saveconfig.json is
shared with targetcli and Cinder, does not keep the nexus, and is
restored with ``clear_existing=True`` by default. vhost_brick therefore
records its endpoints itself and restores only those.

Each endpoint has its own small JSON file, ``<wwn>.json`` in the
``endpoints`` directory of ``state_path``, so a create or delete writes
a constant amount however many endpoints the host carries. The file
also works as an intent log: it is written as ``creating`` or
``deleting`` before LIO is touched and settled afterwards, so that after
a crash ``cleanup`` knows which half-built or half-deleted endpoint to
converge. Files are replaced atomically (temporary file, fsync, rename,
fsync of the directory), so each always parses. The directory must be
root's own, mode 0700, and every file in it root's own too; files are
opened without following symlinks.
"""

import contextlib
import json
import os
import stat

from vhost_brick import exception


DEFAULT_STATE_PATH = '/var/lib/vhost-brick'
DIR_NAME = 'endpoints'
IDENTITY_DIR_NAME = 'identities'
SUFFIX = '.json'
TEMP_PREFIX = '.tmp-'
# 3 added each LUN's serial, read_only and identity; 4 its discard
# policy. 2 and 3 are still read.
FORMAT_VERSION = 4
_READABLE_VERSIONS = (2, 3, FORMAT_VERSION)

CREATING = 'creating'
PRESENT = 'present'
DELETING = 'deleting'


def refuse_unless_private(path, info, kind):
    """Refuse path, by its stat info, unless root's, of kind, closed to all.

    Root's is the effective user's: the unit tests run as anyone.
    """
    if (not kind(info.st_mode) or info.st_uid != os.geteuid() or
            info.st_mode & 0o077):
        raise exception.BackendError(
            reason='%s is not private to root (uid %d, mode %o); '
                   'remove it' % (path, info.st_uid, info.st_mode))


class _PrivateDirectory:
    """A directory of state_path that must be root's own, mode 0700."""

    def __init__(self, state_path, name):
        self.directory = os.path.join(state_path, name)
        self._checked = False

    def _check_directory(self):
        """Refuse a directory others may change; False if there is none."""
        if not self._checked:
            try:
                info = os.lstat(self.directory)
            except FileNotFoundError:
                return False
            refuse_unless_private(self.directory, info, stat.S_ISDIR)
            self._checked = True
        return True

    def _make_directory(self):
        """Make the directory (and state_path) private to root if absent."""
        if not self._check_directory():
            os.makedirs(os.path.dirname(self.directory), mode=0o700,
                        exist_ok=True)
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._check_directory()

    def _sync_directory(self):
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class EndpointRecord(_PrivateDirectory):
    """The endpoint files under ``state_path``; use under the host lock."""

    def __init__(self, state_path):
        super().__init__(state_path, DIR_NAME)
        self.identities = IdentityIndex(state_path)

    def path(self, wwn):
        return os.path.join(self.directory, wwn + SUFFIX)

    def get(self, wwn):
        """Return the entry of wwn, or None."""
        if not self._check_directory():
            return None
        try:
            fd = os.open(self.path(wwn),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise exception.BackendError(
                reason='cannot read state file %s: %s'
                       % (self.path(wwn), err)) from err
        with os.fdopen(fd) as entry_file:
            refuse_unless_private(self.path(wwn),
                                  os.fstat(entry_file.fileno()),
                                  stat.S_ISREG)
            try:
                data = json.load(entry_file)
            except (OSError, ValueError) as err:
                raise exception.BackendError(
                    reason='cannot read state file %s: %s'
                           % (self.path(wwn), err)) from err
        if data.pop('version', None) not in _READABLE_VERSIONS:
            raise exception.BackendError(
                reason='state file %s has an unknown format'
                       % self.path(wwn))
        return data

    def load(self):
        """Return {wwn: entry} for every recorded endpoint."""
        if not self._check_directory():
            return {}
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise exception.BackendError(
                reason='cannot list %s: %s' % (self.directory, err)) from err
        wwns = (name[:-len(SUFFIX)] for name in names
                if name.endswith(SUFFIX) and not name.startswith('.'))
        return {wwn: self.get(wwn) for wwn in wwns}

    def set(self, wwn, status, **fields):
        """Record wwn's entry with this status, replacing the old one."""
        entry = dict(fields, wwn=wwn, status=status, version=FORMAT_VERSION)
        try:
            self._replace(wwn, entry)
        except OSError as err:
            raise exception.BackendError(
                reason='cannot write state file %s: %s'
                       % (self.path(wwn), err)) from err

    def discard(self, wwn):
        """Forget wwn; no-op if it is not recorded."""
        if not self._check_directory():
            return
        try:
            os.unlink(self.path(wwn))
            self._sync_directory()
        except FileNotFoundError:
            pass
        except OSError as err:
            raise exception.BackendError(
                reason='cannot remove state file %s: %s'
                       % (self.path(wwn), err)) from err

    def remove_temporaries(self):
        """Delete temporary files a killed helper left; return their names."""
        if not self._check_directory():
            return []
        try:
            names = [name for name in os.listdir(self.directory)
                     if name.startswith(TEMP_PREFIX)]
            for name in names:
                os.unlink(os.path.join(self.directory, name))
        except FileNotFoundError:
            return []
        except OSError as err:
            raise exception.BackendError(
                reason='cannot clean %s: %s' % (self.directory, err)) from err
        return names

    def _replace(self, wwn, entry):
        data = json.dumps(entry, sort_keys=True).encode()
        # One writer at a time (the host lock), so a fixed name will do;
        # O_TRUNC reuses one a killed helper left.
        temp = os.path.join(self.directory, TEMP_PREFIX + wwn)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        self._make_directory()
        fd = os.open(temp, flags, 0o600)
        try:
            with os.fdopen(fd, 'wb') as entry_file:
                entry_file.write(data)
                entry_file.flush()
                os.fsync(entry_file.fileno())
            os.rename(temp, self.path(wwn))
        except BaseException:
            os.unlink(temp)
            raise
        self._sync_directory()


class IdentityIndex(_PrivateDirectory):
    """The serial digits of our backstores, in the names of empty files.

    An entry ``<backstore name>.<digits>`` says which 25 serial digits
    (:func:`vhost_brick.privileged.backstores.naa_designator`) that
    backstore gives its guest, so that a create lists one directory
    instead of reading the serial of every backstore on the host. It is
    a cache that configfs settles: entries of backstores that are gone
    are dropped, and a backstore without exactly one entry is read and
    indexed again. Changes are synced, so a crash cannot bring back an
    entry with another backstore's digits. Use under the host lock.
    """

    def __init__(self, state_path):
        super().__init__(state_path, IDENTITY_DIR_NAME)

    def entries(self):
        """Return (backstore name, digits) of every entry."""
        if not self._check_directory():
            return []
        return [tuple(name.rsplit('.', 1))
                for name in os.listdir(self.directory) if '.' in name]

    def update(self, new=(), stale=()):
        """Drop the stale entries, then add the new; each is (name, digits).

        One sync of the directory for all of them.
        """
        self._make_directory()
        for name, digits in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(name, digits))
        for name, digits in new:
            os.close(os.open(self._path(name, digits),
                             os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW |
                             os.O_CLOEXEC, 0o600))
        self._sync_directory()

    def _path(self, name, digits):
        return os.path.join(self.directory, name + '.' + digits)
