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

"""Control plane for Linux kernel vhost-scsi endpoints (LIO ``vhost``).

The public names are imported on first use, so that the privileged
helper (``vhost_brick.privileged.helper``) starts without loading the
executor's oslo.concurrency stack. Nothing here imports rtslib-fb.
"""

import importlib

_EXPORTS = {
    'VhostEndpoint': 'vhost_brick.endpoint',
    'VhostLun': 'vhost_brick.endpoint',
    'VhostExecutor': 'vhost_brick.executor',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError('module %r has no attribute %r'
                             % (__name__, name))
    return getattr(importlib.import_module(_EXPORTS[name]), name)
