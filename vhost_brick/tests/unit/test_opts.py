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

import os

import fixtures
from oslo_config import cfg

from vhost_brick import opts
from vhost_brick.privileged import rootconf
from vhost_brick.tests import base


class OptsTestCase(base.TestCase):

    def test_list_opts_lists_the_vhost_brick_group(self):
        (group, options), _privsep, _cinder = opts.list_opts()
        self.assertEqual('vhost_brick', group)
        self.assertEqual({'privileged_mode', 'helper_command', 'lock_path',
                          'state_path', 'allowed_devices', 'lock_timeout'},
                         {opt.name for opt in options})

    def test_root_options_declare_what_the_root_side_reads(self):
        # The root side reads them with configparser (rootconf), so the
        # sample config and the docs must state its defaults.
        self.useFixture(fixtures.MonkeyPatch(
            'vhost_brick.privileged.rootconf.CONFIG_FILE', os.devnull))
        read = rootconf.load()
        self.assertEqual(read.state_path, cfg.CONF.vhost_brick.state_path)
        self.assertEqual(list(read.allowed_devices),
                         cfg.CONF.vhost_brick.allowed_devices)
        self.assertEqual(read.lock_timeout,
                         cfg.CONF.vhost_brick.lock_timeout)

    def test_list_opts_lists_the_privsep_context_group(self):
        _own, (group, options), _cinder = opts.list_opts()
        self.assertEqual('privsep_vhost_brick', group)
        self.assertIn('capabilities', {opt.name for opt in options})
        self.assertIn('helper_command', {opt.name for opt in options})

    def test_list_opts_returns_copies(self):
        [(_group, options), _privsep, _cinder] = opts.list_opts()
        self.assertIsNot(opts._opts[0], options[0])

    def test_list_opts_lists_the_cinder_backend_options(self):
        _own, _privsep, (group, options) = opts.list_opts()
        self.assertEqual('backend_defaults', group)
        self.assertEqual({'vhost_discard'}, {opt.name for opt in options})

    def test_defaults(self):
        self.assertEqual('privsep', cfg.CONF.vhost_brick.privileged_mode)
        self.assertEqual('vhost-brick-helper',
                         cfg.CONF.vhost_brick.helper_command)
        self.assertIsNone(cfg.CONF.vhost_brick.lock_path)
