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

"""A real hypervisor reads and writes a disk through an endpoint."""

import os

from vhost_brick import exception
from vhost_brick import executor
from vhost_brick.privileged import backstores
from vhost_brick.privileged import configfs
from vhost_brick.tests.functional import base
from vhost_brick.tests.functional import guest
from vhost_brick.tests.functional import test_reboot


# Debian's 6.12 has the switch back to kernel-thread workers (upstream
# 6.16: "vhost: add a module parameter to fork from owner"); N means
# kernel threads.
FORK_FROM_OWNER = '/sys/module/vhost/parameters/fork_from_owner_default'
# null_blk's first device: no discard and no write cache by default.
NULL_BLK = '/dev/nullb0'


def write(path, value):
    with open(path, 'w') as attribute:
        attribute.write(value)


def expected_worker_kind():
    """What this kernel makes a vhost worker: see NestedGuest."""
    major, minor = (int(part) for part in
                    os.uname().release.split('.')[:2])
    if (major, minor) < (6, 4):
        return 'kernel thread'
    try:
        with open(FORK_FROM_OWNER) as switch:
            if switch.read().strip() == 'N':
                return 'kernel thread'
    except FileNotFoundError:
        pass
    return 'qemu thread'


class HypervisorTestCase(base.FunctionalTestCase):
    """A running guest reads and writes its disks through endpoints.

    A nested boot takes minutes under TCG, so the class boots one guest,
    which reads sector 0 of its first disk, writes its marker at sector 16
    and then runs the tests' shell commands; each test checks one thing
    while the guest holds the endpoints, and none ends it. The class
    cleanup lets the guest power off and deletes the endpoints, which
    must then succeed.

    The disks, each a device of a kind the guest must see as it is:
    ``disk``, a loop device on a sparse tmpfs file (discard, a volatile
    write cache, no FUA); ``journal``, the same holding an ext4 made on
    the host; ``sector_4k``, a loop device of 4096-byte sectors;
    ``thin``, a thin LV in a thin pool (Cinder's LVM default);
    ``no_discard``, a null_blk device (no discard, no write cache);
    ``hidden``, a loop device exported with ``discard=False``; and
    ``read_only``, a loop device exported read-only. In the second boot
    of ``tox -e functional`` the guest also gets the endpoints
    test_reboot.py restored (:attr:`restored`), so one nested boot
    serves both.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not base.ENABLED:
            return
        base.load_kernel_modules()
        cls.class_executor = executor.VhostExecutor(root_helper=None)
        # First: restore reattaches the loop devices it needs by number.
        cls.restored = cls.adopt_restored_endpoints()
        cls.sector0 = 'sector0-' + os.urandom(8).hex()
        cls.marker = 'sector16-' + os.urandom(8).hex()
        cls.disk = cls.class_fixture(base.LoopDevice(
            size=64 << 20, data=cls.sector0.encode()))
        cls.journal = cls.class_fixture(base.LoopDevice(size=64 << 20))
        base.run('mkfs.ext4', '-q', cls.journal.path)
        cls.sector_4k = cls.class_fixture(base.LoopDevice(sector_size=4096))
        cls.thin = cls.class_fixture(base.ThinVolume())
        cls.hidden = cls.class_fixture(base.LoopDevice())
        cls.read_only_sector0 = 'read-only-' + os.urandom(8).hex()
        cls.read_only = cls.class_fixture(base.LoopDevice(
            data=cls.read_only_sector0.encode()))
        base.run('modprobe', 'null_blk', 'nr_devices=1', 'gb=1')
        cls.addClassCleanup(base.run, 'rmmod', 'null_blk')
        cls.endpoints = {
            name: cls.class_create(path, **kwargs) for name, path, kwargs in (
                ('disk', cls.disk.path, {}),
                ('journal', cls.journal.path, {}),
                ('sector_4k', cls.sector_4k.path, {}),
                ('thin', cls.thin.path, {}),
                ('no_discard', NULL_BLK, {}),
                ('hidden', cls.hidden.path, {'discard': False}),
                ('read_only', cls.read_only.path, {'read_only': True}))}
        cls.endpoint = cls.endpoints['disk']
        cls.more_endpoints = [ep for name, ep in cls.endpoints.items()
                              if name != 'disk'] + cls.restored
        cls.guest = cls.nested_guest(migratable=True)
        cls.guest.start()
        cls.addClassCleanup(cls.power_off_guest)
        cls.guest.expect('written')
        cls.disks_at_boot = cls.look()

    @classmethod
    def nested_guest(cls, **kwargs):
        """A QEMU of the class's guest, its disks and its marker.

        Migratable: a test moves the guest to a second QEMU (see
        :meth:`test_the_guest_migrates_with_every_acknowledged_write`).
        """
        return guest.NestedGuest(cls.endpoint, cls.marker,
                                 more_endpoints=cls.more_endpoints, **kwargs)

    @classmethod
    def class_create(cls, device_path, **kwargs):
        created = cls.class_executor.create_endpoint(device_path, **kwargs)
        cls.addClassCleanup(cls.delete_endpoint, created.wwn)
        return created

    @classmethod
    def adopt_restored_endpoints(cls):
        """The endpoints test_reboot.py restored in this boot, if any.

        The class cleanup deletes them (and every endpoint of the first
        boot's manifest, restored or not) after the guest powered off.
        """
        if test_reboot.PHASE != 'after':
            return []
        restored = test_reboot.restore_after_reboot()
        for wwn, entry in restored.manifest.items():
            if not entry['gone']:
                cls.addClassCleanup(
                    base.run, 'losetup', '--detach',
                    entry['endpoint']['luns'][0]['device_path'])
            cls.addClassCleanup(cls.delete_endpoint, wwn)
        return list(restored.first.restored)

    @classmethod
    def power_off_guest(cls):
        cls.guest.release()
        status = cls.guest.stop()
        if status:
            raise AssertionError('nested guest exited %d' % status)

    @classmethod
    def delete_endpoint(cls, wwn):
        cls.class_executor.delete_endpoint(wwn)
        if wwn in base.vhost_targets():
            raise AssertionError('%s is still in configfs after its delete'
                                 % wwn)

    def guest_run(self, command):
        """Run a shell command line in the guest; fail unless it exits 0."""
        status, lines = self.guest.run(command)
        self.assertEqual(0, status, lines)
        return lines

    @classmethod
    def look(cls):
        """What the guest sees of each disk, by its unit serial.

        A command in the nested guest, which takes seconds under TCG: the
        tests of what does not change read :attr:`disks_at_boot`.
        """
        status, lines = cls.guest.run(
            # Unquoted: each value one word, on one line.
            'for b in /sys/block/sd*; do echo disk ${b##*/}'
            ' $(tail -c +5 $b/device/vpd_pg80 | tr -d \'\\000\')'
            ' $(cat $b/device/wwid $b/queue/logical_block_size'
            ' $b/queue/physical_block_size $b/queue/rotational'
            ' $b/queue/discard_max_bytes $b/queue/fua $b/size)'
            ' $(tr \' \' _ < $b/queue/write_cache); done')
        if status:
            raise AssertionError('the guest could not list its disks: %s'
                                 % lines)
        seen = {}
        for line in lines:
            fields = line.split()
            if fields[:1] != ['disk']:
                continue  # a kernel message
            (name, serial, wwid, logical, physical, rotational, discard,
             fua, sectors, write_cache) = fields[1:]
            seen[serial] = {
                'name': name, 'wwid': wwid, 'logical_block_size': logical,
                'physical_block_size': physical, 'rotational': rotational,
                'discard': int(discard) > 0, 'fua': fua,
                'size': int(sectors) * 512,
                'write_cache': write_cache.replace('_', ' ')}
        return seen

    def seen(self, disks=None):
        """What the guest sees of each endpoint's disk, by endpoint name.

        :param disks: a :meth:`look` of before; None looks now
        """
        disks = disks or self.look()
        return {name: disks[ep.luns[0].serial]
                for name, ep in self.endpoints.items()}

    def test_the_guest_sees_every_disk(self):
        self.assertEqual(
            sorted(ep.luns[0].serial for ep in
                   list(self.endpoints.values()) + self.restored),
            sorted(self.disks_at_boot))

    def test_the_guest_reads_restored_disks_as_before_the_reboot(self):
        if test_reboot.PHASE != 'after':
            self.skipTest('runs in the second boot of tox -e functional, '
                          'after test_reboot.py restored its endpoints')
        manifest = test_reboot.restore_after_reboot().manifest
        self.assertEqual(2, len(self.restored))  # kept-1 and kept-2
        for ep in self.restored:
            sd = self.disks_at_boot[ep.luns[0].serial]['name']
            self.assertEqual(
                [manifest[ep.wwn]['marker']],
                self.guest_run("dd if=/dev/%s bs=512 count=1 2>/dev/null | "
                               "tr -d '\\000'; echo" % sd), ep.wwn)

    def test_the_guest_sees_each_devices_block_sizes_and_rotation(self):
        seen = self.seen(self.disks_at_boot)
        keys = ('logical_block_size', 'physical_block_size', 'rotational')
        for name, ep in self.endpoints.items():
            device = ep.luns[0].device_path
            self.assertEqual(
                {key: base.queue_attribute(device, key) for key in keys},
                {key: seen[name][key] for key in keys}, name)
        self.assertEqual('4096', seen['sector_4k']['logical_block_size'])

    def test_the_guest_sees_each_devices_write_cache_mode(self):
        seen = self.seen(self.disks_at_boot)
        for name, ep in self.endpoints.items():
            if name != 'read_only':
                self.assertEqual(base.queue_attribute(
                    ep.luns[0].device_path, 'write_cache'),
                    seen[name]['write_cache'], name)
        self.assertEqual('write through', seen['no_discard']['write_cache'])
        # Linux's sd allows no cache flush to a write-protected disk.
        self.assertEqual('write back', base.queue_attribute(
            self.read_only.path, 'write_cache'))
        self.assertEqual('write through', seen['read_only']['write_cache'])

    def test_the_guest_has_discard_exactly_where_the_device_has_it(self):
        seen = self.seen(self.disks_at_boot)
        for name in ('disk', 'journal', 'sector_4k', 'thin', 'no_discard'):
            device = self.endpoints[name].luns[0].device_path
            has_discard = base.queue_limit(device, 'discard_max_bytes') > 0
            self.assertEqual(has_discard, self.endpoints[name].luns[0].discard,
                             name)
            self.assertEqual(has_discard, seen[name]['discard'], name)
        self.assertTrue(seen['disk']['discard'])
        self.assertTrue(seen['thin']['discard'])
        self.assertFalse(seen['no_discard']['discard'])

    def test_a_hidden_discard_is_not_offered_and_fails_in_the_guest(self):
        self.assertGreater(base.queue_limit(self.hidden.path,
                                            'discard_max_bytes'), 0)
        hidden = self.seen(self.disks_at_boot)['hidden']
        self.assertFalse(hidden['discard'])
        status, _lines = self.guest.run('blkdiscard /dev/%s' % hidden['name'])
        self.assertNotEqual(0, status)

    def test_a_guest_discard_frees_the_space_in_the_backing_file(self):
        sd = self.seen(self.disks_at_boot)['disk']['name']
        # 8 MiB at 16 MiB, clear of the sectors the guest's init used.
        self.guest_run('dd if=/dev/zero of=/dev/%s bs=1M seek=16 count=8 '
                       'conv=fsync 2>&1' % sd)
        written = os.stat(self.disk.backing_file).st_blocks * 512
        self.assertGreaterEqual(written, 8 << 20)
        self.guest_run('blkdiscard -o %d -l %d /dev/%s'
                       % (16 << 20, 8 << 20, sd))
        freed = written - os.stat(self.disk.backing_file).st_blocks * 512
        self.assertGreaterEqual(freed, 8 << 20)

    def test_a_guest_discard_frees_the_space_in_the_thin_pool(self):
        sd = self.seen(self.disks_at_boot)['thin']['name']
        self.guest_run('dd if=/dev/zero of=/dev/%s bs=1M count=16 '
                       'conv=fsync 2>&1' % sd)
        # 16 MiB of the 64 MiB pool.
        written = self.thin.data_percent()
        self.assertGreaterEqual(written, 24.0)
        self.guest_run('blkdiscard /dev/%s' % sd)
        left = self.thin.data_percent()
        print('thin pool data: %.2f %% written, %.2f %% after the discard'
              % (written, left))
        self.assertLess(left, 1.0)

    def test_the_guest_reads_a_read_only_disk_it_sees_write_protected(self):
        read_only = self.seen(self.disks_at_boot)['read_only']
        self.assertEqual(
            [self.read_only_sector0, '1'],
            self.guest_run("dd if=/dev/%(sd)s bs=512 count=1 2>/dev/null | "
                           "tr -d '\\000'; echo; cat /sys/block/%(sd)s/ro"
                           % {'sd': read_only['name']}))

    def test_the_guest_cannot_write_a_read_only_disk(self):
        status, _lines = self.guest.run(
            'printf must-not-land | dd of=/dev/%s bs=512 seek=16 '
            'conv=sync,fsync'
            % self.seen(self.disks_at_boot)['read_only']['name'])
        self.assertNotEqual(0, status)
        with open(self.read_only.backing_file, 'rb') as backing:
            backing.seek(16 * 512)
            self.assertEqual(bytes(512), backing.read(512))

    def test_the_guest_is_not_told_fua_the_cache_would_acknowledge(self):
        seen = self.seen(self.disks_at_boot)
        for name in ('disk', 'journal', 'sector_4k', 'hidden'):
            device = self.endpoints[name].luns[0].device_path
            self.assertEqual(0, base.queue_limit(device, 'fua'), name)
            self.assertEqual('write back', seen[name]['write_cache'], name)
            self.assertEqual('0', seen[name]['fua'], name)

    def test_the_guest_keeps_fua_where_the_device_takes_it(self):
        # dm-thin reports FUA over a loop device; the block layer below
        # emulates it with a flush, so REQ_FUA passed on is honoured.
        device = self.endpoints['thin'].luns[0].device_path
        self.assertEqual('write back', base.queue_attribute(device,
                                                            'write_cache'))
        self.assertEqual(1, base.queue_limit(device, 'fua'))
        self.assertEqual('1', self.seen(self.disks_at_boot)['thin']['fua'])

    def flushes_per_fsync(self, sd, fsyncs=20):
        """Flushes the journal disk's device got per fsync in the guest.

        ``/sys/block/<dev>/stat`` field 16 counts the flushes a device
        completed.
        """
        stat = '/sys/class/block/%s/stat' % os.path.basename(
            self.journal.path)

        def flushes():
            with open(stat) as counters:
                return int(counters.read().split()[15])
        before = flushes()
        self.guest_run('for i in $(seq %d); do echo $i | dd of=/mnt/log '
                       'oflag=append conv=notrunc,fsync 2>/dev/null; done'
                       % fsyncs)
        return (flushes() - before) / fsyncs

    def test_journal_commits_reach_the_device_as_flushes(self):
        sd = self.seen(self.disks_at_boot)['journal']['name']
        attribute = os.path.join(
            configfs.CORE, 'iblock_%d' % backstores.HBA_INDEX,
            self.endpoints['journal'].luns[0].backstore, 'attrib',
            'emulate_fua_write')
        self.guest_run('mount -t ext4 /dev/%s /mnt' % sd)
        self.addCleanup(self.guest_run, 'umount /mnt')
        ours = self.flushes_per_fsync(sd)
        # The kernel's default, for comparison: the guest told FUA works.
        write(attribute, '1')
        self.addCleanup(self.guest_run,
                        'echo 1 > /sys/block/%s/device/rescan' % sd)
        self.addCleanup(write, attribute, '0')
        self.guest_run('echo 1 > /sys/block/%s/device/rescan' % sd)
        self.assertEqual('1', self.seen()['journal']['fua'])
        kernel_default = self.flushes_per_fsync(sd)
        # Each commit is a pre-flush and a FUA write. With FUA emulated by
        # the guest, the FUA write becomes a write and a flush; passed to
        # iblock, it is a plain write into the loop device's cache.
        print('flushes per fsync: %.2f, with the kernel default %.2f'
              % (ours, kernel_default))
        self.assertGreaterEqual(ours, 1.8)
        self.assertLessEqual(kernel_default, 1.3)

    def test_the_guest_sees_the_serial_and_the_wwid_it_derives(self):
        disks = self.disks_at_boot
        for name, ep in self.endpoints.items():
            serial = ep.luns[0].serial
            digits = ''.join(c for c in serial.lower()
                             if c in '0123456789abcdef')[:25]
            self.assertEqual('naa.6001405' + digits.ljust(25, '0'),
                             disks[serial]['wwid'], name)

    def test_statistics_count_the_guests_reads_and_writes(self):
        wwn = self.endpoint.wwn
        sd = self.seen(self.disks_at_boot)['disk']['name']
        [before] = self.executor.get_endpoint_stats(wwn)['luns']
        # O_DIRECT, so that the guest's page cache answers nothing.
        self.guest_run('dd if=/dev/zero of=/dev/%s bs=1M seek=32 count=4 '
                       'oflag=direct 2>&1' % sd)
        self.guest_run('dd if=/dev/%s of=/dev/null bs=1M skip=32 count=2 '
                       'iflag=direct 2>&1' % sd)
        [after] = self.executor.get_endpoint_stats(wwn)['luns']
        self.assertGreaterEqual(after['write_mbytes'],
                                before['write_mbytes'] + 4)
        self.assertGreaterEqual(after['read_mbytes'],
                                before['read_mbytes'] + 2)
        self.assertGreaterEqual(after['commands'], before['commands'] + 6)
        self.assertIn({'wwn': wwn, 'luns': [after]},
                      self.executor.list_endpoint_stats())

    def test_an_online_extend_is_seen_after_a_rescan(self):
        hidden = self.seen(self.disks_at_boot)['hidden']
        self.hidden.resize(hidden['size'] * 2)
        self.guest_run('echo 1 > /sys/block/%s/device/rescan'
                       % hidden['name'])
        self.assertEqual(hidden['size'] * 2, self.seen()['hidden']['size'])

    def test_the_guest_sees_the_disk_lio_exports(self):
        self.assertEqual('disk=LIO-ORG IBLOCK',
                         self.guest.printed('disk=').strip())

    def test_the_guest_reads_the_backing_device(self):
        self.assertEqual('sector0=' + self.sector0,
                         self.guest.printed('sector0='))

    def test_the_guest_write_reaches_the_backing_device(self):
        with open(self.disk.backing_file, 'rb') as backing:
            backing.seek(16 * 512)
            self.assertEqual(self.marker, backing.read(512).rstrip(b'\0')
                             .decode(errors='replace'))

    def test_the_kernel_serves_the_guest_disks(self):
        workers = self.guest.vhost_workers()
        self.assertEqual(len(self.endpoints) + len(self.restored),
                         len(workers))
        self.assertEqual({expected_worker_kind()},
                         {kind for kind, _task in workers})

    def test_delete_is_refused_while_the_guest_holds_the_endpoint(self):
        before = base.configfs_snapshot()
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, self.endpoint.wwn)
        self.assertEqual(before, base.configfs_snapshot())
        self.assertEqual(self.endpoint,
                         self.executor.get_endpoint(self.endpoint.wwn))

    def test_the_guest_migrates_with_every_acknowledged_write(self):
        # Live migration to a second QEMU of the same command line, on
        # the same endpoints (as a host exporting the same shared devices
        # under the same WWNs and serials would present them): the guest
        # writes numbered blocks, each with O_DIRECT and a flush, and
        # prints each number once acknowledged. The tests after this one
        # look at the guest on the destination.
        source = self.guest
        self.guest_run(guest.NUMBERED_WRITER + ' & true')
        source.expect('acked 4', timeout=120)
        uri = 'unix:/run/vhost-brick-migration-%s' % os.urandom(4).hex()
        destination = self.nested_guest(migratable=True, incoming=uri)
        destination.start()
        self.addCleanup(self.kill_unless_the_guest, destination)
        self.assertIn('inmigrate', destination.monitor('info status'))

        info = source.migrate(uri)
        self.assertEqual('completed', info['migration status'], info)
        type(self).guest = destination
        # The guest's serial port is the destination's now; its console
        # so far, the boot included, is the source's.
        on_source = list(source.console.output)
        destination.console.output[:0] = on_source
        source.monitor('quit')
        self.assertEqual(0, source.stop())
        self.assertRaises(exception.EndpointInUse,  # the destination's now
                          self.executor.delete_endpoint, self.endpoint.wwn)

        last_on_source = max(guest.acknowledged(on_source))
        destination.expect('acked %d' % (last_on_source + 3), timeout=120)
        self.guest_run('touch /stop; wait; rm /stop')
        on_destination = guest.acknowledged(
            destination.console.output[len(on_source):])
        print('migration: %s in all, %s downtime' % (
            info.get('total time'), info.get('downtime')))
        self.assertEqual([], guest.failed_writes(destination.console.output))
        # The writes went on where they stopped (a console line cut in
        # two by the switchover may be lost, not its write).
        self.assertIn(on_destination[0] - last_on_source, (1, 2))
        written = range(1, max(on_destination) + 1)
        self.assertEqual(['seq %08d' % n for n in written],
                         [base.read_sector(self.disk.path,
                                           guest.NUMBERED_BLOCK + n)
                          for n in written])

    def kill_unless_the_guest(self, qemu):
        """Kill a migration's destination the guest did not move to."""
        if qemu is not self.guest:
            qemu.kill()

    def test_a_paused_guest_keeps_its_endpoint(self):
        # QEMU's "stop" (a pause, a snapshot, the end of a migration)
        # releases the endpoint in the kernel; deleting it then would
        # kill the guest at "cont".
        self.guest.monitor('stop')
        self.addCleanup(self.guest.monitor, 'cont')
        self.assertIn('paused', self.guest.monitor('info status'))
        before = base.configfs_snapshot()
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, self.endpoint.wwn)
        self.assertEqual(before, base.configfs_snapshot())


class NotYetBootedGuestTestCase(base.FunctionalTestCase):
    """QEMU started, its guest not running: the endpoint is not claimed."""

    def test_delete_is_refused_until_qemu_exits(self):
        disk = self.make_disk()
        endpoint = self.executor.create_endpoint(disk)
        self.addCleanup(self.executor.delete_endpoint, endpoint.wwn)
        qemu = guest.NestedGuest(endpoint, 'never-booted', paused=True)
        qemu.start()
        self.addCleanup(qemu.stop)
        self.assertIn('prelaunch', qemu.monitor('info status'))
        before = base.configfs_snapshot()
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, endpoint.wwn)
        self.assertEqual(before, base.configfs_snapshot())
        qemu.monitor('quit')
        self.assertEqual(0, qemu.stop())
        self.executor.delete_endpoint(endpoint.wwn)
        self.assertNotIn(endpoint.wwn, base.vhost_targets())

    def migrate_never_booted(self, migratable):
        """What QEMU answers to a migration of a guest on an endpoint."""
        endpoint = self.create(self.make_disk())
        qemu = guest.NestedGuest(endpoint, 'never-booted', paused=True,
                                 migratable=migratable)
        qemu.start()
        self.addCleanup(qemu.stop)
        answer = qemu.monitor('migrate -d unix:/run/vhost-brick-nowhere-%s'
                              % os.urandom(4).hex())
        self.assertIn('prelaunch', qemu.monitor('info status'))
        qemu.monitor('quit')
        return answer

    def test_qemu_refuses_to_migrate_a_device_not_migratable(self):
        self.assertIn('vhost-scsi does not support migration',
                      self.migrate_never_booted(migratable=None))

    def test_a_migratable_device_does_not_block_the_migration(self):
        # It fails for want of a destination, not for the device.
        self.assertNotIn('vhost-scsi does not support migration',
                         self.migrate_never_booted(migratable=True))
