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

"""Configuration options of vhost_brick."""

import copy

from oslo_config import cfg

from vhost_brick.privileged import state


GROUP = 'vhost_brick'

_opts = [
    cfg.StrOpt('helper_command',
               default='vhost-brick-helper',
               help='The privileged helper that vhost_brick runs through '
                    'root_helper to change LIO. It must be allowed by the '
                    'rootwrap filter shipped in '
                    'etc/vhost-brick/rootwrap.d/vhost-brick.filters.'),
    cfg.StrOpt('lock_path',
               help='Directory for the external lock that serialises '
                    'create and delete calls of all processes on this host. '
                    'Defaults to [oslo_concurrency] lock_path; when neither '
                    'is set the lock only serialises threads of one process '
                    'and the helper\'s own root lock serialises processes.'),
    cfg.StrOpt('state_path',
               default=state.DEFAULT_STATE_PATH,
               help='Directory where the privileged helper records the '
                    'endpoints vhost_brick created, so that "restore" can '
                    'recreate them after a reboot. The helper reads it from '
                    '/etc/vhost-brick/vhost-brick.conf; it never accepts it '
                    'from its caller.'),
]

cfg.CONF.register_opts(_opts, group=GROUP)


def list_opts():
    """oslo.config.opts entry point for sample config generation.

    :returns: a list of (group_name, opts) tuples
    """
    return [(GROUP, copy.deepcopy(_opts))]
