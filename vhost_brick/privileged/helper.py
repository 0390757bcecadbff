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

Runs as root (through rootwrap or sudo), one process per call, and runs
one of :mod:`vhost_brick.privileged.operations`. It answers in JSON: the
result on stdout, or ``{"error", "message", "kwargs"}`` on stderr with
the exit code of that error (see :mod:`vhost_brick.exception`). The
batch commands read their JSON list from stdin. Services that make many
calls use the privsep daemon instead (:mod:`.entrypoints`).
"""

import argparse
import json
import logging
import os
import sys

from vhost_brick import exception
from vhost_brick.privileged import operations


LOG = logging.getLogger(__name__)

PROG = 'vhost-brick-helper'
# Bound on a batch read from stdin: room for tens of thousands of specs.
MAX_INPUT_BYTES = 8 * 1024 * 1024


class _Parser(argparse.ArgumentParser):
    """argparse that raises InvalidArgument instead of exiting."""

    def error(self, message):
        raise exception.InvalidArgument(reason=message)


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


def _create(args):
    return operations.create(args.device, wwn=args.wwn, nexus=args.nexus,
                             serial=args.serial, read_only=args.read_only,
                             discard=args.discard)


def _delete(args):
    return operations.delete(args.wwn)


def _show(args):
    return operations.show(args.wwn)


def _stats(args):
    return operations.stats(args.wwn)


def _create_many(args):
    return operations.create_many(_read_batch())


def _delete_many(args):
    return operations.delete_many(_read_batch())


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
    create.add_argument('--serial', help='unit serial the guest sees '
                        '(default: a generated UUID)')
    create.add_argument('--read-only', action='store_true',
                        help='write-protect the LUN for the guest')
    create.add_argument('--discard', action=argparse.BooleanOptionalAction,
                        help='give the guest discard (UNMAP), or not '
                        '(default: exactly when the device has it)')
    create.set_defaults(func=_create)

    for name, func, text in (
            ('delete', _delete, 'delete an endpoint (no-op if unknown)'),
            ('show', _show, 'describe one endpoint'),
            ('stats', _stats, "LIO's counters of an endpoint's LUNs")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument('--wwn', required=True, help='target WWN')
        sub.set_defaults(func=func)

    commands.add_parser(
        'create-many', help='create the endpoints of a JSON list of '
        '{"device_path", "wwn", "nexus", "serial", "read_only", '
        '"discard"} specs '
        'read from stdin'
    ).set_defaults(func=_create_many)
    commands.add_parser(
        'delete-many', help='delete the endpoints of a JSON list of WWNs '
        'read from stdin').set_defaults(func=_delete_many)
    for name, operation, text in (
            ('list', operations.list_endpoints,
             'describe every vhost endpoint'),
            ('list-stats', operations.list_stats,
             "LIO's counters of every vhost endpoint's LUNs"),
            ('restore', operations.restore,
             'recreate recorded endpoints missing from LIO, e.g. at boot'),
            ('cleanup', operations.cleanup,
             'remove what interrupted calls left behind'),
            ('verify', operations.verify,
             'report kernel support for vhost-scsi')):
        commands.add_parser(name, help=text).set_defaults(
            func=lambda _args, operation=operation: operation())
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
