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

"""Control-plane cost of vhost_brick against the tools people use today.

Runs inside the VM (tools/benchmark.sh boots it), as root. With N
endpoints already present (made with vhost_brick's batch API on null_blk
devices), it times one endpoint's create, get and delete and the listing
for: raw configfs from this process (the floor), vhost_brick's public API
(a helper process per call, directly and through sudo + vhost-brick-rootwrap,
and the privsep daemon), rtslib-fb used naively in this process,
a cinder-rtstool style process per operation that saves the whole
configuration, and targetcli per command. It also times a batch create
and delete in one helper call, restore() of the N endpoints after a
simulated reboot, an empty call of the privsep daemon, and a service's
first call through vhost_brick's daemon next to os-brick's, and checks
the project's targets. Absolute times under TCG are not meaningful; the
ratios to the floor and their growth with N are.
"""

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import time

from oslo_concurrency import processutils
import rtslib_fb

from vhost_brick import executor as vb_executor
from vhost_brick.privileged import backstores
from vhost_brick.privileged import configfs
from vhost_brick.privileged import entrypoints
from vhost_brick.privileged import lio

TARGET = configfs.TARGET_ROOT
VHOST = configfs.VHOST_FABRIC
# null_blk has no cap of its own (one minor number per device); 2000
# devices with shared tags take about 130 MiB of the 1 GiB guest.
NULL_BLK_MAX = 2000
FLOOR = 'raw configfs (floor)'
API = 'vhost_brick API, helper per call'
ROOTWRAP_API = 'vhost_brick API, helper, sudo + rootwrap'
PRIVSEP_API = 'vhost_brick API, privsep daemon'
ROOTWRAP_CONF = '/etc/vhost-brick/rootwrap.conf'
ROOT_HELPER = 'sudo -n %s %s' % (
    os.path.join(os.path.dirname(sys.executable), 'vhost-brick-rootwrap'),
    ROOTWRAP_CONF)
DAEMON_START = 'privsep daemon start + 1st call, sudo + rootwrap'
OS_BRICK_START = "os-brick's privsep daemon start + 1st call, same"
# A service's first call. It has imported oslo.privsep already (a Nova
# or Cinder service has, for os-brick's daemon); what is timed is what
# the daemon's user adds: the daemon's start through sudo + rootwrap, its
# imports, the call. Root uses no root_helper: helper_command starts the
# daemon as a service user's root helper would.
FIRST_CALL = """
import sys, time
import oslo_privsep.daemon
from oslo_config import cfg
%(imports)s
start = time.monotonic()
cfg.CONF.set_override('helper_command', sys.argv[1] + ' privsep-helper',
                      group=%(section)s)
%(call)s
print(time.monotonic() - start)
"""
# vhost_brick's first call, and its peer: os-brick's daemon
# (privsep_osbrick), started the same way, with its cheapest call, an
# unlink of no links.
FIRST_CALLS = {
    DAEMON_START: FIRST_CALL % {
        'imports': 'from vhost_brick import executor, privileged',
        'section': 'privileged.default.cfg_section',
        'call': 'executor.VhostExecutor(root_helper=None).list_endpoints()'},
    OS_BRICK_START: FIRST_CALL % {
        'imports': 'from os_brick.privileged import rootwrap',
        'section': "'privsep_osbrick'",
        'call': 'rootwrap.unlink_root()'},
}
# os-brick's daemon through vhost_brick's rootwrap, as the shipped filter
# lets vhost_brick's through: for the benchmark only.
OS_BRICK_FILTER = (
    '[Filters]\nprivsep-os-brick: RegExpFilter, privsep-helper, root, '
    'privsep-helper, --privsep_context, os_brick\\.privileged\\.default, '
    '--privsep_sock_path, /tmp/tmp\\w+/privsep\\.sock\n')
# A get in this process or through the privsep daemon costs a few
# milliseconds: its median is taken over this many samples per cycle, a
# change's over one. A get through a process per call costs seconds
# (through sudo + rootwrap about 4 s under TCG): one sample per cycle,
# like a change.
GETS_PER_CYCLE = 5
# What every privsep daemon imports before it runs a line of its
# context's code; eventlet left out, as vhost-brick-rootwrap leaves it.
PRIVSEP_IMPORT = "python -c 'import oslo_privsep.daemon'"
RTSLIB_IMPORT = "python -c 'import rtslib_fb'"
NO_EVENTLET = 'import sys; sys.modules["eventlet"] = None; '
RTSLIB = 'rtslib-fb naive, this process'
RTSTOOL = 'rtstool-style process + save'
TARGETCLI = 'targetcli per command + saveconfig'
RAW_LOOP = 'raw configfs, %d in a loop, per endpoint'
SLOW = (RTSTOOL, TARGETCLI)
# Every approach a cycle can take; each cycle uses one fresh device.
APPROACHES = (FLOOR, RTSLIB, API, ROOTWRAP_API, PRIVSEP_API) + SLOW
RTSTOOL_CREATE = '''
import sys, rtslib_fb as r
root = r.RTSRoot()
if any(so.name == sys.argv[1] for so in root.storage_objects):
    sys.exit("exists")
so = r.BlockStorageObject(sys.argv[1], dev=sys.argv[2])
t = r.Target(r.FabricModule("vhost"), sys.argv[3], mode="create")
r.LUN(r.TPG(t, 1, mode="create"), 0, so)
root.save_to_file("/run/bench-saveconfig.json")
'''
RTSTOOL_DELETE = '''
import sys, rtslib_fb as r
root = r.RTSRoot()
for t in root.targets:
    if t.wwn == sys.argv[2]:
        t.delete()
for so in root.storage_objects:
    if so.name == sys.argv[1]:
        so.delete()
root.save_to_file("/run/bench-saveconfig.json")
'''


def write(path, value):
    with open(path, 'w') as f:
        f.write(value)


def read(path):
    with open(path) as f:
        return f.read().strip()


class Raw:
    """Endpoints with plain configfs calls from this process: the floor."""

    def __init__(self):
        self.index = 500000

    def create(self, name, device, wwn):
        self.index += 1
        backstore = '%s/core/iblock_%d/%s' % (TARGET, self.index, name)
        os.makedirs(backstore)
        write(backstore + '/control', 'udev_path=%s,readonly=0' % device)
        write(backstore + '/udev_path', device)
        write(backstore + '/enable', '1')
        write(backstore + '/wwn/vpd_unit_serial', 'serial-' + wwn[-9:])
        tpg = '%s/%s/tpgt_1' % (VHOST, wwn)
        os.makedirs(tpg)
        write(tpg + '/nexus', 'naa.5001405' + wwn[-9:])
        os.mkdir(tpg + '/lun/lun_0')
        os.symlink(backstore, tpg + '/lun/lun_0/link')

    @staticmethod
    def delete(wwn):
        """Delete the endpoint and its backstores, given only the WWN."""
        for backstore in Raw.remove_target(wwn):
            os.rmdir(backstore)
            os.rmdir(os.path.dirname(backstore))

    @staticmethod
    def remove_target(wwn):
        """Remove a target and its LUNs; return the backstores they used."""
        backstores = []
        target = os.path.join(VHOST, wwn)
        for tpg in glob.glob(target + '/tpgt_*'):
            for lun in glob.glob(tpg + '/lun/lun_*'):
                for entry in os.scandir(lun):
                    if entry.is_symlink():
                        backstores.append(os.path.realpath(entry.path))
                        os.unlink(entry.path)
                os.rmdir(lun)
            os.rmdir(tpg)
        os.rmdir(target)
        return backstores

    @staticmethod
    def get(wwn):
        """The fields list_endpoints() reports, for each TPG of wwn."""
        result = []
        target = os.path.join(VHOST, wwn)
        for tpg in sorted(os.listdir(target)):
            if not tpg.startswith('tpgt_'):
                continue
            luns = []
            lun_root = os.path.join(target, tpg, 'lun')
            for lun in os.listdir(lun_root):
                for entry in os.scandir(os.path.join(lun_root, lun)):
                    if entry.is_symlink():
                        hba, name = os.readlink(entry.path).split('/')[-2:]
                        storage = os.path.join(configfs.CORE, hba, name)
                        luns.append((int(lun[4:]),
                                     read(storage + '/udev_path'), name,
                                     read(storage + '/wwn/vpd_unit_serial'),
                                     'readonly: 1' in read(storage +
                                                           '/info'),
                                     read(storage + '/attrib/emulate_tpu')))
            result.append((wwn, int(tpg[5:]),
                           read(os.path.join(target, tpg, 'nexus')),
                           sorted(luns)))
        return result

    @staticmethod
    def list():
        return [tpg for wwn in os.listdir(VHOST) if wwn.startswith('naa.')
                for tpg in Raw.get(wwn)]

    @staticmethod
    def stats():
        """The counters list_endpoint_stats() reports, of every LUN."""
        counters = []
        for lun in glob.glob(VHOST + '/naa.*/tpgt_1/lun/lun_*'):
            for entry in os.scandir(lun):
                if entry.is_symlink():
                    storage = os.path.realpath(entry.path)
                    counters.append(
                        [int(read('%s/statistics/scsi_tgt_port/%s'
                                  % (lun, name)))
                         for name in ('in_cmds', 'read_mbytes',
                                      'write_mbytes')] +
                        [int(read('%s/statistics/scsi_tgt_dev/%s'
                                  % (storage, name)))
                         for name in ('resets', 'aborts_complete',
                                      'aborts_no_task')])
        return counters


class Rtslib:
    """rtslib-fb used naively in this long-lived process."""

    @staticmethod
    def resync():
        """Re-read rtslib-fb's backstore index cache after others' changes.

        A long-lived process primes the cache once; other processes'
        backstores would then collide with the indexes it picks.
        """
        rtslib_fb.tcm.bs_cache.clear()
        try:
            rtslib_fb.BlockStorageObject('bench-prime-cache')
        except rtslib_fb.RTSLibError:
            pass

    @staticmethod
    def create(name, device, wwn):
        storage = rtslib_fb.BlockStorageObject(name, dev=device)
        target = rtslib_fb.Target(rtslib_fb.FabricModule('vhost'), wwn,
                                  mode='create')
        rtslib_fb.LUN(rtslib_fb.TPG(target, 1, mode='create'), 0, storage)

    @staticmethod
    def describe(target):
        return [(target.wwn, tpg.tag, tpg.nexus,
                 [(lun.lun, lun.storage_object.udev_path,
                   lun.storage_object.name, lun.storage_object.wwn,
                   lun.storage_object.readonly) for lun in tpg.luns])
                for tpg in target.tpgs]

    @staticmethod
    def get(wwn):
        return Rtslib.describe(rtslib_fb.Target(
            rtslib_fb.FabricModule('vhost'), wwn, mode='lookup'))

    @staticmethod
    def delete(name, wwn):
        rtslib_fb.Target(rtslib_fb.FabricModule('vhost'), wwn,
                         mode='lookup').delete()
        rtslib_fb.BlockStorageObject(name).delete()

    @staticmethod
    def list():
        return [tpg for target in rtslib_fb.FabricModule('vhost').targets
                for tpg in Rtslib.describe(target)]


def run(*cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError('%s exited %d: %s' % (' '.join(cmd)[:200],
                                                 result.returncode,
                                                 result.stderr[-2000:]))
    return result.stdout


def execute_through_root_helper(*cmd, root_helper, run_as_root, **kwargs):
    """processutils.execute, with the root helper applied for root too.

    processutils applies none for root, and the benchmark runs as root:
    without this the sudo + rootwrap rows would time the bare helper.
    """
    return processutils.execute(*root_helper.split(), *cmd, **kwargs)


def timed(func, *args):
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


def targetcli(*commands):
    """One targetcli process per command line, like a script would."""
    for command in commands:
        run('targetcli', *command.split())


def expect(condition, what):
    if not condition:
        raise RuntimeError('benchmark check failed: ' + what)


class Bench:

    def __init__(self, args):
        self.args = args
        self.raw = Raw()
        # An explicit execute: the helper, one process per call.
        self.executor = vb_executor.VhostExecutor(
            root_helper=None, execute=processutils.execute)
        self.executors = {
            API: self.executor,
            ROOTWRAP_API: vb_executor.VhostExecutor(
                root_helper=ROOT_HELPER, execute=execute_through_root_helper),
            # privileged_mode's default; root starts the daemon directly.
            PRIVSEP_API: vb_executor.VhostExecutor(root_helper=None),
        }
        self.devices = iter('/dev/nullb%d' % i for i in range(NULL_BLK_MAX))
        self.serial = 0
        self.population = []
        self.samples = {}
        self.startup = {}
        self.started = time.monotonic()

    def progress(self, what):
        """Say what the run does next and when: where its time goes."""
        print('[%5.1f min] %s' % ((time.monotonic() - self.started) / 60,
                                  what), flush=True)

    def wwn(self):
        self.serial += 1
        return 'naa.5001405d%08x' % self.serial

    def fresh(self):
        """A name, an unused null_blk device and a new WWN."""
        wwn = self.wwn()
        return 'bench%d' % self.serial, next(self.devices), wwn

    def add(self, level, op, approach, seconds, floor_op=None):
        """Record a sample; floor_op is the floor it is compared with."""
        self.samples.setdefault((level, op, approach, floor_op or op),
                                []).append(seconds)

    def slow_allowed(self, level):
        return level <= self.args.slow_max

    def cycle(self, level, approach):
        """Create, check, (get,) delete and check one endpoint."""
        name, device, wwn = self.fresh()
        path = '%s/%s/tpgt_1/lun/lun_0' % (VHOST, wwn)
        if approach == FLOOR:
            self.add(level, 'create', approach,
                     timed(self.raw.create, name, device, wwn))
            expect(os.path.isdir(path), 'raw create ' + wwn)
            self.time_gets(level, approach, self.raw.get, wwn)
            self.add(level, 'delete', approach, timed(self.raw.delete, wwn))
        elif approach in self.executors:
            api = self.executors[approach]
            self.add(level, 'create', approach,
                     timed(api.create_endpoint, device, wwn))
            expect(os.path.isdir(path), '%s create %s' % (approach, wwn))
            self.time_gets(level, approach, api.get_endpoint, wwn)
            if approach == PRIVSEP_API:
                self.time_empty_calls(level)
            self.add(level, 'delete', approach,
                     timed(api.delete_endpoint, wwn))
        elif approach == RTSLIB:
            self.add(level, 'create', approach,
                     timed(Rtslib.create, name, device, wwn))
            expect(os.path.isdir(path), 'rtslib create ' + wwn)
            self.time_gets(level, approach, Rtslib.get, wwn)
            self.add(level, 'delete', approach,
                     timed(Rtslib.delete, name, wwn))
        elif approach == RTSTOOL:
            self.add(level, 'create', approach,
                     timed(run, sys.executable, '-c', RTSTOOL_CREATE, name,
                           device, wwn))
            expect(os.path.isdir(path), 'rtstool create ' + wwn)
            self.add(level, 'delete', approach,
                     timed(run, sys.executable, '-c', RTSTOOL_DELETE, name,
                           wwn))
        else:
            self.add(level, 'create', approach, timed(
                targetcli, '/backstores/block create %s %s' % (name, device),
                '/vhost create ' + wwn,
                '/vhost/%s/tpg1/luns create /backstores/block/%s'
                % (wwn, name), 'saveconfig'))
            expect(os.path.isdir(path), 'targetcli create ' + wwn)
            self.add(level, 'delete', approach, timed(
                targetcli, '/vhost delete ' + wwn,
                '/backstores/block delete ' + name, 'saveconfig'))
        expect(not os.path.exists(os.path.join(VHOST, wwn)),
               '%s delete %s' % (approach, wwn))

    def time_gets(self, level, approach, get, wwn):
        """Samples of get(wwn): GETS_PER_CYCLE of milliseconds, else one.

        A get costs milliseconds in this process and through the daemon.
        """
        milliseconds = approach in (FLOOR, RTSLIB, PRIVSEP_API)
        for _ in range(GETS_PER_CYCLE if milliseconds else 1):
            self.add(level, 'get', approach, timed(get, wwn))

    def time_empty_calls(self, level):
        """A call of the privsep daemon that runs no operation.

        The show entry point without its argument: the same channel,
        daemon, dispatch and answer as a get, refused (InvalidArgument)
        before the operation. A get's cost over it is the operation's.
        """
        for _ in range(GETS_PER_CYCLE):
            start = time.perf_counter()
            answer = entrypoints.show()
            self.add(level, 'empty', PRIVSEP_API,
                     time.perf_counter() - start, floor_op='get')
            expect(answer.get('error', {}).get('error') == 'InvalidArgument',
                   'empty privsep call answered %r' % (answer,))

    def approaches(self, level):
        slow = SLOW if self.slow_allowed(level) else ()
        return (FLOOR, RTSLIB) + tuple(self.executors) + slow

    def warm_up(self):
        """One untimed cycle per approach: page cache, pyc, TCG caches."""
        for approach in self.approaches(0):
            self.cycle(0, approach)
        self.samples.clear()

    def populate(self, count):
        """Bring the population to count endpoints with the batch API."""
        while len(self.population) < count:
            specs = [{'device_path': next(self.devices), 'wwn': self.wwn()}
                     for _ in range(min(self.args.batch,
                                        count - len(self.population)))]
            report = self.executor.create_endpoints(specs)
            expect(not report.failed, 'populate: %s' % (report.failed,))
            self.population += [spec['wwn'] for spec in specs]
        Rtslib.resync()

    def check_population(self, what):
        targets = [wwn for wwn in os.listdir(VHOST) if wwn.startswith('naa.')]
        backstores = glob.glob(configfs.CORE + '/iblock_*/*/udev_path')
        expect(sorted(targets) == sorted(self.population) and
               len(backstores) == len(self.population),
               '%s: %d targets and %d backstores, expected %d'
               % (what, len(targets), len(backstores), len(self.population)))

    def measure_lists(self, level):
        self.add(level, 'list', FLOOR, timed(self.raw.list))
        self.add(level, 'stats', FLOOR, timed(self.raw.stats))
        for approach, api in self.executors.items():
            self.add(level, 'list', approach, timed(api.list_endpoints))
            self.add(level, 'stats', approach,
                     timed(api.list_endpoint_stats))
        self.add(level, 'list', RTSLIB, timed(Rtslib.list))
        if self.slow_allowed(level):
            self.add(level, 'list', TARGETCLI,
                     timed(targetcli, 'ls /vhost'))

    def measure_batch(self, level):
        size = self.args.batch
        specs = [{'device_path': device, 'wwn': wwn}
                 for _name, device, wwn in (self.fresh() for _ in range(size))]
        wwns = [spec['wwn'] for spec in specs]
        self.measure_raw_loop(level, [spec['device_path'] for spec in specs])
        start = time.perf_counter()
        report = self.executor.create_endpoints(specs)
        seconds = time.perf_counter() - start
        expect(not report.failed and len(report.created) == size,
               'batch create: %d created, failed %s'
               % (len(report.created), report.failed))
        expect(all(os.path.isdir(os.path.join(VHOST, wwn)) for wwn in wwns),
               'batch create: endpoints missing in configfs')
        approach = 'vhost_brick batch of %d, per endpoint' % size
        self.add(level, 'create', approach, seconds / size)
        start = time.perf_counter()
        report = self.executor.delete_endpoints(wwns)
        seconds = time.perf_counter() - start
        expect(not report.failed and len(report.deleted) == size,
               'batch delete: %d deleted, failed %s'
               % (len(report.deleted), report.failed))
        self.add(level, 'delete', approach, seconds / size)
        self.check_population('after the batch')

    def measure_raw_loop(self, level, devices):
        """The floor of a batch: raw creates, then deletes, in a loop.

        Same devices and count as the batch, timed as one run each, so
        that the batch is compared with work done in the same way rather
        than with the median of single operations.
        """
        endpoints = [('raw%d' % self.serial, device, self.wwn())
                     for device in devices]
        start = time.perf_counter()
        for name, device, wwn in endpoints:
            self.raw.create(name, device, wwn)
        created = time.perf_counter() - start
        start = time.perf_counter()
        for _name, _device, wwn in endpoints:
            self.raw.delete(wwn)
        deleted = time.perf_counter() - start
        approach = RAW_LOOP % len(devices)
        self.add(level, 'create', approach, created / len(devices))
        self.add(level, 'delete', approach, deleted / len(devices))

    def measure_restore(self, level):
        """Drop the population from configfs as a reboot would; restore."""
        for wwn in self.population:
            Raw.remove_target(wwn)
        hbas = set()
        for backstore in glob.glob('%s/iblock_*/%s*' % (
                configfs.CORE, backstores.PREFIX)):
            os.rmdir(backstore)
            hbas.add(os.path.dirname(backstore))
        for hba in hbas:
            os.rmdir(hba)
        expect(not glob.glob(VHOST + '/naa.*'), 'reboot left targets')
        start = time.perf_counter()
        report = self.executor.restore()
        seconds = time.perf_counter() - start
        expect(len(report.restored) == level and not report.failed,
               'restore: %d restored, failed %s'
               % (len(report.restored), report.failed))
        self.check_population('after restore')
        self.add(level, 'restore', 'vhost_brick restore() of %d, per '
                 'endpoint' % level, seconds / level, floor_op='create')

    def measure(self, level):
        self.progress('N=%d: single operations ...' % level)
        for _ in range(self.args.reps):
            for approach in self.approaches(level):
                self.cycle(level, approach)
        self.check_population('after the cycles')
        self.progress('N=%d: lists ...' % level)
        for _ in range(self.args.reps):
            self.measure_lists(level)
        self.progress('N=%d: batch ...' % level)
        self.measure_batch(level)
        self.progress('N=%d: restore ...' % level)
        self.measure_restore(level)

    def medians(self):
        return {key: statistics.median(values)
                for key, values in self.samples.items()}

    def report(self, levels):
        medians = self.medians()
        floor = {(level, op): seconds for (level, op, approach, _floor_op),
                 seconds in medians.items() if approach == FLOOR}
        rows = [key + (seconds,) for key, seconds in medians.items()]
        skipped = [level for level in levels if not self.slow_allowed(level)]
        rows += [(level, op, approach, op, None) for level in skipped
                 for approach in SLOW for op in ('create', 'delete', 'list')
                 if (op, approach) != ('list', RTSTOOL)]
        print('\n%6s  %-8s %-44s %10s %9s'
              % ('N', 'op', 'approach', 'median', 'x floor'))
        for level, op, approach, floor_op, seconds in sorted(
                rows, key=lambda row: (row[0], row[1], row[2] != FLOOR,
                                       row[4] is None, row[4] or 0)):
            if seconds is None:
                print('%6d  %-8s %-44s %s' % (level, op, approach,
                                              'not measured (--slow-max)'))
                continue
            print('%6d  %-8s %-44s %9.3fs %8.1fx'
                  % (level, op, approach, seconds,
                     seconds / floor[level, floor_op]))
        print('\nx floor: over raw configfs of the same op and N. Batch '
              'and restore rows: one call per N, cost per endpoint; '
              'restore is compared with raw create; empty, a privsep call '
              'refused before any operation, with raw get.')
        if skipped:
            high = max(skipped)
            print('Not measured above --slow-max %d: their cost grows with '
                  'every endpoint present (perf-anchors fits: a whole-config '
                  'save ~0.2 s and a targetcli create ~0.4 s per endpoint), '
                  'so at N=%d one rtstool-style operation would take ~%d s '
                  'and one targetcli create ~%d s, each repeated --reps '
                  'times.' % (self.args.slow_max, high, 4 + 0.2 * high,
                              24 + 0.4 * high))
        print('\nprocess start-up (median of %d):' % self.args.reps)
        for label, seconds in self.startup.items():
            print('  %-32s %8.3fs' % (label, seconds))
        print("  oslo.privsep's import alone: %.2fx import rtslib_fb, the "
              "floor under any privsep daemon's start"
              % (self.startup[PRIVSEP_IMPORT] /
                 self.startup[RTSLIB_IMPORT]))
        self.targets(medians, levels[0], levels[-1])
        sys.stdout.flush()

    def targets(self, medians, low, high):
        """Print each of the project's targets, met or not, for this run."""
        batch = 'vhost_brick batch of %d, per endpoint' % self.args.batch
        raw_loop = RAW_LOOP % self.args.batch
        checks = [
            ('API create, N=%d vs N=%d' % (high, low), 1.3,
             (high, 'create', API, 'create'), (low, 'create', API, 'create')),
            ('API delete, N=%d vs N=%d' % (high, low), 1.3,
             (high, 'delete', API, 'delete'), (low, 'delete', API, 'delete')),
            ('list_endpoints() vs raw walk, N=%d' % high, 2.0,
             (high, 'list', API, 'list'), (high, 'list', FLOOR, 'list')),
            ('helper verify vs import rtslib_fb', 1.5,
             'vhost-brick-helper verify', RTSLIB_IMPORT),
            ('privsep list vs raw walk, N=%d' % high, 1.3,
             (high, 'list', PRIVSEP_API, 'list'),
             (high, 'list', FLOOR, 'list')),
            # What a poller of every endpoint's counters costs the host.
            ('privsep list_endpoint_stats vs raw walk, N=%d' % high, 1.3,
             (high, 'stats', PRIVSEP_API, 'stats'),
             (high, 'stats', FLOOR, 'stats')),
            ("privsep daemon start + 1st call vs os-brick's", 1.1,
             DAEMON_START, OS_BRICK_START),
            ('batch create per ep vs raw loop, N=%d' % high, 2.0,
             (high, 'create', batch, 'create'),
             (high, 'create', raw_loop, 'create')),
            ('batch delete per ep vs raw loop, N=%d' % high, 2.0,
             (high, 'delete', batch, 'delete'),
             (high, 'delete', raw_loop, 'delete')),
        ]
        for level in sorted({key[0] for key in medians}):
            for op in ('create', 'delete'):
                checks.append(('privsep %s vs floor, N=%d' % (op, level),
                               2.5, (level, op, PRIVSEP_API, op),
                               (level, op, FLOOR, op)))
            checks.append(('privsep get vs privsep empty, N=%d' % level,
                           1.5, (level, 'get', PRIVSEP_API, 'get'),
                           (level, 'empty', PRIVSEP_API, 'get')))
        values = {**medians, **self.startup}
        print('\ntargets (ratios from this run):')
        for label, limit, measured, reference in checks:
            ratio = values[measured] / values[reference]
            print('  %-44s %7.2fx  (<= %.1fx)  %s'
                  % (label, ratio, limit,
                     'met' if ratio <= limit else 'NOT met'))


def install_rootwrap():
    """The shipped rootwrap configuration, this virtualenv's bin first."""
    os.makedirs('/etc/vhost-brick/rootwrap.d', exist_ok=True)
    shutil.copy('etc/vhost-brick/rootwrap.d/vhost-brick.filters',
                '/etc/vhost-brick/rootwrap.d/')
    with open('etc/vhost-brick/rootwrap.conf') as shipped:
        write(ROOTWRAP_CONF, shipped.read().replace(
            'exec_dirs=', 'exec_dirs=%s,' % os.path.dirname(sys.executable)))
    write('/etc/vhost-brick/rootwrap.d/bench-os-brick.filters',
          OS_BRICK_FILTER)


def measure_startup(reps):
    """Process and daemon start-up against a bare rtslib-fb import."""
    result = {}
    for label, cmd in (
            ('python -c pass', (sys.executable, '-c', 'pass')),
            (RTSLIB_IMPORT,
             (sys.executable, '-c', 'import rtslib_fb')),
            ('vhost-brick-helper verify', ('vhost-brick-helper', 'verify')),
            (PRIVSEP_IMPORT, (sys.executable, '-c', NO_EVENTLET +
                              'import oslo_privsep.daemon'))):
        run(*cmd)
        result[label] = statistics.median(timed(run, *cmd)
                                          for _ in range(reps))
    # Timed inside a fresh process: what a service's first call costs.
    for label, script in FIRST_CALLS.items():
        result[label] = statistics.median(
            float(run(sys.executable, '-c', script, ROOT_HELPER))
            for _ in range(reps))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--levels', default='10,100,1000')
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--batch', type=int, default=200,
                        help='endpoints per batch call')
    parser.add_argument('--slow-max', type=int, default=100,
                        help='largest N at which rtstool-style and '
                             'targetcli are measured')
    args = parser.parse_args()
    levels = sorted(int(level) for level in args.levels.split(','))
    count = (max(levels) + len(levels) * (args.batch + len(APPROACHES) *
                                          args.reps) + len(APPROACHES))
    if count > NULL_BLK_MAX:
        parser.error('the run needs %d null_blk devices, more than %d'
                     % (count, NULL_BLK_MAX))
    run('modprobe', '-a', 'configfs', 'target_core_iblock', 'vhost_scsi')
    run('modprobe', 'null_blk', 'nr_devices=%d' % count, 'shared_tags=1')
    os.makedirs(lio.DBROOT, exist_ok=True)
    os.makedirs(VHOST, exist_ok=True)
    os.makedirs('/run/dbus', exist_ok=True)
    run('dbus-daemon', '--system', '--fork')  # targetcli needs it
    print('kernel %s, levels %s, %d reps, batch %d, slow-max %d'
          % (os.uname().release, levels, args.reps, args.batch,
             args.slow_max), flush=True)
    install_rootwrap()
    bench = Bench(args)
    bench.progress('process start-up ...')
    bench.startup = measure_startup(args.reps)
    bench.progress('warm-up ...')
    bench.warm_up()
    for level in levels:
        bench.progress('populating to N=%d ...' % level)
        bench.populate(level)
        bench.measure(level)
    bench.progress('control-plane rows done')
    bench.report(levels)


if __name__ == '__main__':
    main()
