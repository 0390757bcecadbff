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

"""VhostExecutor: create, delete and list kernel vhost-scsi endpoints.

The executor runs unprivileged. It validates its input, serialises
mutations with an external lock and reaches root one of two ways,
``[vhost_brick] privileged_mode``:

* ``privsep`` (default): vhost_brick's oslo.privsep daemon, started on
  first use through ``root_helper`` (or ``[privsep_vhost_brick]
  helper_command``) and kept for the life of the process, as os-brick,
  Nova and Cinder do; a call is then a socket round trip.
* ``helper``: one ``vhost-brick-helper`` process per call through
  ``root_helper``, as root-wrapped commands are run. It answers in JSON;
  its exit code names the exception to raise here.

Both raise the same typed exceptions with the same fields, and agree on
what a root helper means: a caller that is already root uses none.
"""

import json
import os
import shlex

from oslo_concurrency import lockutils
from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_log import log as logging

from vhost_brick import endpoint
from vhost_brick import exception
from vhost_brick import opts
from vhost_brick import privileged
from vhost_brick import validation


LOG = logging.getLogger(__name__)
CONF = cfg.CONF

LOCK_PREFIX = 'vhost-brick-'
LOCK_NAME = 'endpoints'

# The helper's option for an argument, where it is not the same name.
_HELPER_OPTIONS = {'device_path': 'device', 'read_only': 'read-only'}
# Flags whose False the helper takes as --no-<flag>, not as their absence.
_NEGATABLE = frozenset(['discard'])
# The privsep entry point of an operation, where it is not the same name.
_ENTRYPOINTS = {'list': 'list_endpoints'}


class Executor:
    """os-brick style executor: an injectable ``execute`` and a root helper.

    :param root_helper: command prefix that runs a command as root, e.g.
                        ``sudo vhost-brick-rootwrap
                        /etc/vhost-brick/rootwrap.conf``
    :param execute: callable with the signature of
                    :func:`oslo_concurrency.processutils.execute`; None uses
                    that function
    """

    def __init__(self, root_helper, execute=None, *args, **kwargs):
        self.set_execute(execute)
        self.set_root_helper(root_helper)

    def set_execute(self, execute):
        self._explicit_execute = execute is not None
        self._execute = execute or processutils.execute

    def set_root_helper(self, helper):
        self._root_helper = helper


class VhostExecutor(Executor):
    """Manage vhost-scsi endpoints (LIO ``vhost`` targets) on this host.

    An endpoint is a vhost target WWN with TPG 1, an I_T nexus and LUN 0
    backed by a block device; QEMU attaches it with
    ``-device vhost-scsi-pci,wwpn=<wwn>``.

    :param root_helper: see :class:`Executor`. For a caller that is not
                        root, the helper runs through it and the privsep
                        daemon starts through it; without one the helper
                        refuses (PermissionDenied) and the daemon starts
                        through oslo.privsep's process-wide prefix. A
                        caller that is root needs none and one given is
                        not used, in either mode: the helper runs as is
                        (as processutils does) and the daemon starts as
                        ``python -I -m vhost_brick.privileged.daemon``.
                        ``[privsep_vhost_brick] helper_command``, when
                        set, starts the daemon for root and non-root alike.
    :param execute: see :class:`Executor`; passing one selects the helper
                    whatever ``privileged_mode`` says

    Options come from the ``[vhost_brick]`` group of ``cfg.CONF``.
    """

    @classmethod
    def for_service(cls, root_helper, execute=None):
        """The executor of a service's integration (Cinder, os-brick).

        Services hand their integrations an ``execute`` callable; it is
        used in helper mode only, so that the default privsep mode is
        what these services get.
        """
        if CONF.vhost_brick.privileged_mode != opts.HELPER:
            execute = None
        return cls(root_helper, execute=execute)

    def create_endpoint(self, device_path, wwn=None, nexus=None,
                        serial=None, read_only=False, discard=None):
        """Export a block device as a new vhost-scsi endpoint.

        Retry-safe: repeating a call with the same arguments returns the
        existing endpoint. Atomic: on failure nothing this call created
        is left behind. Root admits the device only as its own policy
        allows (``allowed_devices`` and the rules that always apply, see
        the security page of the docs).

        :param device_path: absolute path of a block device; recorded as
                            given, so stable ``/dev/disk/by-id`` names work
        :param wwn: target WWN ``naa.`` + 16 hex digits; None generates one
        :param nexus: I_T nexus WWN, same format; None generates one
        :param serial: the unit serial the guest sees, e.g. the volume id;
                       None generates one. Kept across restores.
        :param read_only: write-protect the LUN for the guest
        :param discard: None gives the guest discard (UNMAP) exactly when
                        the device has it, True requires it, False hides
                        it. Kept across restores.
        :returns: the :class:`~vhost_brick.endpoint.VhostEndpoint`
        :raises: InvalidDevice, DeviceNotAllowed, DeviceInUse,
                 DiscardNotSupported, InvalidWWN, InvalidNexus,
                 InvalidSerial, EndpointExists, LockTimeout,
                 KernelSupportMissing, HelperFailed, PrivsepFailed
        """
        spec, = validation.validate_endpoint_specs([{
            'device_path': device_path, 'wwn': wwn, 'nexus': nexus,
            'serial': serial, 'read_only': read_only, 'discard': discard}])
        with self._lock():
            result = endpoint.VhostEndpoint.from_dict(
                self._privileged('create', **spec))
        LOG.info('Created vhost endpoint %(wwn)s for %(device)s',
                 {'wwn': result.wwn, 'device': device_path})
        return result

    def delete_endpoint(self, wwn):
        """Delete an endpoint, its LUNs and the backstores made for it.

        An unknown WWN is logged and ignored. Backstores that vhost_brick
        did not create are left in place.

        :raises: InvalidWWN, EndpointInUse (a hypervisor holds the endpoint;
                 nothing was removed), KernelSupportMissing, HelperFailed
        """
        wwn = validation.validate_wwn(wwn)
        with self._lock():
            result = self._privileged('delete', wwn=wwn)
        if result['deleted']:
            LOG.info('Deleted vhost endpoint %s', wwn)
        else:
            LOG.info('No vhost endpoint %s to delete', wwn)

    def create_endpoints(self, specs):
        """Export many block devices, in one helper call and one lock hold.

        Each endpoint is created as :meth:`create_endpoint` would: retry
        safe and all-or-nothing. One that fails is reported in the result
        with its typed error, and the others are still created.

        :param specs: iterable of mappings with ``device_path`` and
                      optional ``wwn``, ``nexus``, ``serial``,
                      ``read_only`` and ``discard``
        :returns: :class:`~vhost_brick.endpoint.CreateReport`
        :raises: Invalid, InvalidDevice, InvalidWWN, InvalidNexus when any
                 spec is invalid or two name the same WWN or device (then
                 nothing is created); KernelSupportMissing, HelperFailed
        """
        specs = validation.validate_endpoint_specs(specs)
        if not specs:
            return endpoint.CreateReport(created=(), failed=())
        with self._lock():
            report = endpoint.CreateReport.from_dict(
                self._privileged('create-many', batch=specs))
        LOG.info('Created %(created)d vhost endpoints, %(failed)d failed',
                 {'created': len(report.created),
                  'failed': len(report.failed)})
        return report

    def delete_endpoints(self, wwns):
        """Delete many endpoints, in one helper call and one lock hold.

        Each is deleted as :meth:`delete_endpoint` would; one a hypervisor
        holds is reported in the result and the others are still deleted.

        :param wwns: iterable of target WWNs
        :returns: :class:`~vhost_brick.endpoint.DeleteReport`
        :raises: Invalid, InvalidWWN when any WWN is invalid or repeated
                 (then nothing is deleted); KernelSupportMissing,
                 HelperFailed
        """
        wwns = validation.validate_wwns(wwns)
        if not wwns:
            return endpoint.DeleteReport(deleted=(), absent=(), failed=())
        with self._lock():
            report = endpoint.DeleteReport.from_dict(
                self._privileged('delete-many', batch=wwns))
        LOG.info('Deleted %(deleted)d vhost endpoints, %(absent)d were '
                 'absent, %(failed)d failed',
                 {'deleted': len(report.deleted),
                  'absent': len(report.absent),
                  'failed': len(report.failed)})
        return report

    def get_endpoint(self, wwn):
        """Return the endpoint with this WWN.

        :raises: InvalidWWN, EndpointNotFound, KernelSupportMissing,
                 HelperFailed
        """
        wwn = validation.validate_wwn(wwn)
        return endpoint.VhostEndpoint.from_dict(
            self._privileged('show', wwn=wwn))

    def list_endpoints(self):
        """Return every vhost endpoint on the host, ours or not."""
        return [endpoint.VhostEndpoint.from_dict(data)
                for data in self._privileged('list')]

    def get_endpoint_stats(self, wwn):
        """LIO's counters of each LUN of an endpoint, for monitoring.

        Per LUN: ``commands`` received, ``read_mbytes`` and
        ``write_mbytes`` moved through the endpoint (whole MiB, as the
        kernel counts them), and the backing device's ``resets``,
        ``aborts_complete`` and ``aborts_no_task`` (task management the
        guest asked for). Counters start at zero when the endpoint is
        made, e.g. at a restore after a reboot; libvirt has no block
        statistics for a vhost hostdev.

        :returns: ``{"wwn": wwn, "luns": [{"lun": 0, "commands": ...}]}``
        :raises: InvalidWWN, EndpointNotFound, KernelSupportMissing,
                 HelperFailed
        """
        wwn = validation.validate_wwn(wwn)
        return self._privileged('stats', wwn=wwn)

    def list_endpoint_stats(self):
        """:meth:`get_endpoint_stats` of every vhost endpoint, in one call."""
        return self._privileged('list-stats')

    def restore(self):
        """Recreate the endpoints vhost_brick recorded, e.g. after a boot.

        Each comes back with its WWN, nexus, unit serial and read-only
        flag; endpoints already present and everything vhost_brick does
        not own are left alone. A device that is missing, that the policy
        now refuses, or whose identity is not the recorded one (its name
        now belongs to another disk) is reported and not exported,
        without stopping the others.

        :returns: :class:`~vhost_brick.endpoint.RestoreReport`
        """
        with self._lock():
            report = endpoint.RestoreReport.from_dict(
                self._privileged('restore'))
        LOG.info('Restored %(restored)d vhost endpoints, %(present)d were '
                 'present, %(failed)d failed',
                 {'restored': len(report.restored),
                  'present': len(report.already_present),
                  'failed': len(report.failed)})
        return report

    def cleanup(self):
        """Remove what interrupted calls of vhost_brick left behind.

        Only objects vhost_brick recognises as its own are removed.

        :returns: dict with the ``endpoints`` (WWNs) and ``backstores``
                  (names) removed
        """
        with self._lock():
            removed = self._privileged('cleanup')
        if removed['endpoints'] or removed['backstores']:
            LOG.warning('Cleaned up endpoints %(endpoints)s and backstores '
                        '%(backstores)s', removed)
        return removed

    def verify(self):
        """Report which kernel pieces vhost-scsi needs are present.

        :returns: dict of check name to bool, see ``vhost-brick-helper
                  verify``
        """
        return self._privileged('verify')

    def _lock(self):
        lock_path = (CONF.vhost_brick.lock_path or
                     CONF.oslo_concurrency.lock_path)
        return lockutils.lock(LOCK_NAME, lock_file_prefix=LOCK_PREFIX,
                              external=bool(lock_path), lock_path=lock_path)

    def _privileged(self, operation, batch=None, **arguments):
        """Run a privileged operation as root; return its plain-data result.

        :param operation: the helper's command name, e.g. ``create-many``
        :param batch: the list a batch operation takes
        :param arguments: the operation's keyword arguments; None is left
                          out
        """
        arguments = {name: value for name, value in arguments.items()
                     if value is not None}
        if (not self._explicit_execute and
                CONF.vhost_brick.privileged_mode == opts.PRIVSEP):
            return self._privsep(operation, batch, arguments)
        return self._helper(operation, batch, arguments)

    def _privsep(self, operation, batch, arguments):
        # Imported here: oslo.privsep (and eventlet) only in this mode.
        from oslo_privsep import comm
        from oslo_privsep import daemon

        from vhost_brick.privileged import entrypoints

        context = privileged.default
        if context.channel is None:
            context.root_helper = self._daemon_prefix()
        call = getattr(entrypoints, _ENTRYPOINTS.get(
            operation, operation.replace('-', '_')))
        args = () if batch is None else (batch,)
        try:
            answer = call(*args, **arguments)
        except (OSError, daemon.FailedToDropPrivileges, daemon.ProtocolError,
                comm.PrivsepTimeout) as err:
            # The daemon could not start, or died: the next call starts
            # a new one.
            raise exception.PrivsepFailed(call=operation,
                                          reason=str(err)) from err
        if 'error' in answer:
            raise exception.from_report(answer['error'])
        # msgpack hands every list back as a tuple: through JSON, the
        # answer is the same plain data the helper prints.
        return json.loads(json.dumps(answer['result']))

    def _daemon_prefix(self):
        """The command prefix that starts the privsep daemon as root.

        Root needs none, whatever ``root_helper`` says: processutils
        applies no root helper for root either, so both modes agree.
        None leaves oslo.privsep's process-wide one (``priv_context.init``,
        ``sudo`` by default), for a caller that is not root and gave no
        root helper.
        """
        if os.geteuid() == 0:
            return []
        return shlex.split(self._root_helper) if self._root_helper else None

    def _helper(self, operation, batch, arguments):
        cmd = (CONF.vhost_brick.helper_command, operation) + tuple(
            _helper_options(arguments))
        kwargs = {}
        if batch is not None:
            kwargs['process_input'] = json.dumps(batch)
        try:
            stdout, _stderr = self._execute(
                *cmd, run_as_root=True, root_helper=self._root_helper,
                **kwargs)
        except processutils.ProcessExecutionError as err:
            raise _translate(err) from err
        except processutils.NoRootWrapSpecified as err:
            raise exception.PermissionDenied(command=cmd[0]) from err
        except OSError as err:
            raise exception.HelperFailed(cmd=' '.join(cmd), exit_code=None,
                                         stderr=str(err)) from err
        try:
            return json.loads(stdout)
        except ValueError as err:
            raise exception.HelperFailed(
                cmd=' '.join(cmd), exit_code=0,
                stderr='unparsable output %r' % stdout) from err


def _helper_options(arguments):
    """The helper's options for an operation's arguments.

    True is a flag; False is the flag's negation where the helper has
    one, else left out (read_only's default).
    """
    for name, value in arguments.items():
        option = _HELPER_OPTIONS.get(name, name)
        if value is True:
            yield '--' + option
        elif value is False:
            if name in _NEGATABLE:
                yield '--no-' + option
        else:
            yield '--%s=%s' % (option, value)


def _translate(err):
    """Turn a failed helper run into the exception its exit code names."""
    cls = exception.by_exit_code(err.exit_code)
    if cls is not exception.HelperFailed:
        try:
            # The error report is the helper's last line on stderr.
            report = json.loads(err.stderr.strip().splitlines()[-1])
            return cls(**report['kwargs'])
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            LOG.warning('Helper exited %(code)s with unparsable error '
                        'output %(stderr)r',
                        {'code': err.exit_code, 'stderr': err.stderr})
    return exception.HelperFailed(cmd=err.cmd, exit_code=err.exit_code,
                                  stderr=err.stderr)
