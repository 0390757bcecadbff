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

"""Input validation shared by the executor and the privileged helper.

Both sides validate: the executor to fail fast with a typed error, the
helper because it runs as root and must not trust its caller.
"""

import collections.abc
import os
import re
import stat

from vhost_brick import exception


# A vhost target or nexus WWN: "naa." + 16 hex digits. The first digit is
# the NAA type; only the 8-byte types (1, 2, 5 and the locally assigned
# c-f) fit in 16 digits. rtslib-fb silently rewrites "naa.6..." to
# "naa.5...", so rejecting it here is what keeps the WWN the caller asked
# for the WWN the kernel reports.
_WWN_RE = re.compile(r'naa\.[0-9a-f]{16}\Z', re.IGNORECASE)
_NAA_TYPES = frozenset('125cdef')

# OUI prefix LIO uses for generated WWNs ("naa.5" + "001405").
GENERATED_WWN_PREFIX = 'naa.5001405'

# What one endpoint spec of a batch may say.
SPEC_KEYS = ('device_path', 'wwn', 'nexus', 'serial', 'read_only',
             'discard')

# A LUN's unit serial (VPD page 0x80): printable ASCII without spaces,
# which the kernel would strip from the ends, or commas, which the
# rootwrap filter syntax cannot express. The kernel takes fewer than
# INQUIRY_VPD_SERIAL_LEN (254) bytes.
_SERIAL_RE = re.compile(r'[!-+\--~]{1,253}\Z')
MAX_SERIAL = 253

# The kernel stores a block backstore's udev_path in a 512-byte buffer.
MAX_DEVICE_PATH = 511


def _check_wwn(wwn, error):
    if not isinstance(wwn, str):
        raise error(wwn=wwn, reason='must be a string')
    if not _WWN_RE.match(wwn):
        raise error(wwn=wwn, reason='must be "naa." followed by 16 '
                                    'hexadecimal digits')
    if wwn[4].lower() not in _NAA_TYPES:
        raise error(wwn=wwn, reason='NAA type %s is not an 8-byte NAA type '
                                    '(1, 2, 5 or c-f)' % wwn[4])
    return wwn.lower()


def validate_wwn(wwn):
    """Return the canonical (lower-case) form of a vhost target WWN.

    :raises: :class:`~vhost_brick.exception.InvalidWWN`
    """
    return _check_wwn(wwn, exception.InvalidWWN)


def validate_nexus(nexus):
    """Return the canonical (lower-case) form of a nexus initiator WWN.

    :raises: :class:`~vhost_brick.exception.InvalidNexus`
    """
    return _check_wwn(nexus, exception.InvalidNexus)


def generate_wwn():
    """Return a fresh random WWN in LIO's own format (naa.5001405 + 9 hex)."""
    # os.urandom, as secrets does, without secrets' import of hashlib,
    # which every helper start would pay.
    return GENERATED_WWN_PREFIX + os.urandom(5).hex()[:9]


def validate_device_path(device_path):
    """Check that a path names a block device; return it unchanged.

    The path is kept as the caller gave it (so ``/dev/disk/by-id/...``
    names survive reboots); only the node it resolves to must be a block
    device.

    :raises: :class:`~vhost_brick.exception.InvalidDevice`
    """
    def invalid(reason):
        return exception.InvalidDevice(device=device_path, reason=reason)

    if not isinstance(device_path, str):
        raise invalid('must be a string')
    if not device_path.startswith('/'):
        raise invalid('must be an absolute path')
    if any(ord(char) < 32 or ord(char) == 127 for char in device_path):
        raise invalid('must not contain control characters')
    if ',' in device_path:
        # The kernel splits a backstore's control string at commas, so
        # the rest of the path would be read as further options.
        raise invalid('must not contain a comma')
    if len(os.fsencode(device_path)) > MAX_DEVICE_PATH:
        raise invalid('longer than %d bytes' % MAX_DEVICE_PATH)
    try:
        node = os.stat(device_path)
    except FileNotFoundError as err:
        raise invalid('no such file or directory') from err
    except OSError as err:
        raise invalid(err.strerror) from err
    if not stat.S_ISBLK(node.st_mode):
        raise invalid('not a block device')
    if _sectors(node.st_rdev) == 0:
        raise invalid('the block device has no media (size 0), e.g. an '
                      'unbound loop device or a detached volume')
    return device_path


def validate_serial(serial):
    """Check a unit serial for a LUN; return it unchanged.

    :raises: :class:`~vhost_brick.exception.InvalidSerial`
    """
    if not isinstance(serial, str):
        raise exception.InvalidSerial(serial=serial, reason='must be a string')
    if not _SERIAL_RE.match(serial):
        raise exception.InvalidSerial(
            serial=serial, reason='must be 1 to %d printable ASCII '
                                  'characters without spaces or commas'
                                  % MAX_SERIAL)
    return serial


def validate_read_only(read_only):
    """Check the read-only flag of a LUN: a bool, nothing that looks like one.

    :raises: :class:`~vhost_brick.exception.Invalid`
    """
    if not isinstance(read_only, bool):
        raise exception.Invalid(reason='read_only must be True or False, not '
                                       '%r' % (read_only,))
    return read_only


def validate_discard(discard):
    """Check a LUN's discard policy: None (as the device), True or False.

    :raises: :class:`~vhost_brick.exception.Invalid`
    """
    if discard is not None and not isinstance(discard, bool):
        raise exception.Invalid(reason='discard must be None, True or False, '
                                       'not %r' % (discard,))
    return discard


def _sectors(rdev):
    """Size of a block device in 512-byte sectors from sysfs, or None."""
    try:
        with open('/sys/dev/block/%d:%d/size'
                  % (os.major(rdev), os.minor(rdev))) as size:
            return int(size.read())
    except (OSError, ValueError):
        return None


def validate_endpoint_specs(specs):
    """Check a batch of endpoint specs; return them as plain dicts.

    Each spec is a mapping with ``device_path`` and optionally ``wwn``,
    ``nexus``, ``serial``, ``read_only`` and ``discard``; the result has
    every key (None, or False for ``read_only``, when absent). Two specs
    with the same WWN or device path are refused: the second could only
    fail.
    """
    if isinstance(specs, (str, bytes, collections.abc.Mapping)) or \
            not isinstance(specs, collections.abc.Iterable):
        raise exception.Invalid(reason='endpoint specs must be a list of '
                                       'mappings, not %r' % (specs,))
    result = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, collections.abc.Mapping):
            raise exception.Invalid(reason='endpoint spec %d is %r, not a '
                                           'mapping' % (index, spec))
        keys = set(spec)
        if 'device_path' not in keys or not keys <= set(SPEC_KEYS):
            raise exception.Invalid(
                reason='endpoint spec %d has keys %s; it needs device_path '
                       'and may have %s'
                       % (index, sorted(map(str, keys)),
                          ', '.join(SPEC_KEYS[1:])))
        wwn, nexus = spec.get('wwn'), spec.get('nexus')
        serial = spec.get('serial')
        result.append({
            'device_path': validate_device_path(spec['device_path']),
            'wwn': None if wwn is None else validate_wwn(wwn),
            'nexus': None if nexus is None else validate_nexus(nexus),
            'serial': None if serial is None else validate_serial(serial),
            'read_only': validate_read_only(spec.get('read_only', False)),
            'discard': validate_discard(spec.get('discard'))})
    _refuse_duplicates('device path',
                       [spec['device_path'] for spec in result])
    _refuse_duplicates('WWN', [spec['wwn'] for spec in result
                               if spec['wwn'] is not None])
    return result


def validate_wwns(wwns):
    """Check a batch of target WWNs; return them in canonical form."""
    if isinstance(wwns, (str, bytes, collections.abc.Mapping)) or \
            not isinstance(wwns, collections.abc.Iterable):
        raise exception.Invalid(reason='WWNs must be a list of strings, '
                                       'not %r' % (wwns,))
    result = [validate_wwn(wwn) for wwn in wwns]
    _refuse_duplicates('WWN', result)
    return result


def _refuse_duplicates(what, values):
    seen = set()
    for value in values:
        if value in seen:
            raise exception.Invalid(reason='%s %s appears twice in the batch'
                                           % (what, value))
        seen.add(value)
