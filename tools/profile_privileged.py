#!/usr/bin/env python3
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

"""Where a privileged create and delete spend their time, with N present.

As root where LIO may be changed, e.g. in the throw-away VM, with
rtslib-fb importable (the benchmark's venv has it)::

    python3 tools/vmrun.py --mem 2G \\
        "/var/cache/vhost-brick-vm/bench-venv/bin/python \\
         tools/profile_privileged.py --present 1000"

Makes N endpoints on null_blk devices (one batch call per 200), then
times --calls creates and deletes of one more endpoint each through
:mod:`vhost_brick.privileged.operations`, in this process (what the
privsep daemon runs, without its socket), prints their medians, and
profiles as many again with cProfile: the functions by cumulative and by
own time.
"""

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from vhost_brick.privileged import operations  # noqa: E402

BATCH = 200


def wwn(prefix, index):
    return 'naa.5001405%s%08x' % (prefix, index)


def populate(count):
    for start in range(0, count, BATCH):
        report = operations.create_many([
            {'device_path': '/dev/nullb%d' % i, 'wwn': wwn('e', i)}
            for i in range(start, min(count, start + BATCH))])
        if report['failed']:
            sys.exit('populating failed: %s' % report['failed'])


def profile(label, call, calls, lines):
    profiler = cProfile.Profile()
    profiler.enable()
    for index in range(calls):
        call(index)
    profiler.disable()
    for order in ('cumulative', 'tottime'):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(
            lines)
        print('===== %s, %d calls, by %s' % (label, calls, order))
        print(out.getvalue())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--present', type=int, default=10)
    parser.add_argument('--calls', type=int, default=20)
    parser.add_argument('--lines', type=int, default=30)
    args = parser.parse_args()
    subprocess.run(['modprobe', '-a', 'configfs', 'target_core_iblock',
                    'vhost_scsi'], check=True)
    subprocess.run(['modprobe', 'null_blk', 'nr_devices=%d' % (
        args.present + args.calls + 1), 'shared_tags=1'], check=True)
    os.makedirs('/etc/target', exist_ok=True)
    started = time.monotonic()
    populate(args.present)
    print('%d endpoints present, made in %.1f s'
          % (args.present, time.monotonic() - started))

    def create(index):
        operations.create('/dev/nullb%d' % (args.present + index),
                          wwn=wwn('f', index))

    def delete(index):
        operations.delete(wwn('f', index))

    create(args.calls)  # warm: page cache, pyc, TCG's code cache
    delete(args.calls)
    times = {'create': [], 'delete': []}
    for index in range(args.calls):
        for name, call in (('create', create), ('delete', delete)):
            start = time.perf_counter()
            call(index)
            times[name].append(time.perf_counter() - start)
    print('N=%d: median create %.1f ms, delete %.1f ms' % (
        args.present, *(1000 * statistics.median(times[name])
                        for name in ('create', 'delete'))))
    profile('create', create, args.calls, args.lines)
    profile('delete', delete, args.calls, args.lines)


if __name__ == '__main__':
    main()
