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

"""Exceptions raised by vhost_brick, and the helper exit codes they map to."""

import functools
import logging


LOG = logging.getLogger(__name__)


class VhostBrickException(Exception):
    """Base class: formats the class-level ``message`` from keyword args.

    When the keyword arguments do not fit the template the problem is
    logged and the bare template is used, so raising never fails.
    """

    message = "An unknown vhost_brick error occurred."
    #: Exit status of the privileged helper when it reports this error.
    helper_exit_code = 1

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if not message:
            try:
                message = self.message % kwargs
            except (KeyError, TypeError, ValueError):
                LOG.exception('Exception message %r does not fit %r',
                              self.message, kwargs)
                message = self.message
        self.msg = message
        super().__init__(message)

    def __reduce__(self):
        return functools.partial(type(self), self.msg, **self.kwargs), ()


class Invalid(VhostBrickException):
    message = "Invalid input: %(reason)s"
    helper_exit_code = 10


class InvalidDevice(Invalid):
    message = "Invalid device %(device)r: %(reason)s"
    helper_exit_code = 11


class InvalidWWN(Invalid):
    message = "Invalid WWN %(wwn)r: %(reason)s"
    helper_exit_code = 12


class InvalidNexus(InvalidWWN):
    message = "Invalid nexus WWN %(wwn)r: %(reason)s"
    helper_exit_code = 13


class InvalidConnector(Invalid):
    message = "Connector %(connector)s cannot attach over vhost: %(reason)s"
    helper_exit_code = 15


class InvalidArgument(Invalid):
    message = "Invalid helper arguments: %(reason)s"
    helper_exit_code = 14


class InvalidSerial(Invalid):
    message = "Invalid unit serial %(serial)r: %(reason)s"
    helper_exit_code = 16


class SerialInUse(InvalidSerial):
    message = ("Unit serial %(serial)r would give the guest the identity "
               "%(designator)s, which LIO storage object %(owner)s gives "
               "already: LIO derives it from the first 25 hex digits of "
               "the serial")
    helper_exit_code = 19


class DeviceNotAllowed(InvalidDevice):
    message = "Device %(device)r is refused by rule %(rule)s: %(reason)s"
    helper_exit_code = 17


class DiscardNotSupported(InvalidDevice):
    message = ("Device %(device)r has no discard (UNMAP) to give the guest: "
               "%(reason)s")
    helper_exit_code = 18


class EndpointNotFound(VhostBrickException):
    message = "No vhost endpoint with WWN %(wwn)s."
    helper_exit_code = 20


class EndpointExists(VhostBrickException):
    message = "vhost endpoint %(wwn)s already exists: %(reason)s"
    helper_exit_code = 21


class DeviceInUse(DeviceNotAllowed):
    message = "Device %(device)s is in use (rule %(rule)s): %(reason)s"
    helper_exit_code = 22


class EndpointInUse(VhostBrickException):
    message = ("vhost endpoint %(wwn)s is held by a hypervisor; detach it "
               "from the guest before deleting it.")
    helper_exit_code = 23


class EndpointNotOwned(VhostBrickException):
    message = ("vhost endpoint %(wwn)s cannot be removed here: %(path)s "
               "belongs to uid %(uid)d and is not writable by the caller "
               "(libvirt's dynamic_ownership gives a target's directory to "
               "QEMU's user while a domain uses it, and back after). No "
               "hypervisor holds the endpoint now: give the directory back "
               "to root (chown root:root %(path)s) and delete again.")
    helper_exit_code = 25


class KernelSupportMissing(VhostBrickException):
    message = "Kernel support for vhost-scsi is missing: %(reason)s"
    helper_exit_code = 30


class LockTimeout(VhostBrickException):
    message = ("Gave up after %(timeout)s s waiting for the host lock "
               "%(path)s, held by %(holder)s.")
    helper_exit_code = 24


class PermissionDenied(VhostBrickException):
    message = ("%(command)s must run as root; pass a root_helper such as "
               "'sudo vhost-brick-rootwrap /etc/vhost-brick/rootwrap.conf'.")
    helper_exit_code = 31


class BackendError(VhostBrickException):
    message = "LIO configuration failed: %(reason)s"


class HelperFailed(VhostBrickException):
    message = ("Helper command %(cmd)s failed with exit code %(exit_code)s: "
               "%(stderr)s")

    @property
    def cmd(self):
        return self.kwargs.get('cmd')

    @property
    def stderr(self):
        return self.kwargs.get('stderr')

    @property
    def exit_code(self):
        return self.kwargs.get('exit_code')


class PrivsepFailed(VhostBrickException):
    message = ("Privileged call %(call)s could not be made through the "
               "privsep daemon: %(reason)s")


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def by_exit_code(exit_code):
    """Return the exception class a helper exit code stands for.

    Unknown codes and the generic code 1 map to :class:`HelperFailed`.
    """
    if exit_code != VhostBrickException.helper_exit_code:
        for cls in _subclasses(VhostBrickException):
            if cls.helper_exit_code == exit_code:
                return cls
    return HelperFailed


_JSON_SCALARS = (str, int, float, bool, type(None))


def to_report(err):
    """The JSON-able form in which the helper reports an error."""
    return {'error': type(err).__name__, 'message': err.msg,
            'kwargs': {key: value if isinstance(value, _JSON_SCALARS)
                       else str(value) for key, value in err.kwargs.items()}}


def from_report(report):
    """Rebuild the exception of a :func:`to_report` dict.

    An unknown class name becomes :class:`BackendError`, with the
    helper's message kept.
    """
    classes = {cls.__name__: cls for cls in _subclasses(VhostBrickException)}
    cls = classes.get(report['error'], BackendError)
    return cls(report['message'], **report['kwargs'])
