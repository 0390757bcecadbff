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

"""An iSCSI initiator on this host, for the benches that compare with it.

open-iscsi's ``iscsid`` and ``iscsiadm`` (Debian's ``open-iscsi``) in the
throw-away VM, which has neither systemd nor udev: what that takes is in
``deployment-facts.md``'s iSCSI section of the shared reference.
"""

import contextlib
import os
import subprocess
import time

INITIATOR_FILE = '/etc/iscsi/initiatorname.iscsi'
# open-iscsi's abstract socket, where iscsiadm finds iscsid.
ISCSID_SOCKET = 'ISCSIADM_ABSTRACT_NAMESPACE'
LOCK_DIR = '/run/lock/iscsi'
ISCSI_MODULES = ('iscsi_target_mod', 'iscsi_tcp', 'sd_mod')


def initiator_name():
    """This host's iSCSI initiator name; one is made if it has none."""
    try:
        with open(INITIATOR_FILE) as names:
            for line in names:
                if line.startswith('InitiatorName='):
                    return line.split('=', 1)[1].strip()
    except FileNotFoundError:
        pass
    name = 'iqn.2026-12.org.vhost-brick:bench-initiator'
    os.makedirs(os.path.dirname(INITIATOR_FILE), exist_ok=True)
    with open(INITIATOR_FILE, 'w') as names:
        names.write('InitiatorName=%s\n' % name)
    return name


@contextlib.contextmanager
def iscsid(timeout=60):
    """iscsid running, with what it needs here, until the block ends.

    Its modules loaded and the loopback up; iscsid in a session of its
    own (on SIGTERM it signals its whole process group); the block starts
    once it listens, or iscsiadm would ask systemd to start one.
    """
    subprocess.run(('modprobe', '-a') + ISCSI_MODULES, check=True)
    subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
    os.makedirs(LOCK_DIR, exist_ok=True)
    initiator_name()
    daemon = subprocess.Popen(['iscsid', '-f'], start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _listening():
            if daemon.poll() is not None:
                raise RuntimeError('iscsid exited with %d'
                                   % daemon.returncode)
            if time.monotonic() > deadline:
                raise RuntimeError('iscsid did not listen within %ds'
                                   % timeout)
            time.sleep(0.2)
        yield daemon
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


def _listening():
    with open('/proc/net/unix') as sockets:
        return '@' + ISCSID_SOCKET in sockets.read()
