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

"""The demo's guest half: vhost_brick's main job on a real kernel.

Run by tools/demo.sh inside the VM, as root.
"""

import os
import subprocess
import sys
import time

from oslo_config import cfg

from vhost_brick import opts
from vhost_brick import privileged
from vhost_brick.tests.functional import guest
from vhost_brick import VhostExecutor


def step(text):
    print('\n== %s' % text, flush=True)


def privileged_path():
    """Which way the executor reached root, as this process shows it."""
    mode = cfg.CONF.vhost_brick.privileged_mode
    if mode != opts.PRIVSEP:
        return '%s: one vhost-brick-helper process per call' % mode
    daemons = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as cmdline:
                argv = cmdline.read().decode().split('\0')[:-1]
        except OSError:
            continue
        if privileged.__name__ + '.default' in argv:
            daemons.append('pid %s: %s' % (pid, ' '.join(argv)))
    return '%s: the daemon %s' % (mode, '; '.join(daemons) or 'not found')


def main():
    started = time.monotonic()
    step('Kernel %s: loading target_core_iblock and vhost_scsi'
         % os.uname().release)
    subprocess.run(['modprobe', '-a', 'loop', 'target_core_iblock',
                    'vhost_scsi'], check=True)

    message = 'Hello from vhost_brick, %s' % time.strftime('%Y-%m-%d %H:%M')
    step('Creating a 64 MiB disk whose first sector says: %r' % message)
    with open('/run/demo-disk.img', 'wb') as image:
        image.write(message.encode())
        image.truncate(64 << 20)
    disk = subprocess.run(['losetup', '--find', '--show',
                           '/run/demo-disk.img'], check=True,
                          capture_output=True, text=True).stdout.strip()
    print('loop device:', disk)

    # What a service passes; root uses no root helper in either mode.
    executor = VhostExecutor(root_helper='sudo')
    step('executor.create_endpoint(%r)' % disk)
    endpoint = executor.create_endpoint(disk)
    print(endpoint)
    print('privileged path: %s' % privileged_path())

    step('executor.list_endpoints()')
    for listed in executor.list_endpoints():
        print(listed.to_dict())

    step('Booting a guest: qemu-system-x86_64 ... -device '
         'vhost-scsi-pci,wwpn=%s' % endpoint.wwn)
    nested = guest.NestedGuest(endpoint, marker='written-by-the-guest')
    nested.start()
    seen = nested.expect('sector0=')[len('sector0='):]
    nested.expect('written')
    nested.release()
    nested.stop()
    print('The guest read through vhost-scsi: %r' % seen)

    step('executor.delete_endpoint(%r)' % endpoint.wwn)
    executor.delete_endpoint(endpoint.wwn)
    print('endpoints left:', executor.list_endpoints())
    subprocess.run(['losetup', '--detach', disk], check=True)

    ok = seen == message
    step('%s in %.0f s' % ('SUCCESS: the guest read the disk through the '
                           'endpoint' if ok else 'FAILURE: the guest read '
                           'something else', time.monotonic() - started))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
