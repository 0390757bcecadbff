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
and hands every other command to oslo.rootwrap's own main, unchanged.

An allowed daemon start whose ``privsep-helper`` is a script of this
very interpreter (oslo.privsep's console script, of the oslo.privsep
this process would import) runs that script's main here instead of in
a child (:func:`vhost_brick.privileged.daemon.main`): the daemon forks
from this process, as it would from the child, one Python start sooner.
"""

import configparser
import logging
import os
import sys

from oslo_rootwrap import cmd
from oslo_rootwrap import wrapper

from vhost_brick.privileged import daemon as privsep_daemon


LOG = logging.getLogger(__name__)

# The name oslo.rootwrap gives the filter it adds.
_PRIVSEP_HELPER = 'privsep-helper'


def _load_config(config_file):
    """config_file read as oslo.rootwrap reads it; None if unreadable."""
    try:
        raw = configparser.RawConfigParser()
        raw.read(config_file)
        return wrapper.RootwrapConfig(raw)
    except (ValueError, configparser.Error):
        return None


def _match(config, command):
    """The configured filter, not the added one, that allows command."""
    filters = [item for item in wrapper.load_filters(config.filters_path)
               if item.name != _PRIVSEP_HELPER]
    try:
        return wrapper.match_filter(filters, command,
                                    exec_dirs=config.exec_dirs)
    except (wrapper.NoFilterMatched, wrapper.FilterMatchNotExecutable):
        return None


def _runs_on_this_interpreter(script_path):
    """Whether script_path's first line is ``#!`` and sys.executable."""
    try:
        with open(script_path, 'rb') as script:
            first_line = script.readline()
    except OSError:
        return False
    return first_line.rstrip(b'\n') == b'#!' + os.fsencode(sys.executable)


def _serve_privsep(execname, config, match, command):
    """privsep-helper's main, in this process, for command as filtered."""
    if config.use_syslog:
        wrapper.setup_syslog(execname, config.syslog_log_facility,
                             config.syslog_log_level)
        LOG.info('Executing %s in-process (filter match = %s)',
                 command, match.name)
    privsep_daemon.main(command)


def main():
    """sudo vhost-brick-rootwrap /etc/vhost-brick/rootwrap.conf COMMAND..."""
    execname, config_file, command = sys.argv[0], sys.argv[1:2], sys.argv[2:]
    if command and os.path.basename(command[0]) == _PRIVSEP_HELPER:
        config = _load_config(config_file[0])
        # An unreadable configuration is oslo.rootwrap's to refuse, with
        # its own exit code.
        if config is not None:
            match = _match(config, command)
            if match is None:
                sys.stderr.write(
                    '%s: Unauthorized command: %s (no filter matched)\n'
                    % (execname, ' '.join(command)))
                sys.exit(cmd.RC_UNAUTHORIZED)
            filtered = match.get_command(command, config.exec_dirs)
            if _runs_on_this_interpreter(filtered[0]):
                _serve_privsep(execname, config, match, filtered)
                return
    cmd.main()
