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

"""The public API against real configfs, block devices and vhost_scsi."""

import contextlib
from importlib import metadata
import os
import shutil
import subprocess
import sys
from unittest import mock

from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick import privileged
from vhost_brick.privileged import backstores
from vhost_brick.privileged import devices
from vhost_brick.privileged import lio
from vhost_brick.privileged import rootconf
from vhost_brick.privileged import state
from vhost_brick.tests.functional import base


def read_attr(*parts):
    with open(os.path.join(*parts)) as attr:
        return attr.read().strip()


class CreateTestCase(base.FunctionalTestCase):

    def test_create_with_generated_wwn_and_nexus(self):
        disk = self.make_disk()
        ep = self.create(disk)
        self.assertRegex(ep.wwn, r'^naa\.5001405[0-9a-f]{9}$')
        self.assertRegex(ep.nexus, r'^naa\.5001405[0-9a-f]{9}$')
        self.assertEqual(1, ep.tpgt)
        self.assertRegex(ep.luns[0].serial, r'^[0-9a-f-]{36}$')
        self.assertEqual((endpoint.VhostLun(
            lun=0, device_path=disk, backstore=backstores.name_of(ep.wwn),
            serial=ep.luns[0].serial, read_only=False,
            discard=base.queue_limit(disk, 'discard_max_bytes') > 0),),
            ep.luns)

    def test_configfs_holds_exactly_what_create_reported(self):
        disk = self.make_disk()
        ep = self.create(disk)
        tpg = os.path.join(base.VHOST, ep.wwn, 'tpgt_1')
        self.assertEqual(ep.nexus, read_attr(tpg, 'nexus'))
        lun = os.path.join(tpg, 'lun', 'lun_0')
        [link] = [os.path.join(lun, name) for name in os.listdir(lun)
                  if os.path.islink(os.path.join(lun, name))]
        backstore = os.path.realpath(link)
        self.assertEqual(os.path.join(base.CORE, 'iblock_%d'
                                      % backstores.HBA_INDEX,
                                      backstores.name_of(ep.wwn)),
                         backstore)
        self.assertEqual(disk, read_attr(backstore, 'udev_path'))
        self.assertEqual('1', read_attr(backstore, 'enable'))

    def test_create_with_given_wwn_and_nexus_in_upper_case(self):
        wwn, nexus = 'naa.5001405ABC000001', 'naa.5001405ABC000002'
        ep = self.create(self.make_disk(), wwn=wwn, nexus=nexus)
        self.assertEqual((wwn.lower(), nexus.lower()), (ep.wwn, ep.nexus))
        self.assertEqual(nexus.lower(),
                         read_attr(base.VHOST, ep.wwn, 'tpgt_1', 'nexus'))

    def test_locally_assigned_wwn_is_kept_as_given(self):
        wwn = 'naa.c0ffee0000000001'
        major, minor = metadata.version('rtslib-fb').split('.')[:2]
        if (int(major), int(minor)) < (2, 2):
            # rtslib-fb 2.1 cannot make it: a typed refusal, no change.
            before = base.configfs_snapshot()
            self.assertRaises(exception.InvalidWWN,
                              self.executor.create_endpoint,
                              self.make_disk(), wwn=wwn)
            self.assertEqual(before, base.configfs_snapshot())
            return
        ep = self.create(self.make_disk(), wwn=wwn)
        self.assertIn(wwn, base.vhost_targets())
        self.assertEqual(wwn, ep.wwn)

    def test_symlinked_device_path_is_recorded_as_given(self):
        # As udev's /dev/disk/by-id links; one in /tmp would be refused.
        disk = self.make_disk()
        links = '/dev/vhost-brick-by-id'
        os.mkdir(links, 0o755)
        self.addCleanup(os.rmdir, links)
        link = os.path.join(links, 'volume-1')
        os.symlink(disk, link)
        self.addCleanup(os.unlink, link)
        ep = self.create(link)
        self.assertEqual(link, ep.luns[0].device_path)

    def test_repeated_create_returns_the_existing_endpoint(self):
        disk = self.make_disk()
        first = self.create(disk, wwn='naa.5001405abc000003')
        before = base.configfs_snapshot()
        again = self.executor.create_endpoint(disk,
                                              wwn='naa.5001405abc000003')
        self.assertEqual(first, again)
        self.assertEqual(before, base.configfs_snapshot())

    def test_several_endpoints_at_once(self):
        created = [self.create(self.make_disk()) for _ in range(4)]
        listed = {ep.wwn: ep for ep in self.executor.list_endpoints()}
        for ep in created:
            self.assertEqual(ep, listed[ep.wwn])
        self.assertEqual(4, len({ep.luns[0].device_path for ep in created}))


class ReadTestCase(base.FunctionalTestCase):

    def test_get_returns_what_create_returned(self):
        ep = self.create(self.make_disk())
        self.assertEqual(ep, self.executor.get_endpoint(ep.wwn))

    def test_list_contains_the_endpoint(self):
        ep = self.create(self.make_disk())
        self.assertIn(ep, self.executor.list_endpoints())

    def test_get_unknown_raises_endpoint_not_found(self):
        self.assertRaises(exception.EndpointNotFound,
                          self.executor.get_endpoint, 'naa.5001405dead00001')


class DeleteTestCase(base.FunctionalTestCase):

    def test_delete_removes_target_and_backstore(self):
        ep = self.executor.create_endpoint(self.make_disk())
        self.executor.delete_endpoint(ep.wwn)
        self.assertNotIn(ep.wwn, base.vhost_targets())
        self.assertNotIn(backstores.name_of(ep.wwn), base.own_backstores())
        self.assertRaises(exception.EndpointNotFound,
                          self.executor.get_endpoint, ep.wwn)

    def test_hba_goes_with_the_last_backstore_in_it(self):
        hba = os.path.join(base.CORE, 'iblock_%d' % backstores.HBA_INDEX)
        first = self.executor.create_endpoint(self.make_disk())
        second = self.executor.create_endpoint(self.make_disk())
        self.executor.delete_endpoint(first.wwn)
        self.assertEqual([backstores.name_of(second.wwn)],
                         [name for name in os.listdir(hba)
                          if os.path.isdir(os.path.join(hba, name))])
        self.executor.delete_endpoint(second.wwn)
        self.assertFalse(os.path.exists(hba))

    def test_backstore_a_foreign_lun_links_survives_delete(self):
        ep = self.executor.create_endpoint(self.make_disk())
        rtslib = lio._rtslib()
        foreign = rtslib.Target(rtslib.FabricModule('loopback'),
                                'naa.5001405f0000f0aa', mode='create')
        self.addCleanup(lambda: foreign.exists and foreign.delete())
        rtslib.LUN(rtslib.TPG(foreign, 1, mode='create'), 0,
                   rtslib.BlockStorageObject(backstores.name_of(ep.wwn),
                                             index=backstores.HBA_INDEX))
        self.executor.delete_endpoint(ep.wwn)
        self.assertNotIn(ep.wwn, base.vhost_targets())
        self.assertIn(backstores.name_of(ep.wwn), base.own_backstores())
        foreign.delete()
        self.assertEqual({'endpoints': [],
                          'backstores': [backstores.name_of(ep.wwn)]},
                         self.executor.cleanup())

    def test_delete_removes_node_acls_another_tool_made(self):
        # vhost_brick makes none; targetcli can, as rtslib-fb does here.
        ep = self.executor.create_endpoint(self.make_disk())
        rtslib = lio._rtslib()
        tpg = rtslib.TPG(rtslib.Target(rtslib.FabricModule('vhost'),
                                       ep.wwn, mode='lookup'), 1)
        acl = rtslib.NodeACL(tpg, 'naa.5001405f0000ac01', mode='create')
        rtslib.MappedLUN(acl, 0, tpg_lun=rtslib.LUN(tpg, 0))
        self.executor.delete_endpoint(ep.wwn)
        self.assertNotIn(ep.wwn, base.vhost_targets())
        self.assertNotIn(backstores.name_of(ep.wwn), base.own_backstores())

    def test_cleanup_removes_a_backstore_in_an_hba_of_its_own(self):
        # Where versions before HBA_INDEX put each backstore.
        name = backstores.name_of('naa.5001405abc0000aa')
        lio._rtslib().BlockStorageObject(name, dev=self.make_disk())
        self.assertEqual({'endpoints': [], 'backstores': [name]},
                         self.executor.cleanup())
        self.assertNotIn(name, base.own_backstores())

    def test_device_is_free_again_after_delete(self):
        disk = self.make_disk()
        ep = self.executor.create_endpoint(disk)
        self.executor.delete_endpoint(ep.wwn)
        self.create(disk)

    def test_delete_unknown_wwn_changes_nothing(self):
        before = base.configfs_snapshot()
        self.assertIsNone(
            self.executor.delete_endpoint('naa.5001405dead00002'))
        self.assertEqual(before, base.configfs_snapshot())


def lio_create(disk, wwn):
    """lio.create as the root side calls it, on an admitted device."""
    return lio.create(devices.admit(disk, rootconf.DEFAULT_ALLOWED_DEVICES),
                      wwn, None, 'serial-1')


class InvalidInputTestCase(base.FunctionalTestCase):
    """Each bad input gets its typed error and changes nothing."""

    def assertRefused(self, error, *args, **kwargs):
        before = base.configfs_snapshot()
        self.assertRaises(error, self.executor.create_endpoint, *args,
                          **kwargs)
        self.assertEqual(before, base.configfs_snapshot())

    def test_character_device(self):
        self.assertRefused(exception.InvalidDevice, '/dev/null')

    def test_regular_file(self):
        self.assertRefused(exception.InvalidDevice, sys.executable)

    def test_directory(self):
        self.assertRefused(exception.InvalidDevice, '/dev')

    def test_missing_path(self):
        self.assertRefused(exception.InvalidDevice, '/dev/no-such-disk')

    def test_wwn_rtslib_would_rewrite(self):
        self.assertRefused(exception.InvalidWWN, self.make_disk(),
                           wwn='naa.6001405bd4e8476d')

    def test_bad_nexus(self):
        self.assertRefused(exception.InvalidNexus, self.make_disk(),
                           nexus='iqn.2003-01.org.example:initiator')

    def test_helper_refuses_a_non_block_device_itself(self):
        before = base.configfs_snapshot()
        result = subprocess.run(['vhost-brick-helper', 'create',
                                 '--device=/dev/zero'],
                                capture_output=True, text=True)
        self.assertEqual(exception.InvalidDevice.helper_exit_code,
                         result.returncode)
        self.assertIn('InvalidDevice', result.stderr)
        self.assertEqual(before, base.configfs_snapshot())


class ConflictTestCase(base.FunctionalTestCase):

    def test_wwn_taken_by_another_device(self):
        ep = self.create(self.make_disk())
        other = self.make_disk()
        before = base.configfs_snapshot()
        err = self.assertRaises(exception.EndpointExists,
                                self.executor.create_endpoint, other,
                                wwn=ep.wwn)
        self.assertIn(other, str(err))
        self.assertEqual(before, base.configfs_snapshot())

    def test_device_already_exported(self):
        disk = self.make_disk()
        ep = self.create(disk)
        before = base.configfs_snapshot()
        err = self.assertRaises(exception.DeviceInUse,
                                self.executor.create_endpoint, disk)
        self.assertIn(backstores.name_of(ep.wwn), str(err))
        self.assertEqual(before, base.configfs_snapshot())

    def test_device_held_exclusively_by_another_process(self):
        disk = self.make_disk()
        holder = subprocess.Popen(
            [sys.executable, '-c',
             'import os, sys; os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL);'
             ' print("held", flush=True); sys.stdin.read()', disk],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(holder.wait)
        self.addCleanup(holder.stdin.close)
        self.assertEqual('held', holder.stdout.readline().strip())
        before = base.configfs_snapshot()
        self.assertRaises(exception.DeviceInUse,
                          self.executor.create_endpoint, disk)
        self.assertEqual(before, base.configfs_snapshot())


class InUseTestCase(base.FunctionalTestCase):
    """A process holding the endpoint through /dev/vhost-scsi, as QEMU."""

    def test_delete_of_held_endpoint_is_refused_and_changes_nothing(self):
        ep = self.create(self.make_disk())
        holder = self.hold_endpoint(ep.wwn)
        self.addCleanup(self.release_endpoint, holder)
        before = base.configfs_snapshot()
        self.assertRaises(exception.EndpointInUse,
                          self.executor.delete_endpoint, ep.wwn)
        self.assertEqual(before, base.configfs_snapshot())
        self.assertEqual(ep, self.executor.get_endpoint(ep.wwn))

    def test_delete_succeeds_once_released(self):
        ep = self.executor.create_endpoint(self.make_disk())
        self.release_endpoint(self.hold_endpoint(ep.wwn))
        self.executor.delete_endpoint(ep.wwn)
        self.assertNotIn(ep.wwn, base.vhost_targets())


class RelabelledTargetTestCase(base.FunctionalTestCase):
    """A target directory left owned by QEMU's user by libvirt's DAC driver.

    The privsep daemon keeps no capabilities, so it cannot remove it.
    """

    QEMU_UID = 64055  # Debian's libvirt-qemu

    def relabel(self, wwn):
        path = os.path.join(base.VHOST, wwn)
        os.chown(path, self.QEMU_UID, self.QEMU_UID)
        self.addCleanup(self.give_back, path)
        return path

    @staticmethod
    def give_back(path):
        with contextlib.suppress(FileNotFoundError):
            os.chown(path, 0, 0)

    def test_delete_is_refused_naming_the_directory_and_changes_nothing(self):
        ep = self.create(self.make_disk())
        path = self.relabel(ep.wwn)
        before = base.configfs_snapshot()
        err = self.assertRaises(exception.EndpointNotOwned,
                                self.executor.delete_endpoint, ep.wwn)
        self.assertEqual((path, self.QEMU_UID),
                         (err.kwargs['path'], err.kwargs['uid']))
        self.assertEqual(before, base.configfs_snapshot())

    def test_delete_succeeds_once_given_back_to_root(self):
        ep = self.executor.create_endpoint(self.make_disk())
        path = self.relabel(ep.wwn)
        self.assertRaises(exception.EndpointNotOwned,
                          self.executor.delete_endpoint, ep.wwn)
        self.give_back(path)
        self.executor.delete_endpoint(ep.wwn)
        self.assertNotIn(ep.wwn, base.vhost_targets())


class IdentityTestCase(base.FunctionalTestCase):
    """A serial whose guest identity (NAA designator) is taken is refused."""

    def test_a_serial_giving_an_endpoints_identity_is_refused(self):
        self.create(self.make_disk(), serial='vol-1')
        before = base.configfs_snapshot()
        err = self.assertRaises(exception.SerialInUse,
                                self.executor.create_endpoint,
                                self.make_disk(), serial='lv-1')
        self.assertIn('naa.60014051' + '0' * 24, str(err))
        self.assertEqual(before, base.configfs_snapshot())

    def test_an_endpoint_its_index_entry_lost_still_refuses(self):
        # As after an upgrade from a version without the index.
        ep = self.create(self.make_disk(), serial='vol-1')
        index = state.IdentityIndex(state.DEFAULT_STATE_PATH)
        shutil.rmtree(index.directory)
        self.assertRaises(exception.SerialInUse,
                          self.executor.create_endpoint, self.make_disk(),
                          serial='lv-1')
        self.assertIn((ep.luns[0].backstore, '1' + '0' * 24),
                      index.entries())

    def foreign_object(self, serial):
        """A storage object made by rtslib-fb, as targetcli makes one."""
        foreign = lio._rtslib().BlockStorageObject('targetcli-disk',
                                                   dev=self.make_disk())
        self.addCleanup(foreign.delete)
        foreign.wwn = serial
        return foreign

    def test_a_serial_giving_a_foreign_objects_identity_is_refused(self):
        self.foreign_object('ABC-def-0123')
        before = base.configfs_snapshot()
        self.assertRaises(exception.SerialInUse,
                          self.executor.create_endpoint, self.make_disk(),
                          serial='abcdef0123')
        self.assertEqual(before, base.configfs_snapshot())

    def test_a_foreign_object_with_another_company_id_does_not_refuse(self):
        foreign = self.foreign_object('vol-1')
        with open(os.path.join(foreign.path, 'wwn', 'company_id'),
                  'w') as company_id:
            company_id.write('0xabcdef')
        ep = self.create(self.make_disk(), serial='vol-1')
        self.assertEqual('vol-1', ep.luns[0].serial)


class RollbackTestCase(base.FunctionalTestCase):
    """A step that really fails in the kernel rolls back the others.

    These run the backend in this (root) process, so that one step can
    be made to fail for real while the others really happen.
    """

    def assertRolledBack(self, disk, wwn):
        self.assertNotIn(wwn, base.vhost_targets())
        self.assertNotIn(backstores.name_of(wwn), base.own_backstores())
        ep = self.create(disk, wwn=wwn)  # the device is free again
        self.assertEqual(wwn, ep.wwn)

    def test_target_created_by_someone_else_midway(self):
        disk, wwn = self.make_disk(), 'naa.5001405abc000010'
        real_create_backstore = backstores.create
        racer = os.path.join(base.VHOST, wwn)

        def racing_backstore(*args):
            path = real_create_backstore(*args)
            # After the check for the target: the racer gets there first.
            os.mkdir(racer)
            self.addCleanup(os.rmdir, racer)
            return path
        with mock.patch.object(backstores, 'create',
                               side_effect=racing_backstore):
            self.assertRaises(exception.BackendError, lio_create, disk, wwn)
        self.assertTrue(os.path.isdir(racer), 'the racer\'s target is gone')
        self.assertEqual([], [name for name in os.listdir(racer)
                              if name.startswith('tpgt_')])
        self.assertNotIn(backstores.name_of(wwn), base.own_backstores())

    def test_tpg_number_the_kernel_refuses(self):
        disk, wwn = self.make_disk(), 'naa.5001405abc000011'
        # vhost_scsi refuses TPG tags >= VHOST_SCSI_MAX_TARGET (256).
        with mock.patch.object(lio, 'TPGT', 256):
            self.assertRaises(exception.BackendError, lio_create, disk, wwn)
        self.assertRolledBack(disk, wwn)

    def test_lun_number_the_kernel_refuses(self):
        disk, wwn = self.make_disk(), 'naa.5001405abc000012'
        # The kernel parses lun_N as a 64-bit number: ERANGE beyond it.
        with mock.patch.object(lio, 'LUN', 2 ** 64):
            self.assertRaises(exception.BackendError, lio_create, disk, wwn)
        self.assertRolledBack(disk, wwn)

    def test_lun_link_the_kernel_refuses(self):
        disk, wwn = self.make_disk(), 'naa.5001405abc000013'
        real_symlink = os.symlink

        def link_the_hba(source, link):
            # An HBA is not a backstore: the kernel refuses to export it.
            real_symlink(os.path.dirname(source), link)
        with mock.patch.object(lio.os, 'symlink', side_effect=link_the_hba):
            self.assertRaises(exception.BackendError, lio_create, disk, wwn)
        self.assertRolledBack(disk, wwn)


class RootDaemonTestCase(base.FunctionalTestCase):
    """Root's executor, with no root helper, starts the daemon module."""

    def daemon_pids(self):
        pids = []
        for pid in filter(str.isdigit, os.listdir('/proc')):
            with contextlib.suppress(OSError), \
                    open('/proc/%s/cmdline' % pid, 'rb') as cmdline:
                if cmdline.read().split(b'\0')[1:4] == [
                        b'-I', b'-m', privileged.DAEMON_MODULE.encode()]:
                    pids.append(int(pid))
        return pids

    def test_the_daemon_runs_as_root_without_eventlet(self):
        self.executor.list_endpoints()  # the daemon is up
        pids = self.daemon_pids()
        self.assertNotEqual([], pids)
        for pid in pids:
            self.assertEqual(0, os.stat('/proc/%d' % pid).st_uid)
            with open('/proc/%d/maps' % pid) as maps:
                # greenlet: eventlet's C core, mapped by any import of it.
                self.assertNotIn('greenlet', maps.read())


class FabricTestCase(base.FunctionalTestCase):

    def test_a_create_makes_the_vhost_fabric_when_it_is_gone(self):
        # Every test deletes its endpoints: the fabric is empty here.
        os.rmdir(base.VHOST)
        endpoint = self.create(self.make_disk())
        self.assertEqual({endpoint.wwn}, base.vhost_targets())


class VerifyTestCase(base.FunctionalTestCase):

    def test_verify_reports_every_piece_and_the_versions_it_runs_with(self):
        report = self.executor.verify()
        self.assertEqual(os.uname().release, report.pop('kernel_release'))
        self.assertEqual(metadata.version('rtslib-fb'),
                         report.pop('rtslib_fb_version'))
        self.assertEqual(dict.fromkeys(report, True), report)
        self.assertIn('vhost_scsi', report)
