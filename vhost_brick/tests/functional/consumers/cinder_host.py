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

"""A Cinder volume host inside the test VM: Cinder's LVM driver, for real.

What an operator sets up on a Cinder host whose volumes are served over
vhost-scsi, done by the test in the disposable VM: Cinder's rootwrap
configuration with Cinder's own volume filters and vhost_brick's filter
file (which only helper mode needs), ``cinder-rootwrap`` on sudo's path,
and a volume group (here on a loop device). Cinder's LVM driver then
runs every command through ``sudo cinder-rootwrap``, and the vhost
target starts vhost_brick's privsep daemon the same way.
"""

import os
import shlex
import shutil
import sys
import uuid

import fixtures
from oslo_config import cfg

from vhost_brick import privileged
from vhost_brick.tests.functional import base


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), *['..'] * 4))
ETC = '/etc/cinder'
ROOTWRAP_CONF = ETC + '/rootwrap.conf'
ROOT_HELPER = 'sudo cinder-rootwrap ' + ROOTWRAP_CONF
LVM_CONF = ETC + '/lvm.conf'
OUR_FILTERS = os.path.join(REPO, 'etc', 'vhost-brick', 'rootwrap.d',
                           'vhost-brick.filters')
BACKEND = 'lvm-vhost'


def lvm(*args):
    """Run an LVM command with the backend's LVM configuration."""
    return base.run('env', 'LVM_SYSTEM_DIR=' + ETC, *args)


class CinderVolumeHost(fixtures.Fixture):
    """Cinder's rootwrap and LVM set up, and a volume group to serve.

    Host-wide, so a test class may set it up once; each test makes its
    driver with :meth:`make_driver`.
    """

    volume_group = 'cinder-vhost'

    def __init__(self, size=3 << 30):
        """:param size: bytes of the volume group's (sparse) loop device"""
        super().__init__()
        self.size = size

    def _setUp(self):
        base.run('modprobe', 'dm_mod')
        self._install_rootwrap()
        self._init_privsep()
        with open(LVM_CONF, 'w') as conf:
            conf.write(base.LVM_SETTINGS)
        self.addCleanup(os.unlink, LVM_CONF)
        disk = self.useFixture(base.LoopDevice(size=self.size))
        lvm('vgcreate', self.volume_group, disk.path)
        self.addCleanup(base.remove_volume_group, lvm, self.volume_group)

    def _install_rootwrap(self):
        """Cinder's rootwrap.conf, Cinder's volume filters and ours."""
        bindir = os.path.dirname(sys.executable)
        os.makedirs(ETC + '/rootwrap.d', exist_ok=True)
        self.addCleanup(shutil.rmtree, ETC)
        shutil.copy(os.path.join(sys.prefix, 'etc', 'cinder', 'rootwrap.d',
                                 'volume.filters'), ETC + '/rootwrap.d')
        shutil.copy(OUR_FILTERS, ETC + '/rootwrap.d')
        with open(ROOTWRAP_CONF, 'w') as conf:
            conf.write('[DEFAULT]\nfilters_path=%s/rootwrap.d\n'
                       'exec_dirs=%s,/sbin,/usr/sbin,/bin,/usr/bin\n'
                       'use_syslog=False\n' % (ETC, bindir))
        # A virtualenv install: its cinder-rootwrap on sudo's path.
        link = '/usr/local/bin/cinder-rootwrap'
        os.symlink(os.path.join(bindir, 'cinder-rootwrap'), link)
        self.addCleanup(os.unlink, link)

    def lv_path(self, volume):
        """The device node of a volume's logical volume."""
        return '/dev/%s/%s' % (self.volume_group, volume.name)

    @staticmethod
    def new_volume(context, size=1):
        """A volume object as Cinder's API hands one to the driver."""
        from cinder import objects
        return objects.Volume(
            context, id=str(uuid.uuid4()), _name_id=None, size=size,
            multiattach=False, admin_metadata={},
            volume_attachment=objects.VolumeAttachmentList(objects=[]))

    def _init_privsep(self):
        """Start privsep daemons through cinder-rootwrap, until cleanup.

        As cinder-volume's main() does (and nova-compute's with its own
        rootwrap): Cinder's and os-brick's contexts take oslo.privsep's
        process-wide root helper, ``sudo`` alone unless set. The tests
        run as root, which starts vhost_brick's daemon without a root
        helper; :meth:`make_driver` sets its ``helper_command`` so that it
        starts as the ``cinder`` user's would, through cinder-rootwrap.
        """
        from cinder import privsep as cinder_privsep
        from os_brick import privileged as brick_privileged
        from oslo_privsep import priv_context

        previous = priv_context._HELPER_COMMAND_PREFIX
        priv_context.init(root_helper=shlex.split(ROOT_HELPER))
        self.addCleanup(priv_context.init, root_helper=previous)
        self.addCleanup(cinder_privsep.sys_admin_pctxt.stop)
        self.addCleanup(brick_privileged.default.stop)

    def make_driver(self, conf):
        """A ready VhostLVMVolumeDriver, as Cinder's volume manager makes it.

        Built from a backend section of ``cfg.CONF``, then ``do_setup``
        and ``check_for_setup_error``.

        :param conf: the test's oslo.config fixture of ``cfg.CONF``, which
                     undoes these settings after the test
        """
        from cinder import context
        from cinder import objects
        from cinder.volume import configuration
        from cinder.volume import driver as volume_driver

        # As Cinder's services do before they load a volume driver.
        objects.register_all()
        from vhost_brick.integrations import cinder_driver

        for opts in (volume_driver.volume_opts,
                     cinder_driver.lvm.volume_opts):
            conf.register_opts(opts, group=BACKEND)
        conf.config(group=BACKEND, volume_group=self.volume_group,
                    lvm_type='default', volume_clear='none',
                    lvm_conf_file=LVM_CONF)
        conf.config(rootwrap_config=ROOTWRAP_CONF)
        # Per test: the test's fixture resets every override after it.
        privileged.default  # registers the options of its section
        conf.config(group=privileged.CFG_SECTION,
                    helper_command=ROOT_HELPER + ' privsep-helper')
        driver = cinder_driver.VhostLVMVolumeDriver(
            configuration=configuration.Configuration(
                cinder_driver.lvm.volume_opts, config_group=BACKEND),
            host='%s@%s' % (cfg.CONF.host, BACKEND))
        driver.do_setup(context.get_admin_context())
        driver.check_for_setup_error()
        return driver
