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

"""Endpoints survive a reboot: two boots sharing the state directory.

``tox -e functional`` boots the VM twice with the same shared directory
(VHOST_BRICK_PERSIST_DIR): the first boot (phase ``before``) creates
endpoints on loop devices backed by files in it, and the second (phase
``after``) finds a kernel that forgot them, reattaches the loop devices
and restores. The nested guest of test_hypervisor.HypervisorTestCase,
which runs in the second boot, reads the restored disks: one nested
boot, minutes under TCG, serves both.
"""

import collections
import fcntl
import functools
import json
import os

from vhost_brick import exception
from vhost_brick import executor
from vhost_brick.tests.functional import base


PERSIST = os.environ.get('VHOST_BRICK_PERSIST_DIR')
PHASE = os.environ.get('VHOST_BRICK_REBOOT_PHASE')
CONFIG = '/etc/vhost-brick/vhost-brick.conf'
LOOP_CTL_ADD = 0x4C80

Restored = collections.namedtuple(
    'Restored', 'manifest known_before first again')


class RebootTestCase(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        if not PERSIST:
            self.skipTest('needs VHOST_BRICK_PERSIST_DIR, a directory both '
                          'boots share (tox -e functional sets it)')

    def test_before_reboot_create_endpoints(self):
        if PHASE != 'before':
            self.skipTest('runs in the first of the two boots')
        use_persisted_state()
        self.addCleanup(os.unlink, CONFIG)
        self.leaves_endpoints = True
        manifest = {}
        for name in ('kept-1', 'kept-2', 'gone'):
            backing = os.path.join(PERSIST, name + '.img')
            marker = 'sector0-%s-%s' % (name, os.urandom(6).hex())
            with open(backing, 'wb') as disk:
                disk.write(marker.encode())
                disk.truncate(64 << 20)
            device = base.run('losetup', '--find', '--show', backing)
            # One keeps a serial, a read-only flag and a discard policy
            # of its own; the others keep generated serials.
            ep = self.executor.create_endpoint(
                device, **({'serial': 'volume-kept-2', 'read_only': True,
                            'discard': False}
                           if name == 'kept-2' else {}))
            manifest[ep.wwn] = {'endpoint': ep.to_dict(), 'backing': backing,
                                'marker': marker, 'gone': name == 'gone'}
        with open(manifest_path(), 'w') as f:
            json.dump(manifest, f)

    def test_after_reboot_restore_brings_back_wwn_nexus_and_data(self):
        if PHASE != 'after':
            self.skipTest('runs in the second boot, after the first')
        restored = restore_after_reboot()
        # HypervisorTestCase's guest reads them; its cleanup deletes them.
        self.leaves_endpoints = True
        self.assertEqual(set(), restored.known_before,
                         'this kernel should not know the endpoints yet')
        manifest = restored.manifest
        expected = {wwn: entry['endpoint'] for wwn, entry in manifest.items()
                    if not entry['gone']}
        [gone] = [wwn for wwn, entry in manifest.items() if entry['gone']]
        report = restored.first

        # WWN, nexus, device, unit serial, read-only flag and discard,
        # as made.
        self.assertEqual(expected, {ep.wwn: ep.to_dict()
                                    for ep in report.restored})
        self.assertIn(('volume-kept-2', True, False),
                      [(ep.luns[0].serial, ep.luns[0].read_only,
                        ep.luns[0].discard) for ep in report.restored])
        # FUA as the device honours it, decided again from its cache.
        for ep in report.restored:
            lun = ep.luns[0]
            cache_acknowledges_fua = (
                base.queue_attribute(lun.device_path, 'write_cache') ==
                'write back' and base.queue_limit(lun.device_path, 'fua') == 0)
            self.assertEqual('0' if cache_acknowledges_fua else '1',
                             base.backstore_attribute(lun.backstore,
                                                      'emulate_fua_write'))
        self.assertEqual((), report.already_present)
        [failed] = report.failed
        self.assertEqual(gone, failed.item)
        self.assertIsInstance(failed.error, exception.InvalidDevice)
        self.assertIn('no media', str(failed.error))  # its loop is unbound
        self.assertEqual(set(expected),
                         {ep.wwn for ep in restored.again.already_present})
        self.assertEqual((), restored.again.restored)


def manifest_path():
    """What the first boot made, for the second: the shared directory's."""
    return os.path.join(PERSIST, 'manifest.json')


def use_persisted_state():
    """Point the helper's configuration at the state both boots share."""
    os.makedirs(os.path.dirname(CONFIG), exist_ok=True)
    with open(CONFIG, 'w') as conf:
        conf.write('[vhost_brick]\nstate_path = %s\n'
                   % os.path.join(PERSIST, 'state'))


@functools.cache
def restore_after_reboot():
    """The second boot's restore, once, for every test that looks at it.

    Reattaches the loop devices of the endpoints the first boot kept,
    then restores twice. The restored endpoints stay, and the shared
    state stays configured, for the rest of this boot:
    HypervisorTestCase's guest reads them and its cleanup deletes them.
    """
    use_persisted_state()
    with open(manifest_path()) as f:
        manifest = json.load(f)
    known_before = set(manifest) & base.vhost_targets()
    for entry in manifest.values():
        if not entry['gone']:
            attach_loop(entry['endpoint']['luns'][0]['device_path'],
                        entry['backing'])
    restorer = executor.VhostExecutor(root_helper=None)
    first = restorer.restore()
    return Restored(manifest, known_before, first, restorer.restore())


def attach_loop(device, backing):
    """losetup the file at the same /dev/loopN as before the reboot."""
    number = int(device[len('/dev/loop'):])
    if not os.path.exists(device):
        fd = os.open('/dev/loop-control', os.O_RDWR)
        try:
            fcntl.ioctl(fd, LOOP_CTL_ADD, number)
        finally:
            os.close(fd)
    base.run('losetup', device, backing)
