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

"""Hardening on a real kernel: other LIO users, hostile input, SIGKILL
at random points, and many processes at once."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import fixtures

from vhost_brick import exception
from vhost_brick.privileged import backstores
from vhost_brick.privileged import lio
from vhost_brick.privileged import state
from vhost_brick.tests.functional import base
from vhost_brick.tests import hostile


FOREIGN_VHOST = 'naa.5001405f0000f001'
FOREIGN_LOOPBACK = 'naa.5001405f0000f002'
FOREIGN_ISCSI = 'iqn.2003-01.org.example:foreign-target'


class ForeignObjects(fixtures.Fixture):
    """What other LIO users (targetcli, Cinder) leave on a host.

    Made with rtslib-fb directly: an iSCSI target, a loopback target and
    a vhost endpoint, each with a LUN on a foreign block backstore, and
    an unattached fileio backstore.
    """

    def __init__(self, disks):
        super().__init__()
        self.disks = disks

    def _setUp(self):
        rtslib = lio._rtslib()
        subprocess.run(['modprobe', 'iscsi_target_mod'], check=True)
        root = rtslib.RTSRoot()
        storages = [rtslib.BlockStorageObject('foreign%d' % i, dev=disk)
                    for i, disk in enumerate(self.disks)]
        fileio = rtslib.FileIOStorageObject(
            'foreign-file', dev='/run/foreign-file.img', size=1 << 20)
        self.addCleanup(os.unlink, '/run/foreign-file.img')
        for fabric, wwn, storage in (('iscsi', FOREIGN_ISCSI, storages[0]),
                                     ('loopback', FOREIGN_LOOPBACK,
                                      storages[1]),
                                     ('vhost', FOREIGN_VHOST, storages[2])):
            target = rtslib.Target(rtslib.FabricModule(fabric), wwn,
                                   mode='create')
            rtslib.LUN(rtslib.TPG(target, 1, mode='create'), 0, storage)
            self.addCleanup(delete_if_present, target)
        for storage in storages + [fileio]:
            self.addCleanup(storage.delete)
        self.addCleanup(root.invalidate_caches)


def delete_if_present(lio_object):
    if lio_object.exists:
        lio_object.delete()


class CoexistenceTestCase(base.FunctionalTestCase):
    """Every operation of ours leaves other users' objects as they were."""

    def test_operations_leave_foreign_objects_unchanged(self):
        self.useFixture(ForeignObjects([self.make_disk() for _ in range(3)]))
        before = base.configfs_snapshot()

        first = self.executor.create_endpoint(self.make_disk())
        second = self.executor.create_endpoint(self.make_disk())
        listed = {ep.wwn for ep in self.executor.list_endpoints()}
        self.assertLessEqual({first.wwn, second.wwn, FOREIGN_VHOST}, listed)
        self.assertNotIn(FOREIGN_LOOPBACK, listed)
        self.assertEqual(FOREIGN_VHOST,
                         self.executor.get_endpoint(FOREIGN_VHOST).wwn)
        self.assertRaises(exception.DeviceInUse,
                          self.executor.create_endpoint,
                          self.executor.get_endpoint(
                              FOREIGN_VHOST).luns[0].device_path)
        self.assertEqual((), self.executor.restore().restored)
        self.assertEqual({'endpoints': [], 'backstores': []},
                         self.executor.cleanup())
        self.executor.delete_endpoint(first.wwn)
        self.executor.delete_endpoint('naa.5001405f0000ffff')
        self.executor.delete_endpoint(second.wwn)

        self.assertEqual(before, base.configfs_snapshot())

    def test_explicit_delete_of_a_foreign_endpoint_keeps_its_backstore(self):
        foreign = self.useFixture(
            ForeignObjects([self.make_disk() for _ in range(3)]))
        self.assertTrue(foreign)
        backstores = {path for path in base.configfs_snapshot()
                      if path.startswith('core/') and 'foreign' in path}
        self.executor.delete_endpoint(FOREIGN_VHOST)
        self.assertNotIn(FOREIGN_VHOST, base.vhost_targets())
        self.assertLessEqual(backstores, set(base.configfs_snapshot()))


class HostileInputTestCase(base.FunctionalTestCase):
    """The hostile-input table against the real kernel and helper."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(hostile.ScratchFiles()).path
        self.disk = self.make_disk()

    def fill(self, value):
        if isinstance(value, str):
            return value.replace('{tmp}', self.tmp).replace('{disk}',
                                                            self.disk)
        return value

    def test_api_table(self):
        before = base.configfs_snapshot()
        for description, kwargs, error in hostile.BAD_CREATE_INPUTS:
            kwargs = {name: self.fill(value)
                      for name, value in kwargs.items()}
            kwargs.setdefault('device_path', self.disk)
            err = self.assertRaises(exception.VhostBrickException,
                                    self.executor.create_endpoint, **kwargs)
            self.assertIsInstance(err, error, description)
        self.assertEqual(before, base.configfs_snapshot())

    def test_helper_table(self):
        before = base.configfs_snapshot()
        for argv, error in hostile.BAD_HELPER_ARGV:
            argv = [arg.replace('/dev/loop0', self.disk) for arg in argv]
            result = subprocess.run(['vhost-brick-helper'] + argv,
                                    capture_output=True, text=True)
            self.assertEqual(error.helper_exit_code, result.returncode, argv)
            report = json.loads(result.stderr.splitlines()[-1])
            self.assertEqual(error.__name__, report['error'], argv)
        self.assertEqual(before, base.configfs_snapshot())


# The record the helper keeps with the default configuration.
RECORD = state.EndpointRecord(state.DEFAULT_STATE_PATH)


class CrashTestCase(base.FunctionalTestCase):
    """SIGKILL the helper at random points; the next call converges."""

    # Per test; the two *_then_cleanup_converges tests make 20 together.
    TRIALS = int(os.environ.get('VHOST_BRICK_CRASH_TRIALS', '10'))

    def run_helper_killed(self, argv, wwn, intent, delay, batch=None):
        """Start the helper; SIGKILL it delay s after it records intent."""
        helper = subprocess.Popen(['vhost-brick-helper'] + argv,
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        helper.stdin.write(json.dumps(batch).encode())
        helper.stdin.close()
        while helper.poll() is None:
            try:
                with open(RECORD.path(wwn)) as record:
                    if '"%s"' % intent in record.read():
                        break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.002)
        time.sleep(delay)
        helper.send_signal(signal.SIGKILL)
        return helper.wait()

    def assertConverged(self, wwn, disk):
        """The state files parse; the endpoint is whole or absent."""
        entries = RECORD.load()
        self.assertNotIn(entry_status(entries, wwn),
                         ('creating', 'deleting'))
        if wwn in base.vhost_targets():
            ep = self.executor.get_endpoint(wwn)
            self.assertEqual([disk], [lun.device_path for lun in ep.luns])
            self.assertEqual('present', entry_status(entries, wwn))
        else:
            self.assertNotIn(backstores.name_of(wwn), base.own_backstores())
            self.assertIsNone(entry_status(entries, wwn))

    def lio_time(self, argv):
        start = time.monotonic()
        subprocess.run(['vhost-brick-helper'] + argv, check=True,
                       capture_output=True)
        return time.monotonic() - start

    def test_killed_create_then_cleanup_converges(self):
        disk, rng = self.make_disk(), random.Random(1)
        span = self.lio_time(['create', '--device=' + disk, '--wwn=' +
                              'naa.5001405c0000ff00'])
        self.executor.delete_endpoint('naa.5001405c0000ff00')
        for trial in range(self.TRIALS):
            wwn = 'naa.5001405c0000%04x' % trial
            delay = rng.uniform(0, span / 2)
            self.run_helper_killed(['create', '--device=' + disk,
                                    '--wwn=' + wwn], wwn, 'creating', delay)
            self.executor.cleanup()
            self.assertConverged(wwn, disk)
            self.executor.delete_endpoint(wwn)

    def test_create_after_killed_create_succeeds(self):
        disk, rng = self.make_disk(), random.Random(2)
        for trial in range(self.TRIALS // 2):
            wwn = 'naa.5001405c0001%04x' % trial
            self.run_helper_killed(['create', '--device=' + disk,
                                    '--wwn=' + wwn], wwn, 'creating',
                                   rng.uniform(0, 0.5))
            ep = self.executor.create_endpoint(disk, wwn=wwn)
            self.assertEqual(disk, ep.luns[0].device_path)
            self.executor.delete_endpoint(wwn)

    def test_killed_delete_then_cleanup_converges(self):
        disk, rng = self.make_disk(), random.Random(3)
        for trial in range(self.TRIALS):
            wwn = 'naa.5001405c0002%04x' % trial
            self.executor.create_endpoint(disk, wwn=wwn)
            self.run_helper_killed(['delete', '--wwn=' + wwn], wwn,
                                   'deleting', rng.uniform(0, 0.5))
            self.executor.cleanup()
            self.assertConverged(wwn, disk)
            self.executor.delete_endpoint(wwn)

    def test_killed_batch_create_then_cleanup_converges(self):
        disks = [self.make_disk() for _ in range(4)]
        rng = random.Random(4)

        def specs(serial):
            return [{'device_path': disk,
                     'wwn': 'naa.5001405c0003%02x%02x' % (serial, i)}
                    for i, disk in enumerate(disks)]
        start = time.monotonic()
        self.executor.create_endpoints(specs(0xff))
        span = time.monotonic() - start
        self.executor.delete_endpoints([s['wwn'] for s in specs(0xff)])
        for trial in range(self.TRIALS // 2):
            batch = specs(trial)
            status = self.run_helper_killed(
                ['create-many'], batch[0]['wwn'], 'creating',
                rng.uniform(0, span / 2), batch)
            self.assertEqual(-signal.SIGKILL, status, 'finished unkilled')
            self.executor.cleanup()
            for spec in batch:
                self.assertConverged(spec['wwn'], spec['device_path'])
            self.executor.delete_endpoints([spec['wwn'] for spec in batch])


def entry_status(entries, wwn):
    return entries.get(wwn, {}).get('status')


WORKER = textwrap.dedent('''
    import json, subprocess, sys
    from oslo_concurrency import lockutils
    from oslo_config import cfg
    from vhost_brick import VhostExecutor
    lockutils.set_defaults(sys.argv[1])
    index, count = int(sys.argv[2]), int(sys.argv[3])
    # Both privileged paths at once: half the workers use each.
    cfg.CONF.set_override('privileged_mode',
                          ('privsep', 'helper')[index % 2], 'vhost_brick')
    executor = VhostExecutor(root_helper=None)
    kept, errors = [], []
    for i in range(count):
        disk = subprocess.run(
            ['losetup', '--find', '--show', sys.argv[4 + i]],
            check=True, capture_output=True, text=True).stdout.strip()
        try:
            ep = executor.create_endpoint(disk)
            if i % 2:
                executor.delete_endpoint(ep.wwn)
            else:
                kept.append(ep.to_dict())
            executor.list_endpoints()
        except Exception as err:
            errors.append(repr(err))
    print(json.dumps({'kept': kept, 'errors': errors}))
''')


class ConcurrencyTestCase(base.FunctionalTestCase):
    """Many processes creating, deleting and listing at once."""

    PROCESSES = int(os.environ.get('VHOST_BRICK_CONCURRENCY_PROCESSES', '8'))
    ENDPOINTS = int(os.environ.get('VHOST_BRICK_CONCURRENCY_ENDPOINTS', '4'))

    def test_concurrent_callers_end_with_exactly_the_expected_endpoints(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        workers = []
        for index in range(self.PROCESSES):
            files = []
            for i in range(self.ENDPOINTS):
                files.append(os.path.join(tmp, 'disk-%d-%d' % (index, i)))
                with open(files[-1], 'wb') as backing:
                    backing.truncate(4 << 20)
            workers.append(subprocess.Popen(
                [sys.executable, '-c', WORKER, tmp, str(index),
                 str(self.ENDPOINTS)] + files,
                stdout=subprocess.PIPE, text=True))
        results = [json.loads(worker.communicate()[0]) for worker in workers]
        self.addCleanup(self.detach_loops, tmp)

        kept = [ep for result in results for ep in result['kept']]
        for ep in kept:
            self.addCleanup(self.executor.delete_endpoint, ep['wwn'])
        self.assertEqual([], [err for result in results
                              for err in result['errors']])
        self.assertEqual(self.PROCESSES * ((self.ENDPOINTS + 1) // 2),
                         len(kept))
        self.assertEqual(len(kept), len({ep['wwn'] for ep in kept}))
        ours = {ep.wwn: ep.to_dict() for ep in self.executor.list_endpoints()
                if ep.wwn not in self.targets_before}
        self.assertEqual({ep['wwn']: ep for ep in kept}, ours)
        self.assertEqual({'endpoints': [], 'backstores': []},
                         self.executor.cleanup())
        entries = RECORD.load()
        self.assertEqual({wwn: 'present' for wwn in ours},
                         {wwn: entry['status'] for wwn, entry
                          in entries.items() if wwn in ours})

    def detach_loops(self, tmp):
        for line in base.run('losetup', '--list', '--noheadings',
                             '--output', 'NAME,BACK-FILE').splitlines():
            name, backing = line.split(None, 1)
            if backing.startswith(tmp):
                base.run('losetup', '--detach', name)
