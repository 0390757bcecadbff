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

"""A service's process, as the tests drive it: a VhostExecutor over stdin.

Run as an unprivileged user::

    python -m vhost_brick.tests.functional.service_agent MODE ROOT_HELPER

It reads one JSON request a line, ``{"call": method, "args": [...],
"kwargs": {...}}``, calls that method of one long-lived VhostExecutor
(``[vhost_brick] privileged_mode = MODE``) and answers one line:
``{"result": ...}`` or ``{"error": class name, "kwargs": fields}``.
The call ``daemon_command`` answers the command that started the
privsep daemon, as oslo.privsep logged it. SIGUSR1 writes every
thread's stack to stderr, so a test can show where a call hangs.
"""

import dataclasses
import faulthandler
import json
import logging
import signal
import sys

from oslo_config import cfg

from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick import executor


class _DaemonCommand(logging.Handler):
    """Keeps the command oslo.privsep logs when it starts a daemon."""

    command = None

    def emit(self, record):
        if record.msg.startswith('Running privsep helper'):
            self.command = record.args[0]


def plain(value):
    """A JSON-able form of what the executor returns."""
    if isinstance(value, endpoint.VhostEndpoint):
        return value.to_dict()
    if isinstance(value, endpoint.Failure):
        return {'item': value.item, 'error': type(value.error).__name__}
    if dataclasses.is_dataclass(value):
        return {field.name: plain(getattr(value, field.name))
                for field in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def serve(call):
    """Answer each request line of stdin with call(name, *args, **kwargs).

    A vhost_brick error is answered with its class name and fields.
    """
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {'result': call(request['call'],
                                     *request.get('args', ()),
                                     **request.get('kwargs', {}))}
        except exception.VhostBrickException as err:
            answer = {'error': type(err).__name__, 'kwargs': {
                key: str(value) for key, value in err.kwargs.items()}}
        sys.stdout.write(json.dumps(answer) + '\n')
        sys.stdout.flush()


def main(mode, root_helper):
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    cfg.CONF.set_override('privileged_mode', mode, group='vhost_brick')
    started = _DaemonCommand()
    # oslo.log names the logger of oslo_privsep.daemon this way.
    privsep_log = logging.getLogger('oslo.privsep.daemon')
    privsep_log.addHandler(started)
    privsep_log.setLevel(logging.INFO)
    service = executor.VhostExecutor(root_helper=root_helper)

    def call(name, *args, **kwargs):
        if name == 'daemon_command':
            return started.command
        return plain(getattr(service, name)(*args, **kwargs))
    serve(call)


if __name__ == '__main__':
    main(*sys.argv[1:])
