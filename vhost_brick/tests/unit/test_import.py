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

import subprocess
import sys

from vhost_brick.tests import base


def loaded_modules(code, roots):
    """Modules under these top-level names that a fresh Python loads."""
    code += ("\nimport sys\n"
             "print(sorted(name for name, module in sys.modules.items()"
             " if module is not None and name.split('.')[0] in %r))\n"
             % (roots,))
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True).stdout
    return out.strip()


class ImportTestCase(base.TestCase):

    def test_package_imports_without_rtslib_or_pyudev(self):
        code = ("import sys\n"
                "sys.modules['rtslib_fb'] = None\n"
                "sys.modules['pyudev'] = None\n"
                "import vhost_brick, vhost_brick.exception, "
                "vhost_brick.privileged.helper, vhost_brick.privileged.lio\n"
                "from vhost_brick import VhostExecutor, VhostEndpoint, "
                "VhostLun")
        self.assertEqual('[]', loaded_modules(code, ('rtslib_fb', 'pyudev')))

    def test_helper_imports_nothing_that_slows_its_start(self):
        # Every root-wrapped call pays the helper's start-up: oslo.config
        # and oslo.log would triple it, oslo.privsep (with eventlet) more,
        # hashlib (through secrets) and tempfile add a tenth each.
        self.assertEqual('[]', loaded_modules(
            'import vhost_brick.privileged.helper',
            ('oslo_config', 'oslo_log', 'oslo_privsep', 'eventlet',
             'hashlib', '_hashlib', 'secrets', 'tempfile')))

    def test_helper_mode_never_imports_oslo_privsep(self):
        self.assertEqual('[]', loaded_modules(
            'from vhost_brick import executor\n'
            'from vhost_brick.tests.unit import test_executor\n'
            'fake = test_executor.FakeExecute()\n'
            'fake.reply("[]")\n'
            'executor.VhostExecutor("sudo", execute=fake).list_endpoints()',
            ('oslo_privsep', 'eventlet')))
