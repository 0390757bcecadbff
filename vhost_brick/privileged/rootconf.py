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

"""The root side's own configuration: /etc/vhost-brick/vhost-brick.conf.

Whatever runs as root reads its settings here, from a file only root
can write, never from its caller. Read with configparser rather than
oslo.config, which would double the helper's start-up; the options are
declared in :mod:`vhost_brick.opts` with the same defaults, for the
sample configuration and the docs.
"""

import collections
import configparser
import os
import time

from vhost_brick import exception
from vhost_brick.privileged import state


CONFIG_FILE = '/etc/vhost-brick/vhost-brick.conf'
SECTION = 'vhost_brick'

# Any block device under /dev, subject to the rules that always apply
# (see vhost_brick.privileged.devices): the demo and a first try work.
DEFAULT_ALLOWED_DEVICES = ('/dev/**',)
# Long enough for a batch of thousands of endpoints ahead of us; short
# enough that a stuck holder fails calls instead of hanging services.
DEFAULT_LOCK_TIMEOUT = 300

# The last file parsed: (its status, its RootConfig).
_cached = (None, None)

# File timestamps advance by the kernel's clock tick: a file changed
# within the last second could change again with the same status, so it
# is parsed on every call until it has settled.
_SETTLE_NS = 10 ** 9

RootConfig = collections.namedtuple(
    'RootConfig', 'state_path allowed_devices lock_timeout')


def _invalid(reason):
    return exception.BackendError(reason='%s: %s' % (CONFIG_FILE, reason))


def load():
    """The settings of CONFIG_FILE, defaults for what it does not set.

    The privsep daemon asks for every operation; the file is parsed again
    only when its status has changed since, so an edit counts from the
    next operation on, without a restart.

    :raises: BackendError when the file is unreadable or a value invalid
    """
    global _cached
    key = _status(CONFIG_FILE)
    cached_key, config = _cached
    if key is None or key != cached_key:
        config = _parse(CONFIG_FILE)
        if key is not None and _settled(key):
            _cached = (key, config)
    return config


def _status(path):
    """What changes whenever path's content may have: None if unknown.

    An absent file's status is ``(path,)``: only its creation changes
    that, into a status of another length.
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return (path,)
    except OSError:
        return None
    return (path, status.st_dev, status.st_ino, status.st_size,
            status.st_mtime_ns, status.st_ctime_ns)


def _settled(key):
    """Whether the file of this status is older than a clock tick.

    An absent file has nothing to settle.
    """
    return len(key) == 1 or time.time_ns() - max(key[-2:]) > _SETTLE_NS


def _parse(path):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(path)
    except configparser.Error as err:
        raise _invalid('cannot parse it: %s' % err) from err
    state_path = parser.get(SECTION, 'state_path',
                            fallback=state.DEFAULT_STATE_PATH)
    if not os.path.isabs(state_path):
        raise _invalid('state_path %r is not an absolute path' % state_path)
    allowed = parser.get(SECTION, 'allowed_devices', fallback=None)
    if allowed is None:
        patterns = DEFAULT_ALLOWED_DEVICES
    else:
        patterns = tuple(item.strip() for item in allowed.split(',')
                         if item.strip())
    for pattern in patterns:
        if not pattern.startswith('/dev/'):
            raise _invalid('allowed_devices pattern %r is not under /dev/'
                           % pattern)
    try:
        lock_timeout = parser.getfloat(SECTION, 'lock_timeout',
                                       fallback=DEFAULT_LOCK_TIMEOUT)
    except ValueError as err:
        raise _invalid('lock_timeout: %s' % err) from err
    if not lock_timeout > 0:
        raise _invalid('lock_timeout must be positive, not %s' % lock_timeout)
    return RootConfig(state_path, patterns, lock_timeout)
