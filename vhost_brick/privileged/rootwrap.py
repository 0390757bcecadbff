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

"""vhost-brick-rootwrap: oslo.rootwrap, less its free pass for privsep.

oslo.rootwrap adds to every filter list an unrestricted CommandFilter
for ``privsep-helper`` (``wrapper.load_filters``). Through it, whoever
may run a rootwrap may start a root privsep daemon of any context, such
as os-brick's, whose entry points run any command, with any
``--config-file``, whose logging configuration Python evaluates: root,
whatever the filter files say. vhost-brick-rootwrap refuses a
``privsep-helper`` command that none of its configured filters allows,
then hands every command to oslo.rootwrap's own main, unchanged.
"""

import configparser
import os
import sys

from oslo_rootwrap import cmd
from oslo_rootwrap import wrapper


# The name oslo.rootwrap gives the filter it adds.
_PRIVSEP_HELPER = 'privsep-helper'


def _filters_allow(config_file, command):
    """Whether a filter of config_file, not the added one, allows command.

    An unreadable configuration answers True: oslo.rootwrap's main then
    refuses it with its own exit code.
    """
    try:
        raw = configparser.RawConfigParser()
        raw.read(config_file)
        config = wrapper.RootwrapConfig(raw)
    except (ValueError, configparser.Error):
        return True
    filters = [item for item in wrapper.load_filters(config.filters_path)
               if item.name != _PRIVSEP_HELPER]
    try:
        wrapper.match_filter(filters, command, exec_dirs=config.exec_dirs)
    except (wrapper.NoFilterMatched, wrapper.FilterMatchNotExecutable):
        return False
    return True


def main():
    """sudo vhost-brick-rootwrap /etc/vhost-brick/rootwrap.conf COMMAND..."""
    execname, config_file, command = sys.argv[0], sys.argv[1:2], sys.argv[2:]
    if (command and os.path.basename(command[0]) == _PRIVSEP_HELPER and
            not _filters_allow(config_file[0], command)):
        sys.stderr.write('%s: Unauthorized command: %s (no filter matched)\n'
                         % (execname, ' '.join(command)))
        sys.exit(cmd.RC_UNAUTHORIZED)
    cmd.main()
