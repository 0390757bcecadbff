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

"""vhost_brick run by a service's own process, as deployed.

An unprivileged service user may run exactly one command through sudo,
vhost-brick-rootwrap with the shipped configuration (exec_dirs extended
by this virtualenv's bin), and reaches root through it both ways: a
helper process per call and the privsep daemon started through it. A
service that runs as root with a root helper reaches LIO both ways
without it.
"""

import errno
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

import fixtures

import vhost_brick
from vhost_brick.privileged import lio
from vhost_brick.tests.functional import base


USER = 'vhost-svc'
OTHER_USER = 'vhost-other'
BIN = os.path.dirname(sys.executable)
ETC = os.path.join(os.path.dirname(os.path.dirname(vhost_brick.__file__)),
                   'etc', 'vhost-brick')
ROOTWRAP_CONF = '/etc/vhost-brick/rootwrap.conf'
ROOTWRAP = [os.path.join(BIN, 'vhost-brick-rootwrap'), ROOTWRAP_CONF]
ROOT_HELPER = ' '.join(['sudo', '-n'] + ROOTWRAP)
SUDOERS = '/etc/sudoers.d/vhost-brick-functional'
RC_UNAUTHORIZED = 99


def open_to_service_users(path):
    """Let every user traverse path and its parents, as in a real install.

    tox makes .tox 0700, and this Python may live under /root. Only the
    throw-away VM's copy changes.
    """
    while path != '/':
        mode = os.stat(path).st_mode
        if mode & 0o005 != 0o005:
            os.chmod(path, mode | 0o005)
        path = os.path.dirname(path)


def install_service_users():
    """Users, the shipped rootwrap configuration and one sudoers rule."""
    for path in (sys.prefix, sys.base_prefix, os.path.dirname(ETC)):
        open_to_service_users(path)
    for user in (USER, OTHER_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            base.run('useradd', '--system', '--no-create-home', '--shell',
                     '/usr/sbin/nologin', user)
    base.name_the_host()  # sudo resolves the host name
    os.makedirs('/etc/vhost-brick/rootwrap.d', exist_ok=True)
    shutil.copy(os.path.join(ETC, 'rootwrap.d', 'vhost-brick.filters'),
                '/etc/vhost-brick/rootwrap.d/')
    with open(os.path.join(ETC, 'rootwrap.conf')) as shipped:
        conf = shipped.read()
    # The one change a virtualenv install needs: its bin comes first.
    conf = conf.replace('exec_dirs=', 'exec_dirs=%s,' % BIN)
    with open(ROOTWRAP_CONF, 'w') as installed:
        installed.write(conf)
    with open(SUDOERS, 'w') as sudoers:
        sudoers.write('%s ALL = (root) NOPASSWD: %s *\n'
                      % (USER + ',' + OTHER_USER, ' '.join(ROOTWRAP)))
    os.chmod(SUDOERS, 0o440)
    base.run('visudo', '-c', '-f', SUDOERS)


def as_user(user, *cmd, **kwargs):
    return subprocess.run(['setpriv', '--reuid', user, '--regid', user,
                           '--init-groups', '--'] + list(cmd),
                          capture_output=True, text=True, **kwargs)


class ServiceAgent(base.Agent):
    """A service's process holding one VhostExecutor.

    It runs as user, or as root when user is None.
    """

    def __init__(self, user, mode, root_helper=ROOT_HELPER):
        as_user = [] if user is None else [
            'setpriv', '--reuid', user, '--regid', user, '--init-groups',
            '--']
        super().__init__(
            as_user + [sys.executable, '-m',
                       'vhost_brick.tests.functional.service_agent', mode,
                       root_helper], cwd='/')


def daemon_pids(sock_path):
    """PIDs of the privsep daemons started for this socket path.

    A daemon runs as privsep-helper (python, the script, its arguments)
    or in vhost-brick-rootwrap's process (python, the script, the
    configuration, privsep-helper and its arguments); sudo, while it
    waits for either, is not one.
    """
    pids = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as cmdline:
                argv = cmdline.read().decode().split('\0')
        except OSError:
            continue
        if sock_path in argv and any(
                os.path.basename(arg) == 'privsep-helper'
                for arg in argv[1:4]) and argv[0] != 'sudo':
            pids.append(int(pid))
    return pids


def alive(pid):
    """Whether pid runs: neither gone nor a zombie its parent never reaps."""
    try:
        with open('/proc/%d/stat' % pid) as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


class ServiceUserTests:
    """The public API, run by the service user, in one privileged mode."""

    MODE = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if base.ENABLED:
            install_service_users()

    def setUp(self):
        super().setUp()
        self.agent = ServiceAgent(USER, self.MODE)
        self.addCleanup(self.agent.stop)

    def test_create_get_list_and_delete(self):
        disk = self.make_disk()
        created = self.agent.result('create_endpoint', disk)
        self.addCleanup(self.executor.delete_endpoint, created['wwn'])
        self.assertEqual(disk, created['luns'][0]['device_path'])
        self.assertIn(created['wwn'], base.vhost_targets())
        self.assertEqual(created, self.agent.result('get_endpoint',
                                                    created['wwn']))
        self.assertIn(created, self.agent.result('list_endpoints'))
        self.assertIsNone(self.agent.result('delete_endpoint',
                                            created['wwn']))
        self.assertNotIn(created['wwn'], base.vhost_targets())

    def test_batch_create_and_delete(self):
        disks = [self.make_disk(), self.make_disk()]
        report = self.agent.result(
            'create_endpoints', [{'device_path': disk} for disk in disks])
        self.assertEqual([], report['failed'])
        wwns = [ep['wwn'] for ep in report['created']]
        self.addCleanup(self.executor.delete_endpoints, wwns)
        self.assertEqual(disks, [ep['luns'][0]['device_path']
                                 for ep in report['created']])
        deleted = self.agent.result('delete_endpoints', wwns)
        self.assertEqual({'deleted': wwns, 'absent': [], 'failed': []},
                         deleted)

    def test_restore_recreates_what_lio_lost(self):
        disk = self.make_disk()
        created = self.agent.result('create_endpoint', disk)
        self.addCleanup(self.executor.delete_endpoint, created['wwn'])
        lio.delete(created['wwn'])  # LIO forgets it; the record stays
        report = self.agent.result('restore')
        self.assertEqual([created], report['restored'])
        self.assertEqual(created, self.executor.get_endpoint(
            created['wwn']).to_dict())

    def test_typed_errors_keep_their_class_and_fields(self):
        answer = self.agent.call('get_endpoint', 'naa.5001405000ffff01')
        self.assertEqual({'error': 'EndpointNotFound',
                          'kwargs': {'wwn': 'naa.5001405000ffff01'}},
                         answer)


class HelperModeTestCase(ServiceUserTests, base.FunctionalTestCase):
    MODE = 'helper'


class PrivsepModeTestCase(ServiceUserTests, base.FunctionalTestCase):
    MODE = 'privsep'

    def started_daemon(self):
        """The daemon's command line and PID, after one call."""
        self.agent.result('list_endpoints')
        command = self.agent.result('daemon_command')
        [pid] = daemon_pids(command[-1])
        return command, pid

    def test_daemon_starts_through_sudo_and_rootwrap(self):
        command, pid = self.started_daemon()
        self.assertEqual(['sudo', '-n'] + ROOTWRAP + [
            'privsep-helper', '--privsep_context',
            'vhost_brick.privileged.default', '--privsep_sock_path'],
            command[:-1])
        self.assertEqual(0, os.stat('/proc/%d' % pid).st_uid)

    def test_daemon_runs_in_the_rootwrap_process(self):
        _command, pid = self.started_daemon()
        with open('/proc/%d/cmdline' % pid, 'rb') as cmdline:
            argv = cmdline.read().decode().split('\0')
        self.assertEqual(ROOTWRAP[0], argv[1])

    def test_daemon_loads_no_eventlet(self):
        _command, pid = self.started_daemon()
        with open('/proc/%d/maps' % pid) as maps:
            # greenlet: eventlet's C core, which oslo.privsep's import of
            # eventlet maps, blocked in vhost-brick-rootwrap.
            self.assertNotIn('greenlet', maps.read())

    def test_daemon_keeps_no_capability(self):
        _command, pid = self.started_daemon()
        with open('/proc/%d/status' % pid) as status:
            fields = dict(line.split(':\t', 1) for line in status)
        self.assertEqual(0, int(fields['CapEff'], 16))
        self.assertEqual(0, int(fields['CapPrm'], 16))

    def test_another_user_cannot_reach_the_daemon_socket(self):
        command, _pid = self.started_daemon()
        sock_path = command[-1]
        result = as_user(OTHER_USER, sys.executable, '-c',
                         'import socket, sys\n'
                         'try:\n'
                         '    socket.socket(socket.AF_UNIX).connect('
                         'sys.argv[1])\n'
                         'except OSError as err:\n'
                         '    print(err.errno)\n'
                         'else:\n'
                         '    print("connected")\n', sock_path)
        self.assertIn(int(result.stdout), (errno.ENOENT, errno.EACCES),
                      result)

    def test_a_killed_daemon_fails_typed_or_restarts_never_hangs(self):
        _command, pid = self.started_daemon()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(alive(pid))
        answer = self.agent.call('list_endpoints')
        if 'error' in answer:
            self.assertEqual('PrivsepFailed', answer['error'], answer)
            answer = self.agent.call('list_endpoints')
        self.assertIn('result', answer)
        command = self.agent.result('daemon_command')
        self.assertEqual(1, len(daemon_pids(command[-1])))


class RootServiceTests:
    """A service that runs as root and passes root_helper='sudo'.

    Root uses no root helper in either mode: were it used, sudo would
    look privsep-helper and vhost-brick-helper up in its secure_path,
    which lacks this virtualenv's bin, and the call would fail.
    """

    MODE = None

    def setUp(self):
        super().setUp()
        self.agent = ServiceAgent(None, self.MODE, root_helper='sudo')
        self.addCleanup(self.agent.stop)

    def test_root_with_sudo_creates_lists_and_deletes(self):
        disk = self.make_disk()
        created = self.agent.result('create_endpoint', disk)
        self.addCleanup(self.executor.delete_endpoint, created['wwn'])
        self.assertEqual(disk, created['luns'][0]['device_path'])
        self.assertIn(created, self.agent.result('list_endpoints'))
        self.assertIsNone(self.agent.result('delete_endpoint',
                                            created['wwn']))
        self.assertNotIn(created['wwn'], base.vhost_targets())


class RootHelperModeTestCase(RootServiceTests, base.FunctionalTestCase):
    MODE = 'helper'


class RootPrivsepModeTestCase(RootServiceTests, base.FunctionalTestCase):
    MODE = 'privsep'

    def test_root_with_sudo_starts_its_own_daemon_directly(self):
        self.agent.result('list_endpoints')
        command = self.agent.result('daemon_command')
        self.assertEqual(
            [sys.executable, '-I', '-m', 'vhost_brick.privileged.daemon',
             '--privsep_context', 'vhost_brick.privileged.default',
             '--privsep_sock_path'], command[:-1])


class RootwrapTestCase(base.FunctionalTestCase):
    """The shipped rootwrap configuration allows exactly our commands."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if base.ENABLED:
            install_service_users()

    def rootwrap(self, *command):
        return as_user(USER, 'sudo', '-n', *(ROOTWRAP + list(command)))

    def assertRefused(self, *command):
        result = self.rootwrap(*command)
        self.assertEqual(RC_UNAUTHORIZED, result.returncode, result)

    def test_a_shell_is_refused(self):
        self.assertRefused('/bin/sh', '-c', 'id')

    def test_cat_is_refused(self):
        self.assertRefused('cat', '/etc/shadow')

    def test_the_helper_under_another_path_is_refused(self):
        copy = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'vhost-brick-helper')
        shutil.copy(os.path.join(BIN, 'vhost-brick-helper'), copy)
        self.assertRefused(copy, 'list')

    def test_the_helper_with_an_unknown_option_is_refused(self):
        self.assertRefused('vhost-brick-helper', 'list', '--state=/tmp')

    def test_privsep_helper_of_another_context_is_refused(self):
        self.assertRefused('privsep-helper', '--privsep_context',
                           'os_brick.privileged.default',
                           '--privsep_sock_path', '/tmp/tmpx/privsep.sock')

    def test_privsep_helper_with_a_caller_config_file_is_refused(self):
        self.assertRefused('privsep-helper', '--config-file',
                           '/tmp/evil.conf', '--privsep_context',
                           'vhost_brick.privileged.default',
                           '--privsep_sock_path', '/tmp/tmpx/privsep.sock')

    def test_sudo_refuses_anything_but_rootwrap(self):
        result = as_user(USER, 'sudo', '-n', '/bin/id')
        self.assertNotEqual(0, result.returncode)
        self.assertNotIn('uid=0', result.stdout)

    def test_the_helper_itself_is_allowed(self):
        result = self.rootwrap('vhost-brick-helper', 'list')
        self.assertEqual(0, result.returncode, result)
        self.assertIsInstance(json.loads(result.stdout), list)
