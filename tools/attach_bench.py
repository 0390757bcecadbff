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

"""Attach Cinder LVM volumes for a hypervisor two ways, and time it.

Usage, as root in the throw-away VM (tools/benchmark.sh runs it there,
before tools/benchmark.py), with Cinder, os-brick and vhost_brick
importable::

    python3 tools/attach_bench.py [--sequential 50] [--concurrent 8]

From "the volume exists" to "a hypervisor can open it" (attach), and back
(detach), on one host, with Cinder's and os-brick's own classes:

* ``vhost``: Cinder's LVM driver with vhost_brick's target
  (``create_export``, ``initialize_connection``), then the os-brick
  connector's ``connect_volume``, until the endpoint can be claimed
  through ``/dev/vhost-scsi`` as QEMU claims it.
  Detach: ``disconnect_volume``, ``terminate_connection``,
  ``remove_export``;
* ``iscsi``: Cinder's LVM driver with ``target_helper = lioadm`` (its
  ``LioAdm`` target, ``cinder-rtstool`` through ``cinder-rootwrap``), then
  os-brick's ``ISCSIConnector.connect_volume`` (``iscsiadm`` login through
  ``iscsid``) until the SCSI disk is there and its first sector reads.
  Detach: the same three calls.

The one stand-in: Cinder's database, which the iSCSI target reads for a
volume's CHAP credentials at each export (:class:`VolumeRecords`).

One volume, ``--sequential`` volumes one after another, ``--concurrent``
at once (threads, as a compute host starting many instances); medians
per volume (and the wall time of the concurrent round), and iSCSI's
ratio to vhost.
"""

import argparse
import concurrent.futures
import contextlib
import os
import statistics
import sys
import time

import fixtures
import os_brick
from oslo_config import cfg
from oslo_config import fixture as config_fixture

TOOLS = os.path.dirname(os.path.abspath(__file__))
# The checkout's vhost_brick: its test fixtures read files of the tree
# (etc/), which an installed copy does not have.
sys.path[:0] = [TOOLS, os.path.dirname(TOOLS)]
import iscsi_host  # noqa: E402

from vhost_brick.integrations import connector as vhost_connector  # noqa
from vhost_brick.privileged import vhostdev  # noqa
from vhost_brick.tests.functional.consumers import cinder_host  # noqa

ISCSI_BACKEND = 'lvm-iscsi'
WAYS = ('vhost', 'iscsi')
ATTACH_STEPS = ('create_export', 'initialize_connection', 'connect_volume',
                'open')
SEQUENTIAL = 'one after another'
DETACH_STEPS = ('disconnect_volume', 'terminate_connection', 'remove_export')


class Way:
    """One way to attach: a Cinder driver and the connector it pairs with."""

    def __init__(self, driver, brick, properties, opened):
        self.driver = driver
        self.brick = brick
        self.properties = properties
        self.opened = opened

    def attach(self, context, volume, steps):
        """Export and connect; the connection and device info.

        steps gets each step's seconds, by name.
        """
        with step(steps, 'create_export'):
            volume.update(self.driver.create_export(
                context, volume, self.properties) or {})
        with step(steps, 'initialize_connection'):
            info = self.driver.initialize_connection(volume,
                                                     self.properties)
        with step(steps, 'connect_volume'):
            device = self.brick.connect_volume(info['data'])
        with step(steps, 'open'):
            self.opened(device)
        return info, device

    def detach(self, context, volume, info, device, steps):
        with step(steps, 'disconnect_volume'):
            self.brick.disconnect_volume(info['data'], device)
        with step(steps, 'terminate_connection'):
            self.driver.terminate_connection(volume, self.properties)
        with step(steps, 'remove_export'):
            self.driver.remove_export(context, volume)


@contextlib.contextmanager
def step(steps, name):
    started = time.monotonic()
    yield
    steps[name] = time.monotonic() - started


def claim_endpoint(device):
    """What QEMU does first with an endpoint: claim it, here and let go."""
    with vhostdev.claim(device['vhost']['wwn']):
        pass


def read_first_sector(device):
    """What QEMU does first with a disk: open it and read."""
    fd = os.open(device['path'], os.O_RDONLY)
    try:
        os.read(fd, 512)
    finally:
        os.close(fd)


def iscsi_driver(host, conf, records):
    """Cinder's stock LVM driver with the LIO iSCSI target on 127.0.0.1."""
    from cinder import context
    from cinder.volume import configuration
    from cinder.volume import driver as volume_driver
    from cinder.volume.drivers import lvm

    for opts in (volume_driver.volume_opts, volume_driver.iser_opts,
                 lvm.volume_opts):
        conf.register_opts(opts, group=ISCSI_BACKEND)
    conf.config(group=ISCSI_BACKEND, volume_group=host.volume_group,
                lvm_type='default', volume_clear='none',
                lvm_conf_file=cinder_host.LVM_CONF, target_helper='lioadm',
                target_protocol='iscsi', target_ip_address='127.0.0.1')
    driver = lvm.LVMVolumeDriver(
        configuration=configuration.Configuration(
            lvm.volume_opts, config_group=ISCSI_BACKEND),
        host='%s@%s' % (cfg.CONF.host, ISCSI_BACKEND))
    driver.do_setup(context.get_admin_context())
    driver.check_for_setup_error()
    driver.target_driver.db = records
    return driver


class VolumeRecords(dict):
    """Cinder's database, as far as its iSCSI target reads it.

    The target looks a volume up for its CHAP credentials at each
    export; the volumes here live in this dict, by id, not in a database
    (the one stand-in of the bench; one query in a real deployment).
    """

    def volume_get(self, context, volume_id):
        volume = self[volume_id]
        return {'provider_auth': volume.get('provider_auth', None)}


def make_ways(host, conf, records):
    from os_brick.initiator import connector as brick_connector

    properties = brick_connector.get_connector_properties(
        cinder_host.ROOT_HELPER, '127.0.0.1', False, False)
    properties['initiator'] = iscsi_host.initiator_name()
    vhost_driver = host.make_driver(conf)
    vhost_properties = vhost_connector.get_connector_properties(
        cinder_host.ROOT_HELPER, '127.0.0.1', False, False,
        host=vhost_driver.target_driver.host)
    return {
        'vhost': Way(vhost_driver, vhost_connector.factory(
            'LOCAL', cinder_host.ROOT_HELPER), vhost_properties,
            claim_endpoint),
        'iscsi': Way(iscsi_driver(host, conf, records),
                     brick_connector.InitiatorConnector.factory(
                         'ISCSI', cinder_host.ROOT_HELPER),
                     properties, read_first_sector),
    }


def attach_and_detach(way, context, volume):
    """(attach seconds, detach seconds, each step's seconds) of a volume."""
    steps = {}
    info, device = way.attach(context, volume, steps)
    way.detach(context, volume, info, device, steps)
    attach_time = sum(steps[name] for name in ATTACH_STEPS)
    return attach_time, sum(steps.values()) - attach_time, steps


def run_round(way, context, volumes, at_once):
    """Per-volume times and the round's wall time."""
    started = time.monotonic()
    if at_once:
        with concurrent.futures.ThreadPoolExecutor(len(volumes)) as pool:
            times = list(pool.map(
                lambda volume: attach_and_detach(way, context, volume),
                volumes))
    else:
        times = [attach_and_detach(way, context, volume)
                 for volume in volumes]
    return times, time.monotonic() - started


def report(rounds):
    print('%-22s %-6s %10s %10s %10s' % ('round', 'way', 'attach',
                                         'detach', 'wall'))
    for round_name, by_way in rounds.items():
        for way, (times, wall) in by_way.items():
            print('%-22s %-6s %9.2fs %9.2fs %9.1fs' % (
                round_name, way, statistics.median(t[0] for t in times),
                statistics.median(t[1] for t in times), wall))
    print('\niSCSI / vhost (medians per volume; wall time of the round):')
    for round_name, by_way in rounds.items():
        ratios = []
        for index, label in ((0, 'attach'), (1, 'detach')):
            vhost = statistics.median(t[index] for t in by_way['vhost'][0])
            iscsi = statistics.median(t[index] for t in by_way['iscsi'][0])
            ratios.append('%s %.1fx' % (label, iscsi / vhost))
        ratios.append('wall %.1fx' % (by_way['iscsi'][1] /
                                      by_way['vhost'][1]))
        print('  %-22s %s' % (round_name, ', '.join(ratios)))
    print('\nWhere the time goes, one after another (median seconds per '
          'volume):')
    by_way = rounds[SEQUENTIAL]
    print('  %-22s %10s %10s' % ('step', 'vhost', 'iscsi'))
    for name in ATTACH_STEPS + DETACH_STEPS:
        print('  %-22s %9.3fs %9.3fs' % (name, *(
            statistics.median(t[2][name] for t in by_way[way][0])
            for way in WAYS)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sequential', type=int, default=50)
    parser.add_argument('--concurrent', type=int, default=8)
    args = parser.parse_args(argv)
    # Cinder registers command-line options (its logging's) when its
    # config module is imported: before the parse, as in cinder-volume.
    from cinder.common import config  # noqa: F401
    from cinder import context as cinder_context

    started = time.monotonic()
    print('Attach: 1 volume; %d volumes one after another; %d at once'
          % (args.sequential, args.concurrent), flush=True)

    with fixtures.Fixture() as cleanups, iscsi_host.iscsid():
        count = max(1, args.sequential, args.concurrent)
        # 1 GiB volumes, thick, on a sparse loop device.
        host = cleanups.useFixture(cinder_host.CinderVolumeHost(
            size=(count + 1) << 30))
        # Cinder's filters admit os-brick's privsep daemon only with a
        # configuration file under /etc on its command line, which
        # oslo.privsep passes on from the service's own: as cinder-volume
        # has one, so does this process.
        config_file = os.path.join(cinder_host.ETC, 'cinder.conf')
        open(config_file, 'w').close()
        cfg.CONF(['--config-file', config_file], project='cinder')
        conf = cleanups.useFixture(config_fixture.Config(cfg.CONF))
        # LioAdm and os-brick's connect serialize with external locks.
        conf.config(group='oslo_concurrency', lock_path=cleanups.useFixture(
            fixtures.TempDir()).path)
        os_brick.setup(cfg.CONF)  # as cinder-volume, once configured
        records = VolumeRecords()
        ways = make_ways(host, conf, records)
        context = cinder_context.get_admin_context()
        volumes = [host.new_volume(context) for _ in range(count)]
        records.update((volume.id, volume) for volume in volumes)
        for volume in volumes:
            ways['vhost'].driver.create_volume(volume)
            cleanups.addCleanup(ways['vhost'].driver.delete_volume, volume)
        rounds = {}
        for round_name, chosen, at_once in (
                ('1 volume', volumes[:1], False),
                (SEQUENTIAL, volumes[:args.sequential], False),
                ('%d at once' % args.concurrent,
                 volumes[:args.concurrent], True)):
            rounds[round_name] = {}
            for way in WAYS:
                rounds[round_name][way] = run_round(
                    ways[way], context, chosen, at_once)
                print('%s, %s: done' % (round_name, way), flush=True)
        report(rounds)
    print('\nattach rows: %.1f minutes' % ((time.monotonic() - started) / 60),
          flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
