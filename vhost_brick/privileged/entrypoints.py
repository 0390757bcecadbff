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

import functools
import inspect
import logging
import os

from vhost_brick import exception
from vhost_brick import privileged
from vhost_brick.privileged import operations


LOG = logging.getLogger(__name__)


# inspect.signature costs more than a whole get under TCG: once each.
_signature = functools.lru_cache(maxsize=None)(inspect.signature)


def _answer(operation, args, kwargs):
    try:
        if os.geteuid() != 0:
            # A helper_command without sudo starts a daemon that could
            # only fail half-way through every change.
            raise exception.PermissionDenied(command='the privsep daemon')
        try:
            call = _signature(operation).bind(*args, **kwargs)
        except TypeError as err:
            raise exception.InvalidArgument(reason=str(err)) from err
        call.apply_defaults()
        return {'result': operation(*call.args, **call.kwargs)}
    except exception.VhostBrickException as err:
        return {'error': exception.to_report(err)}
    except Exception as err:
        LOG.exception('Privileged %s failed unexpectedly', operation.__name__)
        return {'error': exception.to_report(
            exception.BackendError(reason=str(err)))}


def _entrypoint(name):
    """The entry point of operations.<name>, under that name.

    privsep finds it in the daemon by this module and that name. It takes
    the operation's arguments; a call of any other shape is answered with
    InvalidArgument.
    """
    def call(*args, **kwargs):
        return _answer(getattr(operations, name), args, kwargs)
    call.__name__ = call.__qualname__ = name
    call.__doc__ = getattr(operations, name).__doc__
    return privileged.default.entrypoint(call)


create = _entrypoint('create')
create_many = _entrypoint('create_many')
delete = _entrypoint('delete')
delete_many = _entrypoint('delete_many')
show = _entrypoint('show')
list_endpoints = _entrypoint('list_endpoints')
stats = _entrypoint('stats')
list_stats = _entrypoint('list_stats')
restore = _entrypoint('restore')
cleanup = _entrypoint('cleanup')
verify = _entrypoint('verify')
