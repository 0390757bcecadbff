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
records its endpoints in its own JSON file and restores only those.

Each entry also works as an intent log: it is written as ``creating`` or
``deleting`` before LIO is touched and settled afterwards, so that after
a crash ``cleanup`` knows which half-built or half-deleted endpoint to
converge. The file is replaced atomically (temporary file, fsync,
rename, fsync of the directory), so it always parses.
"""

import json
import os
import tempfile

from vhost_brick import exception


DEFAULT_STATE_PATH = '/var/lib/vhost-brick'
FILE_NAME = 'endpoints.json'
FORMAT_VERSION = 1

CREATING = 'creating'
PRESENT = 'present'
DELETING = 'deleting'


class StateFile:
    """The endpoints file in ``state_path``; call under the host lock."""

    def __init__(self, state_path):
        self.path = os.path.join(state_path, FILE_NAME)

    def load(self):
        """Return {wwn: entry}; an absent file is an empty record."""
        try:
            with open(self.path) as state:
                data = json.load(state)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise exception.BackendError(
                reason='cannot read state file %s: %s' % (self.path, err)
            ) from err
        if data.get('version') != FORMAT_VERSION:
            raise exception.BackendError(
                reason='state file %s has unknown format %r'
                       % (self.path, data.get('version')))
        return data['endpoints']

    def save(self, endpoints):
        try:
            self._replace(endpoints)
        except OSError as err:
            raise exception.BackendError(
                reason='cannot write state file %s: %s' % (self.path, err)
            ) from err

    def _replace(self, endpoints):
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=directory, prefix='.endpoints-')
        try:
            with os.fdopen(fd, 'w') as state:
                json.dump({'version': FORMAT_VERSION,
                           'endpoints': endpoints}, state, indent=1,
                          sort_keys=True)
                state.flush()
                os.fsync(state.fileno())
            os.rename(temp, self.path)
        except BaseException:
            os.unlink(temp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def set(self, wwn, status, **fields):
        endpoints = self.load()
        endpoints[wwn] = dict(fields, wwn=wwn, status=status)
        self.save(endpoints)

    def discard(self, wwn):
        endpoints = self.load()
        if endpoints.pop(wwn, None) is not None:
            self.save(endpoints)
