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

"""What runs as root: LIO, the vhost device, the state, and their doors.

Root is reached two ways, and both land in :mod:`.operations`:

* ``vhost-brick-helper`` (:mod:`.helper`), one root process per call,
  run through rootwrap or sudo;
* the oslo.privsep daemon of the context :data:`default`, started once
  per service through the root helper, whose entry points are in
  :mod:`.entrypoints`.

Nothing here trusts its caller: every operation validates its input
again and reads its configuration from root-owned files only.

``default`` is built on first use: importing oslo.privsep (and the
eventlet it pulls in) would triple the helper's start-up.
"""

import logging
import sys
import threading

#: Config section of the privsep context (user, group, capabilities,
#: helper_command, ...), as os-brick's is ``privsep_osbrick``.
CFG_SECTION = 'privsep_vhost_brick'
#: What root runs, with privsep-helper's arguments, to start the daemon.
DAEMON_MODULE = __name__ + '.daemon'

LOG = logging.getLogger(__name__)

_lock = threading.Lock()
_default = None


def _make_default():
    from oslo_privsep import daemon
    from oslo_privsep import priv_context

    class ResetSafeChannel(daemon.RootwrapClientChannel):
        """oslo.privsep's channel, which also survives a reset connection.

        oslo.privsep (3.12) ends its reader thread cleanly at EOF: waiting
        calls fail, and the next call starts a new daemon. A daemon killed
        with data unread resets the socket instead: the reader thread dies
        of ConnectionResetError, the channel still counts as running, and
        every later call waits forever for its answer. Here a reset ends
        the channel the way EOF does.
        """

        def _reader_main(self, reader):
            try:
                super()._reader_main(reader)
            except OSError as err:
                LOG.warning('Lost the privsep daemon: %s', err)
                with self.lock:
                    for waiting in self.outstanding_msgs.values():
                        waiting.set_exception(err)
                    self.running = False

    class VhostPrivContext(priv_context.PrivContext):
        """A PrivContext whose daemon can start through its own root helper.

        oslo.privsep prefixes the daemon's command with one process-wide
        root helper (``priv_context.init``). A service may already have
        set that for os-brick's context; vhost_brick's executor instead
        sets :attr:`root_helper` here, for this context alone.
        ``[privsep_vhost_brick] helper_command``, when set, wins. Root
        with no root helper (an empty one) starts :data:`DAEMON_MODULE`.
        """

        #: Command prefix (a list) that starts privsep-helper as root;
        #: None leaves privsep's process-wide prefix.
        root_helper = None

        channel_class = ResetSafeChannel

        def start(self, method=priv_context.Method.ROOTWRAP):
            """Start the daemon as oslo.privsep does, on channel_class."""
            if method is not priv_context.Method.ROOTWRAP:
                return super().start(method)
            with self.start_lock:
                if self.channel is None:
                    self.channel = self.channel_class(context=self)

        def helper_command(self, sockpath):
            command = super().helper_command(sockpath)
            if self.conf.helper_command or self.root_helper is None:
                return command
            start = command.index('privsep-helper')
            if not self.root_helper:  # root already: no helper to filter
                # -I: no module of the working directory (which any user
                # may own) or of PYTHON* variables is imported as root.
                return [sys.executable, '-I', '-m', DAEMON_MODULE] + \
                    command[start + 1:]
            return list(self.root_helper) + command[start:]

    return VhostPrivContext(
        __name__,
        cfg_section=CFG_SECTION,
        pypath=__name__ + '.default',
        capabilities=CAPABILITIES,
        logger_name=__name__)


#: What the daemon keeps of root's capabilities: none. Measured in the
#: real-kernel VM (tests/functional/test_service_user.py), every
#: operation works with uid 0 and an empty capability set:
#:
#: * configfs directories and attributes of LIO are owned by root, so
#:   mkdir, rmdir, symlink and attribute writes pass the ordinary owner
#:   permission check; the kernel asks for no capability (a target
#:   directory libvirt gave to QEMU's user and did not give back is
#:   refused by delete, see ``lio._check_removable``);
#: * /dev/vhost-scsi is root's 0600 node, opened by its owner, and its
#:   ioctls (VHOST_SET_OWNER, VHOST_SCSI_SET_ENDPOINT) need none;
#: * the O_EXCL open of the block device, and iblock's own open of it,
#:   need none for a root-owned node;
#: * modprobe and mount run as child processes: uid 0 regains the
#:   bounding set's capabilities at exec (privsep does not shrink it),
#:   so they need none kept here.
CAPABILITIES = []


def __getattr__(name):
    global _default
    if name != 'default':
        raise AttributeError('module %r has no attribute %r'
                             % (__name__, name))
    with _lock:
        if _default is None:
            _default = _make_default()
    return _default
