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

"""The start of vhost_brick's privsep daemon, on both ways to root.

vhost-brick-rootwrap calls :func:`main` in its own process once its
filters allow the daemon; root, which needs no root helper, runs
``python -m vhost_brick.privileged.daemon`` with privsep-helper's
arguments. Either way it is oslo.privsep's own helper main, without
eventlet: the daemon never monkey-patches, so oslo.privsep's import of
eventlet, when installed, only finds that out, at half the daemon's
start-up under TCG. Blocked, the import fails as if eventlet were absent.
"""

import sys


def main(argv=None):
    """oslo.privsep's privsep-helper main, on argv (default sys.argv)."""
    if argv is not None:
        sys.argv = argv
    sys.modules['eventlet'] = None
    from oslo_privsep import daemon
    daemon.helper_main()


if __name__ == '__main__':
    main()
