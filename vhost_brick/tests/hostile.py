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

"""Hostile inputs, shared by the unit and the functional tests.

Each row: a description, the create_endpoint keyword arguments, and the
exception the public API must raise. ``{disk}`` stands for a real block
device and ``{tmp}`` for a scratch directory prepared by the test.
"""

import os

import fixtures

from vhost_brick import exception


GOOD_WWN = 'naa.5001405abcdef001'

BAD_CREATE_INPUTS = [
    ('missing path', {'device_path': '/dev/no-such-disk'},
     exception.InvalidDevice),
    ('relative path', {'device_path': 'dev/sda'}, exception.InvalidDevice),
    ('dot-relative path', {'device_path': './sda'}, exception.InvalidDevice),
    ('empty path', {'device_path': ''}, exception.InvalidDevice),
    ('directory', {'device_path': '{tmp}'}, exception.InvalidDevice),
    ('regular file', {'device_path': '{tmp}/file'}, exception.InvalidDevice),
    ('character device', {'device_path': '/dev/null'},
     exception.InvalidDevice),
    ('character device zero', {'device_path': '/dev/zero'},
     exception.InvalidDevice),
    ('symlink to a regular file', {'device_path': '{tmp}/link-to-file'},
     exception.InvalidDevice),
    ('symlink to a character device', {'device_path': '{tmp}/link-to-null'},
     exception.InvalidDevice),
    ('dangling symlink', {'device_path': '{tmp}/dangling'},
     exception.InvalidDevice),
    ('symlink loop', {'device_path': '{tmp}/loop'}, exception.InvalidDevice),
    ('path with newline', {'device_path': '{disk}\n'},
     exception.InvalidDevice),
    ('path with NUL', {'device_path': '{disk}\x00'},
     exception.InvalidDevice),
    ('path with tab', {'device_path': '/dev/\tsda'},
     exception.InvalidDevice),
    ('path with comma (LIO control option injection)',
     {'device_path': '{disk},readonly=1'}, exception.InvalidDevice),
    ('leading dash', {'device_path': '-rf'}, exception.InvalidDevice),
    ('option-like path', {'device_path': '--wwn=' + GOOD_WWN},
     exception.InvalidDevice),
    ('overlong path', {'device_path': '/' + 'a' * 600},
     exception.InvalidDevice),
    ('path is bytes', {'device_path': b'/dev/loop0'},
     exception.InvalidDevice),
    ('path is None', {'device_path': None}, exception.InvalidDevice),
    ('wwn too short', {'wwn': 'naa.5001405'}, exception.InvalidWWN),
    ('wwn too long', {'wwn': GOOD_WWN + '0'}, exception.InvalidWWN),
    ('wwn naa.6 (rtslib would rewrite it)', {'wwn': 'naa.6001405bd4e8476d'},
     exception.InvalidWWN),
    ('wwn NAA type 3', {'wwn': 'naa.3001405abcdef001'}, exception.InvalidWWN),
    ('wwn not hex', {'wwn': 'naa.5001405abcdefxyz'}, exception.InvalidWWN),
    ('wwn iqn', {'wwn': 'iqn.2003-01.org.example:x'}, exception.InvalidWWN),
    ('wwn eui', {'wwn': 'eui.5001405abcdef001'}, exception.InvalidWWN),
    ('wwn colon form', {'wwn': '50:01:40:5a:bc:de:f0:01'},
     exception.InvalidWWN),
    ('wwn with newline', {'wwn': GOOD_WWN + '\n'}, exception.InvalidWWN),
    ('wwn with comma (QEMU option injection)',
     {'wwn': GOOD_WWN + ',id=x'}, exception.InvalidWWN),
    ('wwn with space', {'wwn': ' ' + GOOD_WWN}, exception.InvalidWWN),
    ('wwn is an int', {'wwn': 5001405}, exception.InvalidWWN),
    ('wwn is empty', {'wwn': ''}, exception.InvalidWWN),
    ('nexus naa.6', {'nexus': 'naa.6001405bd4e8476d'},
     exception.InvalidNexus),
    ('nexus iqn', {'nexus': 'iqn.2003-01.org.example:i'},
     exception.InvalidNexus),
    ('nexus too short', {'nexus': 'naa.1'}, exception.InvalidNexus),
    ('nexus with slash', {'nexus': 'naa.5001405/bcdef001'},
     exception.InvalidNexus),
    ('serial empty', {'serial': ''}, exception.InvalidSerial),
    ('serial with a space', {'serial': 'volume 1'}, exception.InvalidSerial),
    ('serial with a comma (rootwrap filter syntax)', {'serial': 'a,b'},
     exception.InvalidSerial),
    ('serial with newline', {'serial': 'volume-1\n'},
     exception.InvalidSerial),
    ('serial with NUL', {'serial': 'volume\x001'}, exception.InvalidSerial),
    ('serial not ASCII', {'serial': 'volum\u00e9'}, exception.InvalidSerial),
    ('serial over the kernel limit', {'serial': 'x' * 254},
     exception.InvalidSerial),
    ('serial option-like', {'serial': ' --read-only'},
     exception.InvalidSerial),
    ('serial is an int', {'serial': 42}, exception.InvalidSerial),
    ('read_only is a string', {'read_only': 'yes'}, exception.Invalid),
    ('read_only is 1', {'read_only': 1}, exception.Invalid),
    ('read_only is None', {'read_only': None}, exception.Invalid),
    ('discard is a string', {'discard': 'yes'}, exception.Invalid),
    ('discard is 1', {'discard': 1}, exception.Invalid),
]

# Block devices that are real, but that root must refuse to export, each
# with the DeviceNotAllowed rule that refuses it. {tmp}/link-to-disk is a
# symlink to {disk}; the functional tests add the rest in the VM.
REFUSED_DEVICES = [
    ('symlink in a world-writable directory', '{tmp}/link-to-disk',
     'outside-dev'),
    ('path through /dev/.. to the symlink', '/dev/..{tmp}/link-to-disk',
     'outside-dev'),
]

# Helper command lines (after the program name) and the exit code each
# must produce.
BAD_HELPER_ARGV = [
    ([], exception.InvalidArgument),
    (['frobnicate'], exception.InvalidArgument),
    (['create'], exception.InvalidArgument),
    (['create', '--device'], exception.InvalidArgument),
    (['create', '--device=/dev/loop0', '--bogus'], exception.InvalidArgument),
    (['create', '--device=/dev/loop0', 'extra'], exception.InvalidArgument),
    (['delete'], exception.InvalidArgument),
    (['delete', '--wwn'], exception.InvalidArgument),
    (['show', '--wwn=' + GOOD_WWN, '--wwn'], exception.InvalidArgument),
    (['list', '--all'], exception.InvalidArgument),
    (['restore', 'now'], exception.InvalidArgument),
    (['create', '--device=/dev/null'], exception.InvalidDevice),
    (['create', '--device=relative'], exception.InvalidDevice),
    (['create', '--device=/dev/loop0\n--wwn=x'], exception.InvalidDevice),
    (['create', '--device=/dev/loop0', '--wwn=naa.6001405bd4e8476d'],
     exception.InvalidWWN),
    (['create', '--device=/dev/loop0', '--nexus=naa.1'],
     exception.InvalidNexus),
    (['delete', '--wwn=' + GOOD_WWN + ';reboot'], exception.InvalidWWN),
    (['delete', '--wwn=$(reboot)'], exception.InvalidWWN),
    (['show', '--wwn=../../core'], exception.InvalidWWN),
    (['stats'], exception.InvalidArgument),
    (['stats', '--wwn=../../core'], exception.InvalidWWN),
    (['list-stats', '--all'], exception.InvalidArgument),
    (['create', '--device=/dev/loop0', '--discard=1'],
     exception.InvalidArgument),
    (['create', '--device=/dev/loop0', '--serial=a b'],
     exception.InvalidSerial),
    (['create', '--device=/dev/loop0', '--serial='],
     exception.InvalidSerial),
    (['create', '--device=/dev/loop0', '--serial=' + 'x' * 254],
     exception.InvalidSerial),
    (['create', '--device=/dev/loop0', '--read-only=1'],
     exception.InvalidArgument),
    (['create', '--device=/dev/loop0', '--read-only', 'yes'],
     exception.InvalidArgument),
]


class ScratchFiles(fixtures.Fixture):
    """The files the {tmp} rows name."""

    def _setUp(self):
        self.path = self.useFixture(fixtures.TempDir()).path
        open(os.path.join(self.path, 'file'), 'w').close()
        for name, target in (('link-to-file', 'file'),
                             ('link-to-null', '/dev/null'),
                             ('dangling', 'nowhere'), ('loop', 'loop')):
            os.symlink(target, os.path.join(self.path, name))

    def link_to(self, disk):
        """Add {tmp}/link-to-disk, a symlink to the block device disk."""
        os.symlink(disk, os.path.join(self.path, 'link-to-disk'))
