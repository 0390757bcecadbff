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

"""oslo.privsep entry points: each privileged operation, in the daemon.

The daemon runs as root and any code its caller's process runs may call
these, so every argument is validated again below (in host and lio),
as for the helper command. Arguments and answers cross a msgpack socket:
plain data only. An answer is ``{"result": ...}`` or, for a typed
error, ``{"error": report}`` in the helper's report format, so the
caller raises the same exception class with the same fields
(:func:`vhost_brick.exception.from_report`); privsep's own error path
would keep only the message.
"""

import logging
import os

from vhost_brick import exception
from vhost_brick import privileged
from vhost_brick.privileged import operations


LOG = logging.getLogger(__name__)


def _answer(operation, *args, **kwargs):
    try:
        if os.geteuid() != 0:
            # A helper_command without sudo starts a daemon that could
            # only fail half-way through every change.
            raise exception.PermissionDenied(command='the privsep daemon')
        return {'result': operation(*args, **kwargs)}
    except exception.VhostBrickException as err:
        return {'error': exception.to_report(err)}
    except Exception as err:
        LOG.exception('Privileged %s failed unexpectedly', operation.__name__)
        return {'error': exception.to_report(
            exception.BackendError(reason=str(err)))}


@privileged.default.entrypoint
def create(device_path, wwn=None, nexus=None):
    return _answer(operations.create, device_path, wwn=wwn, nexus=nexus)


@privileged.default.entrypoint
def create_many(specs):
    return _answer(operations.create_many, specs)


@privileged.default.entrypoint
def delete(wwn):
    return _answer(operations.delete, wwn)


@privileged.default.entrypoint
def delete_many(wwns):
    return _answer(operations.delete_many, wwns)


@privileged.default.entrypoint
def show(wwn):
    return _answer(operations.show, wwn)


@privileged.default.entrypoint
def list_endpoints():
    return _answer(operations.list_endpoints)


@privileged.default.entrypoint
def restore():
    return _answer(operations.restore)


@privileged.default.entrypoint
def cleanup():
    return _answer(operations.cleanup)


@privileged.default.entrypoint
def verify():
    return _answer(operations.verify)
