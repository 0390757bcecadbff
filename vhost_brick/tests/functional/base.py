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

"""Base class of the functional tests: a real kernel with LIO, as root.

These tests run inside the disposable VM (``tox -e functional``, which
sets VHOST_BRICK_FUNCTIONAL=1). There, a kernel without the modules they
need is a failure, not a skip.
"""

import glob
import json
import mmap
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import fixtures

from vhost_brick import executor
from vhost_brick.privileged import backstores
from vhost_brick.privileged import configfs
from vhost_brick.privileged import lio
from vhost_brick.privileged import rootconf
from vhost_brick.tests import base


ENABLED = os.environ.get('VHOST_BRICK_FUNCTIONAL') == '1'
SKIP_REASON = ('functional tests need a kernel with LIO and vhost_scsi, as '
               'root: run them in the disposable VM with "tox -e functional"')
MODULES = ('configfs', 'loop', 'target_core_mod', 'target_core_iblock',
           'target_core_file', 'tcm_loop', 'vhost_scsi')
VHOST = configfs.VHOST_FABRIC
CORE = configfs.TARGET_ROOT + '/core'

SECTOR_SIZE = 512


def run(*cmd):
    """Run a command; return its stdout, or fail with its stderr."""
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise AssertionError('%s exited %d: %s' % (
            ' '.join(cmd), result.returncode, result.stderr.strip()))
    return result.stdout.strip()


def read_sector(path, number):
    """A sector's text, read past the page cache (O_DIRECT).

    LIO's block backstore writes the device with bios of its own, which
    the host's page cache of the device does not see.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        with mmap.mmap(-1, mmap.PAGESIZE) as aligned:
            os.preadv(fd, [aligned], number * SECTOR_SIZE)
            return aligned[:SECTOR_SIZE].rstrip(b'\0').decode(
                errors='replace')
    finally:
        os.close(fd)


def write_sector(path, number, text):
    """Write a sector's text through to the device (fsync)."""
    with open(path, 'r+b') as device:
        device.seek(number * SECTOR_SIZE)
        device.write(text.encode().ljust(SECTOR_SIZE, b'\0'))
        device.flush()
        os.fsync(device.fileno())


def load_kernel_modules():
    """Load what the suite needs; fail loudly if the kernel lacks it."""
    result = subprocess.run(['modprobe', '-a'] + list(MODULES),
                            capture_output=True, text=True)
    if result.returncode:
        raise AssertionError('cannot load %s: %s' % (' '.join(MODULES),
                                                     result.stderr))
    if not os.path.ismount(configfs.CONFIGFS):
        run('mount', '-t', 'configfs', 'configfs', configfs.CONFIGFS)
    os.makedirs(lio.DBROOT, exist_ok=True)  # rtslib-fb needs it
    # tcm_loop and vhost fabrics appear in configfs on first mkdir.
    for fabric in ('vhost', 'loopback'):
        os.makedirs(os.path.join(configfs.TARGET_ROOT, fabric), exist_ok=True)


def wait_readable(stream, timeout):
    """Whether stream has something to read within timeout seconds."""
    return bool(select.select([stream], [], [], timeout)[0])


class Agent:
    """A process that answers one JSON line per JSON request line.

    The protocol of the service agents (service_agent.py and
    consumers/nova_compute.py): ``{"call": name, ...}`` in, and
    ``{"result": ...}`` or ``{"error": class name, "kwargs": ...}`` out.
    """

    # Under TCG a privsep daemon's start, or Nova's import, takes tens of
    # seconds; a call that has not answered by then hangs.
    ANSWER_TIMEOUT = 300

    def __init__(self, argv, **popen_kwargs):
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            **popen_kwargs)

    def call(self, name, *args, **kwargs):
        """The agent's answer: {"result": ...} or {"error": ...}."""
        self.process.stdin.write(json.dumps(
            {'call': name, 'args': args, 'kwargs': kwargs}) + '\n')
        self.process.stdin.flush()
        if not wait_readable(self.process.stdout, self.ANSWER_TIMEOUT):
            # The agent's threads, as it dumps them, in captured stderr.
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(5)
            raise AssertionError('%s did not answer within %d s: a hang (the '
                                 "agent's stacks are in its stderr)"
                                 % (name, self.ANSWER_TIMEOUT))
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError('the agent died during %s' % name)
        return json.loads(line)

    def result(self, name, *args, **kwargs):
        answer = self.call(name, *args, **kwargs)
        if 'error' in answer:
            raise AssertionError('%s raised %s' % (name, answer))
        return answer['result']

    def stop(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def name_the_host():
    """Give the VM a host name, for sudo and Nova.

    It boots as "(none)", which sudo cannot resolve and Nova's
    [DEFAULT] host option refuses.
    """
    if socket.gethostname() == '(none)':
        run('hostname', 'localhost')


def vhost_targets():
    return set(os.listdir(VHOST)) - {'discovery_auth', 'version'}


def own_backstores():
    return {name for hba in os.listdir(CORE)
            if os.path.isdir(os.path.join(CORE, hba))
            for name in os.listdir(os.path.join(CORE, hba))
            if name.startswith(backstores.PREFIX)}


def configfs_snapshot():
    """Objects, links and identity attributes of every LIO object.

    Enough to tell whether anything was created, removed, relinked or
    renamed: every directory and symlink under core/ and the fabrics,
    plus the nexus, udev_path and enable values.
    """
    snapshot = {}
    for top in ('core', 'vhost', 'loopback', 'iscsi'):
        root = os.path.join(configfs.TARGET_ROOT, top)
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, configfs.TARGET_ROOT)
            if '/statistics' in rel or '/alua' in rel:
                continue
            snapshot[rel] = 'dir'
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    snapshot[os.path.join(rel, name)] = os.readlink(path)
                elif name in ('nexus', 'udev_path', 'enable'):
                    try:
                        with open(path) as attr:
                            value = attr.read().strip()
                    except OSError as err:
                        value = 'unreadable: %s' % err.strerror
                    snapshot[os.path.join(rel, name)] = value
    return snapshot


def queue_attribute(device_path, name):
    """An attribute of the device's sysfs queue, e.g. write_cache.

    Found by device number: an LV's node made by LVM without udev is
    named after the LV, not dm-N.
    """
    rdev = os.stat(device_path).st_rdev
    with open('/sys/dev/block/%d:%d/queue/%s'
              % (os.major(rdev), os.minor(rdev), name)) as f:
        return f.read().strip()


def queue_limit(device_path, name):
    """A number in the device's sysfs queue, e.g. discard_max_bytes."""
    return int(queue_attribute(device_path, name))


def backstore_attribute(backstore, name):
    """An attribute of one of vhost_brick's backstores, from configfs."""
    with open(os.path.join(backstores.path_of(backstore), 'attrib',
                           name)) as attribute:
        return attribute.read().strip()


class LoopDevice(fixtures.Fixture):
    """A loop device on a sparse file, optionally starting with data."""

    def __init__(self, size=16 << 20, data=b'', sector_size=512):
        super().__init__()
        self.size = size
        self.data = data
        self.sector_size = sector_size

    def _setUp(self):
        fd, self.backing_file = tempfile.mkstemp(prefix='vhost-brick-disk-')
        with os.fdopen(fd, 'wb') as backing:
            backing.truncate(self.size)
            backing.write(self.data)
        self.addCleanup(os.unlink, self.backing_file)
        self.path = run('losetup', '--find', '--show', '--sector-size',
                        str(self.sector_size), self.backing_file)
        self.addCleanup(run, 'losetup', '--detach', self.path)

    def resize(self, size):
        """Grow the backing file and tell the loop device, as online."""
        os.truncate(self.backing_file, size)
        run('losetup', '--set-capacity', self.path)


# For a VM without udev: LVM makes its device nodes itself, and activates
# thin pools without thin_check (thin-provisioning-tools is not needed).
LVM_SETTINGS = """\
devices {
    obtain_device_list_from_udev = 0
    use_devicesfile = 0
}
activation {
    udev_sync = 0
    udev_rules = 0
}
global {
    thin_check_executable = ""
}
"""


def remove_volume_group(lvm, group):
    """vgremove with lvm; fail if a mapping of the group is left behind."""
    lvm('vgremove', '--force', group)
    mapped = run('dmsetup', 'ls')
    prefix = group.replace('-', '--') + '-'
    if prefix in mapped:
        raise AssertionError('device-mapper still maps LVs of %s:\n%s'
                             % (group, mapped))
    # Without udev, LVM leaves the nodes of removed LVs behind, and the
    # next vgcreate of the name refuses ("already exists in filesystem").
    shutil.rmtree('/dev/' + group, ignore_errors=True)
    for node in glob.glob('/dev/mapper/' + prefix + '*'):
        os.unlink(node)


class ThinVolume(fixtures.Fixture):
    """A thin LV in a thin pool of its own, on a sparse loop device."""

    def __init__(self, size=32 << 20, pool_size=64 << 20):
        super().__init__()
        self.size = size
        self.pool_size = pool_size

    def _setUp(self):
        run('modprobe', 'dm_thin_pool')
        self.lvm_dir = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(self.lvm_dir, 'lvm.conf'), 'w') as conf:
            conf.write(LVM_SETTINGS)
        disk = self.useFixture(LoopDevice(size=self.pool_size + (16 << 20)))
        self.group = 'vhost-brick-thin-' + os.urandom(3).hex()
        self.lvm('vgcreate', self.group, disk.path)
        self.addCleanup(remove_volume_group, self.lvm, self.group)
        self.lvm('lvcreate', '--type', 'thin-pool', '--size',
                 '%dm' % (self.pool_size >> 20), '--name', 'pool', self.group)
        self.lvm('lvcreate', '--type', 'thin', '--virtualsize',
                 '%dm' % (self.size >> 20), '--thinpool', 'pool',
                 '--name', 'thin', self.group)
        self.path = '/dev/%s/thin' % self.group

    def lvm(self, *args):
        """Run an LVM command with this fixture's LVM configuration."""
        return run('env', 'LVM_SYSTEM_DIR=' + self.lvm_dir, *args)

    def data_percent(self):
        """How full the pool's data is, as ``lvs`` reports it."""
        return float(self.lvm('lvs', '--noheadings', '-o', 'data_percent',
                              self.group + '/pool').strip())


class RootConfig(fixtures.Fixture):
    """/etc/vhost-brick/vhost-brick.conf with these settings, then none.

    The root side reads the file at every call, so a running privsep
    daemon sees the change.
    """

    def __init__(self, **settings):
        super().__init__()
        self.settings = settings

    def _setUp(self):
        os.makedirs(os.path.dirname(rootconf.CONFIG_FILE), exist_ok=True)
        with open(rootconf.CONFIG_FILE, 'x') as conf:
            conf.write('[vhost_brick]\n' + ''.join(
                '%s = %s\n' % item for item in self.settings.items()))
        self.addCleanup(os.unlink, rootconf.CONFIG_FILE)


class FunctionalTestCase(base.TestCase):
    """Runs the public API as root against the real kernel.

    Every test must leave no endpoint or backstore of ours behind; the
    cleanup checks it.
    """

    def setUp(self):
        super().setUp()
        if not ENABLED:
            self.skipTest(SKIP_REASON)
        load_kernel_modules()
        # The default execute (processutils) runs the installed helper;
        # as root no root_helper prefix is applied.
        self.executor = executor.VhostExecutor(root_helper=None)
        self.targets_before = vhost_targets()
        self.backstores_before = own_backstores()
        self.addCleanup(self.assertNothingLeftBehind)

    @classmethod
    def class_fixture(cls, fixture):
        """Set a fixture up for the whole class; cleaned up after it."""
        fixture.setUp()
        cls.addClassCleanup(fixture.cleanUp)
        return fixture

    def assertNothingLeftBehind(self):
        if getattr(self, 'leaves_endpoints', False):
            return
        self.assertEqual(self.targets_before, vhost_targets())
        self.assertEqual(self.backstores_before, own_backstores())

    def make_disk(self, **kwargs):
        return self.useFixture(LoopDevice(**kwargs)).path

    def hold_endpoint(self, wwn):
        """Hold the endpoint through /dev/vhost-scsi, as QEMU does."""
        holder = subprocess.Popen(
            [sys.executable, '-c',
             'import sys\n'
             'from vhost_brick.privileged import vhostdev\n'
             'with vhostdev.claim(sys.argv[1]):\n'
             '    print("held", flush=True)\n'
             '    sys.stdin.read()\n', wwn],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.assertEqual('held', holder.stdout.readline().strip())
        return holder

    def release_endpoint(self, holder):
        holder.stdin.close()
        self.assertEqual(0, holder.wait())

    def create(self, device, **kwargs):
        """create_endpoint, deleting the endpoint at cleanup."""
        endpoint = self.executor.create_endpoint(device, **kwargs)
        self.addCleanup(self.executor.delete_endpoint, endpoint.wwn)
        return endpoint
