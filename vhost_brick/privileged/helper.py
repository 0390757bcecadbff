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

"""vhost-brick-helper: the privileged half of vhost_brick.

Runs as root (through rootwrap or sudo), validates its arguments again,
changes LIO under a host-wide lock, and answers in JSON: the result on
stdout, or ``{"error", "message", "kwargs"}`` on stderr with the exit
code of that error (see :mod:`vhost_brick.exception`). The batch
commands read their JSON list from stdin.
"""

import argparse
import configparser
import contextlib
import fcntl
import json
import logging
import os
import sys

from vhost_brick import exception
from vhost_brick.privileged import host
from vhost_brick.privileged import lio
from vhost_brick.privileged import state


LOG = logging.getLogger(__name__)

PROG = 'vhost-brick-helper'
# Serialises every helper that changes LIO, whoever runs it.
LOCK_FILE = '/run/lock/vhost-brick.lock'
# Root-owned configuration; the caller cannot point the helper elsewhere.
CONFIG_FILE = '/etc/vhost-brick/vhost-brick.conf'
# Bound on a batch read from stdin: room for tens of thousands of specs.
MAX_INPUT_BYTES = 8 * 1024 * 1024


class _Parser(argparse.ArgumentParser):
    """argparse that raises InvalidArgument instead of exiting."""

    def error(self, message):
        raise exception.InvalidArgument(reason=message)


@contextlib.contextmanager
def _host_lock(shared=False):
    """Exclusive for changes, shared for reads.

    Reads then never see the half-made objects of a concurrent change.
    """
    os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)
    with open(LOCK_FILE, 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield


def _state_path():
    """``[vhost_brick] state_path`` from the root-owned config file.

    Read with configparser rather than oslo.config, which would double
    the helper's start-up; the option is declared in
    :mod:`vhost_brick.opts` with the same default.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(CONFIG_FILE)
    except configparser.Error as err:
        raise exception.BackendError(
            reason='cannot parse %s: %s' % (CONFIG_FILE, err)) from err
    path = parser.get('vhost_brick', 'state_path',
                      fallback=state.DEFAULT_STATE_PATH)
    if not os.path.isabs(path):
        raise exception.BackendError(
            reason='state_path %r in %s is not an absolute path'
                   % (path, CONFIG_FILE))
    return path


def _record():
    return state.EndpointRecord(_state_path())


def _create(args):
    with _host_lock():
        return host.create(_record(), args.device, wwn=args.wwn,
                           nexus=args.nexus)


def _delete(args):
    with _host_lock():
        return {'deleted': host.delete(_record(), args.wwn)}


def _read_batch():
    """The JSON list a batch command reads from stdin."""
    text = sys.stdin.read(MAX_INPUT_BYTES + 1)
    if len(text) > MAX_INPUT_BYTES:
        raise exception.InvalidArgument(
            reason='batch input exceeds %d bytes' % MAX_INPUT_BYTES)
    try:
        return json.loads(text)
    except ValueError as err:
        raise exception.InvalidArgument(
            reason='batch input is not JSON: %s' % err) from err


def _create_many(args):
    specs = _read_batch()
    with _host_lock():
        return host.create_many(_record(), specs)


def _delete_many(args):
    wwns = _read_batch()
    with _host_lock():
        return host.delete_many(_record(), wwns)


def _restore(args):
    with _host_lock():
        return host.restore(_record())


def _cleanup(args):
    with _host_lock():
        return host.cleanup(_record())


def _show(args):
    with _host_lock(shared=True):
        return lio.show(args.wwn)


def _list(args):
    with _host_lock(shared=True):
        return lio.list_endpoints()


def _verify(args):
    report = lio.kernel_support()
    missing = sorted(name for name, present in report.items() if not present)
    if missing:
        raise exception.KernelSupportMissing(
            reason='missing: %s; load the modules with "modprobe -a '
                   'target_core_iblock vhost_scsi"' % ', '.join(missing))
    return report


def build_parser():
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True,
                                     parser_class=_Parser)

    create = commands.add_parser(
        'create', help='export a block device as a new vhost endpoint')
    create.add_argument('--device', required=True,
                        help='absolute path of the block device')
    create.add_argument('--wwn', help='target WWN, naa. + 16 hex digits')
    create.add_argument('--nexus', help='I_T nexus WWN, same format')
    create.set_defaults(func=_create)

    for name, func, text in (
            ('delete', _delete, 'delete an endpoint (no-op if unknown)'),
            ('show', _show, 'describe one endpoint')):
        sub = commands.add_parser(name, help=text)
        sub.add_argument('--wwn', required=True, help='target WWN')
        sub.set_defaults(func=func)

    commands.add_parser(
        'create-many', help='create the endpoints of a JSON list of '
        '{"device_path", "wwn", "nexus"} specs read from stdin'
    ).set_defaults(func=_create_many)
    commands.add_parser(
        'delete-many', help='delete the endpoints of a JSON list of WWNs '
        'read from stdin').set_defaults(func=_delete_many)
    commands.add_parser('list', help='describe every vhost endpoint'
                        ).set_defaults(func=_list)
    commands.add_parser('restore', help='recreate recorded endpoints '
                        'missing from LIO, e.g. at boot'
                        ).set_defaults(func=_restore)
    commands.add_parser('cleanup', help='remove what interrupted calls '
                        'left behind').set_defaults(func=_cleanup)
    commands.add_parser('verify', help='report kernel support for '
                        'vhost-scsi').set_defaults(func=_verify)
    return parser


def _report_error(err):
    json.dump(exception.to_report(err), sys.stderr)
    sys.stderr.write('\n')


def main(argv=None):
    """Run one helper command; return its exit code."""
    try:
        args = build_parser().parse_args(argv)
        if os.geteuid() != 0:
            raise exception.PermissionDenied(command=PROG)
        result = args.func(args)
    except exception.VhostBrickException as err:
        _report_error(err)
        return err.helper_exit_code
    except Exception as err:
        LOG.exception('%s failed unexpectedly', PROG)
        _report_error(exception.BackendError(reason=str(err)))
        return exception.BackendError.helper_exit_code
    # One write of the whole answer: json.dump would write it piecemeal.
    sys.stdout.write(json.dumps(result) + '\n')
    return 0
