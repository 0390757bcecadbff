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
endpoints already present (made with raw configfs writes on null_blk
devices), it times one endpoint's create, get, delete and the listing,
for: raw configfs writes from this process (the floor), vhost_brick's
public API (a root helper process per call), rtslib-fb used naively in
this process, and a cinder-rtstool style process per operation that
saves the whole configuration. Absolute times under TCG are not
meaningful; the ratios to the floor and their growth with N are.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from vhost_brick import executor as vb_executor
from vhost_brick import lio

TARGET = lio.TARGET_ROOT
RTSTOOL_CREATE = '''
import sys, rtslib_fb as r
root = r.RTSRoot()
so = r.BlockStorageObject(sys.argv[1], dev=sys.argv[2])
t = r.Target(r.FabricModule("vhost"), sys.argv[3], mode="create")
r.LUN(r.TPG(t, 1, mode="create"), 0, so)
root.save_to_file("/run/bench-saveconfig.json")
'''
RTSTOOL_DELETE = '''
import sys, rtslib_fb as r
root = r.RTSRoot()
r.Target(r.FabricModule("vhost"), sys.argv[2], mode="lookup").delete()
r.BlockStorageObject(sys.argv[1]).delete()
root.save_to_file("/run/bench-saveconfig.json")
'''


def write(path, value):
    with open(path, 'w') as f:
        f.write(value)


class Raw:
    """Endpoint create/delete with plain configfs writes: the floor."""

    def __init__(self):
        self.index = 500000

    def create(self, name, device, wwn):
        self.index += 1
        backstore = '%s/core/iblock_%d/%s' % (TARGET, self.index, name)
        os.makedirs(backstore)
        write(backstore + '/control', 'udev_path=' + device)
        write(backstore + '/udev_path', device)
        write(backstore + '/enable', '1')
        tpg = '%s/vhost/%s/tpgt_1' % (TARGET, wwn)
        os.makedirs(tpg)
        write(tpg + '/nexus', 'naa.5001405' + wwn[-9:])
        os.mkdir(tpg + '/lun/lun_0')
        os.symlink(backstore, tpg + '/lun/lun_0/link')
        return backstore

    @staticmethod
    def delete(backstore, wwn):
        tpg = '%s/vhost/%s/tpgt_1' % (TARGET, wwn)
        os.unlink(tpg + '/lun/lun_0/link')
        os.rmdir(tpg + '/lun/lun_0')
        os.rmdir(tpg)
        os.rmdir(os.path.dirname(tpg))
        os.rmdir(backstore)
        os.rmdir(os.path.dirname(backstore))

    @staticmethod
    def list():
        result = []
        vhost = TARGET + '/vhost'
        for wwn in os.listdir(vhost):
            tpg = os.path.join(vhost, wwn, 'tpgt_1')
            if not os.path.isdir(tpg):
                continue
            with open(tpg + '/nexus') as f:
                nexus = f.read().strip()
            lun = tpg + '/lun/lun_0'
            for name in os.listdir(lun):
                if os.path.islink(os.path.join(lun, name)):
                    backstore = os.path.realpath(os.path.join(lun, name))
                    with open(backstore + '/udev_path') as f:
                        result.append((wwn, nexus, backstore, f.read()))
        return result


def timed(func, *args):
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


def run(cmd):
    subprocess.run(cmd, check=True, capture_output=True)


class Bench:

    def __init__(self, reps):
        self.reps = reps
        self.raw = Raw()
        self.executor = vb_executor.VhostExecutor(root_helper=None)
        self.devices = iter('/dev/nullb%d' % i for i in range(100000))
        self.serial = 0
        self.rows = []

    def wwn(self):
        self.serial += 1
        return 'naa.5001405d%08x' % self.serial

    def populate(self, count):
        for _ in range(count):
            self.raw.create('pop%d' % self.serial, next(self.devices),
                            self.wwn())

    def measure(self, level):
        samples = {}

        def add(key, seconds):
            samples.setdefault(key, []).append(seconds)

        for _ in range(self.reps):
            device, wwn = next(self.devices), self.wwn()
            start = time.perf_counter()
            backstore = self.raw.create('bench%d' % self.serial, device, wwn)
            add(('create', 'raw configfs (floor)'),
                time.perf_counter() - start)
            add(('delete', 'raw configfs (floor)'),
                timed(self.raw.delete, backstore, wwn))

            device, wwn = next(self.devices), self.wwn()
            add(('create', 'vhost_brick API'),
                timed(self.executor.create_endpoint, device, wwn))
            add(('get', 'vhost_brick API'),
                timed(self.executor.get_endpoint, wwn))
            add(('delete', 'vhost_brick API'),
                timed(self.executor.delete_endpoint, wwn))

            device, wwn = next(self.devices), self.wwn()
            name = 'rts%d' % self.serial
            add(('create', 'rtstool-style process + save'),
                timed(run, [sys.executable, '-c', RTSTOOL_CREATE, name,
                            device, wwn]))
            add(('delete', 'rtstool-style process + save'),
                timed(run, [sys.executable, '-c', RTSTOOL_DELETE, name,
                            wwn]))
            add(('list', 'raw configfs (floor)'), timed(self.raw.list))
            add(('list', 'vhost_brick API'),
                timed(self.executor.list_endpoints))
        for (operation, approach), values in samples.items():
            self.rows.append((level, operation, approach,
                              statistics.median(values)))

    def report(self):
        floor = {(level, op): seconds for level, op, approach, seconds
                 in self.rows if approach.startswith('raw')}
        print('\n%6s  %-7s %-32s %10s %9s' % ('N', 'op', 'approach',
                                              'median', 'x floor'))
        for level, op, approach, seconds in sorted(self.rows):
            ratio = ('%8.1fx' % (seconds / floor[level, op])
                     if (level, op) in floor else '%9s' % '-')
            print('%6d  %-7s %-32s %9.3fs %s' % (level, op, approach,
                                                 seconds, ratio))
        sys.stdout.flush()


def startup(reps):
    """Helper process start-up against a bare rtslib-fb import."""
    print('\nprocess start-up (median of %d):' % reps)
    for label, cmd in (
            ('python -c pass', [sys.executable, '-c', 'pass']),
            ("python -c 'import rtslib_fb'",
             [sys.executable, '-c', 'import rtslib_fb']),
            ('vhost-brick-helper verify', ['vhost-brick-helper', 'verify'])):
        values = [timed(run, cmd) for _ in range(reps)]
        print('  %-32s %8.3fs' % (label, statistics.median(values)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--levels', default='10,100')
    parser.add_argument('--reps', type=int, default=3)
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(',')]
    count = max(levels) + 4 * args.reps * len(levels) + 10
    run(['modprobe', '-a', 'configfs', 'target_core_iblock', 'vhost_scsi'])
    run(['modprobe', 'null_blk', 'nr_devices=%d' % count])
    os.makedirs(lio.DBROOT, exist_ok=True)
    os.makedirs(TARGET + '/vhost', exist_ok=True)
    print('kernel %s, levels %s, %d reps' % (os.uname().release, levels,
                                             args.reps), flush=True)
    startup(args.reps)
    bench = Bench(args.reps)
    present = 0
    for level in levels:
        bench.populate(level - present)
        present = level
        print('measuring at N=%d ...' % level, flush=True)
        bench.measure(level)
    bench.report()


if __name__ == '__main__':
    main()
