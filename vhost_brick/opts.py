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

from vhost_brick import privileged
from vhost_brick.privileged import rootconf
from vhost_brick.privileged import state


GROUP = 'vhost_brick'
#: Where Cinder's oslo-config-generator shows options every backend may
#: set in its own section.
CINDER_BACKEND_GROUP = 'backend_defaults'
PRIVSEP = 'privsep'
HELPER = 'helper'

_opts = [
    cfg.StrOpt('privileged_mode',
               default=PRIVSEP,
               choices=[(PRIVSEP, 'an oslo.privsep daemon, started once '
                                  'per process through the root helper; '
                                  'each call then costs a socket round '
                                  'trip'),
                        (HELPER, 'one helper_command process per call, '
                                 'run through the root helper')],
               help='How VhostExecutor reaches root. The daemon is '
                    'configured in the [privsep_vhost_brick] section '
                    '(capabilities, helper_command, ...). An executor '
                    'given an explicit execute callable always uses the '
                    'helper.'),
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
    cfg.ListOpt('allowed_devices',
                default=list(rootconf.DEFAULT_ALLOWED_DEVICES),
                help='Glob patterns of the block device paths root may '
                     'export, matched against the path the caller gives, '
                     'normalised; "*" stays within one path component and '
                     'a "**" component matches any number of them. Read by '
                     'the root side from /etc/vhost-brick/vhost-brick.conf '
                     'only. The default admits any block device under /dev; '
                     'a production host should name only its volumes, e.g. '
                     '/dev/disk/by-id/*, /dev/cinder-volumes/*. Mounted, '
                     'swap, held, LIO-backed devices and the root '
                     'filesystem\'s disk are refused whatever this says.'),
    cfg.FloatOpt('lock_timeout',
                 default=rootconf.DEFAULT_LOCK_TIMEOUT,
                 min=0.001,
                 help='Seconds a privileged call waits for the host lock '
                      'before it fails with LockTimeout, naming the '
                      'process that holds it. Read by the root side from '
                      '/etc/vhost-brick/vhost-brick.conf only.'),
]

cfg.CONF.register_opts(_opts, group=GROUP)

#: Options of a Cinder backend that exports through the vhost target,
#: set in the backend's section of cinder.conf.
cinder_backend_opts = [
    cfg.BoolOpt('vhost_discard',
                default=True,
                help='Give guests discard (UNMAP) on volumes whose device '
                     'has it, so that their fstrim frees space in a thin '
                     'pool; False hides it from every guest of the '
                     'backend. The connection info reports what each '
                     'volume was given.'),
]


def list_opts():
    """oslo.config.opts entry point for sample config generation.

    :returns: a list of (group_name, opts) tuples: vhost_brick's own,
              oslo.privsep's for vhost_brick's privsep context and those
              of a Cinder backend using the vhost target
    """
    from oslo_privsep import priv_context  # only the generator needs it
    return [(GROUP, copy.deepcopy(_opts)),
            (privileged.CFG_SECTION, copy.deepcopy(priv_context.OPTS)),
            (CINDER_BACKEND_GROUP, copy.deepcopy(cinder_backend_opts))]
