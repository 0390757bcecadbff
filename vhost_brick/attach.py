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

"""How a hypervisor attaches an endpoint: os-brick, libvirt and QEMU forms.

One QEMU ``vhost-scsi-pci`` device (one libvirt ``scsi_host`` hostdev)
owns a whole WWN: the guest sees every TPG as a SCSI target and every LUN
under it. QEMU's vhost-scsi device blocks live migration unless it is
``migratable``; set it only where the destination host makes the same
endpoint of the same shared device (see :func:`libvirt_migratable_xml`).
"""

import re
import xml.etree.ElementTree as ElementTree

from vhost_brick import exception
from vhost_brick import validation


DRIVER_VOLUME_TYPE = 'vhost'
#: How many I/O queues the running kernel's vhost_scsi gives a device.
MAX_IO_VQS = '/sys/module/vhost_scsi/parameters/max_io_vqs'
# vhost_scsi's default for max_io_vqs, and the most it accepts
# (VHOST_SCSI_MAX_IO_VQS), in Linux 6.1 and 6.12 alike.
_DEFAULT_IO_VQS = 128
_MOST_IO_VQS = 1024
LIBVIRT_MODELS = ('virtio', 'virtio-transitional', 'virtio-non-transitional')
_QEMU_ID_RE = re.compile(r'[A-Za-z][A-Za-z0-9._-]{0,127}\Z')
_PCI_ADDR_RE = re.compile(r'(0x)?[0-9a-fA-F]{1,2}(\.[0-7])?\Z')
#: libvirt's namespace for QEMU command-line passthrough.
QEMU_XML_NAMESPACE = 'http://libvirt.org/schemas/domain/qemu/1.0'
#: The QEMU global that makes every vhost-scsi-pci device of a QEMU
#: migratable, a device hot-plugged later included.
MIGRATABLE_GLOBAL = 'vhost-scsi-pci.migratable=on'
# Written as libvirt writes it: "qemu:", not ElementTree's "ns0:".
ElementTree.register_namespace('qemu', QEMU_XML_NAMESPACE)
# libvirt keeps a device alias the user gives only with this prefix
# (Nova's make_libvirt_device_alias: "ua-<volume id>").
_LIBVIRT_ALIAS_RE = re.compile(r'ua-[a-zA-Z0-9_.-]+\Z')

# QEMU vhost-scsi-pci properties: name -> (check, description).
_QEMU_INT_PROPERTIES = {
    # VIRTIO_QUEUE_MAX (1024) less the control and event queues.
    'num_queues': (lambda v: 1 <= v <= 1022, 'an integer in 1..1022'),
    'virtqueue_size': (lambda v: 4 <= v <= 1024 and not v & (v - 1),
                       'a power of two in 4..1024'),
    # vhost_scsi accepts TPG tags below VHOST_SCSI_MAX_TARGET (256).
    'boot_tpgt': (lambda v: 0 <= v <= 255, 'an integer in 0..255'),
    'max_sectors': (lambda v: 1 <= v <= 0xFFFF, 'an integer in 1..65535'),
    'cmd_per_lun': (lambda v: 1 <= v <= 0xFFFF, 'an integer in 1..65535'),
}


def _invalid(reason):
    return exception.Invalid(reason=reason)


def _wwpn(endpoint):
    return validation.validate_wwn(endpoint.wwn)


def max_io_queues():
    """The I/O queues this host's vhost_scsi gives a vhost-scsi device.

    ``vhost_scsi.max_io_vqs``, which the kernel clamps to 1..1024; its
    default (128) while the module is not loaded. QEMU gives a device as
    many queues as the guest has vCPUs, and one with more queues than
    this fails to start its vhost device.
    """
    try:
        with open(MAX_IO_VQS) as parameter:
            configured = int(parameter.read())
    except (OSError, ValueError):
        return _DEFAULT_IO_VQS
    return min(max(configured, 1), _MOST_IO_VQS)


def connection_info(endpoint, lun=None):
    """os-brick/Cinder style connection_info for an endpoint.

    ``data`` carries what a consumer needs to attach it (``wwpn``,
    ``tpgt``, ``lun``) and to find its backing device again, and
    ``discard``: whether the guest may discard, as Cinder reports it.

    :param lun: the LUN this volume is; defaults to the endpoint's first
    """
    if not endpoint.luns:
        raise _invalid('endpoint %s has no LUN' % endpoint.wwn)
    luns = {item.lun: item for item in endpoint.luns}
    chosen = endpoint.luns[0] if lun is None else luns.get(lun)
    if chosen is None:
        raise _invalid('endpoint %s has no LUN %r' % (endpoint.wwn, lun))
    return {'driver_volume_type': DRIVER_VOLUME_TYPE,
            'data': {'wwpn': _wwpn(endpoint), 'tpgt': endpoint.tpgt,
                     'lun': chosen.lun, 'nexus': endpoint.nexus,
                     'device_path': chosen.device_path,
                     'backstore': chosen.backstore,
                     'discard': chosen.discard}}


def qemu_device_args(endpoint, device_id=None, bus=None, addr=None,
                     migratable=None, vcpus=None, **properties):
    """QEMU command-line arguments attaching the endpoint.

    :param device_id: QEMU ``id=`` of the device
    :param bus: id of the PCI bus to plug into
    :param addr: PCI slot[.function], e.g. ``'0x7'`` or ``'07.0'``
    :param migratable: set QEMU's ``migratable`` (True lifts the
                       migration blocker; the destination must have the
                       same endpoint)
    :param vcpus: the guest's vCPU count; without ``num_queues`` the
                  device gets one queue per vCPU, at most
                  :func:`max_io_queues`
    :param properties: ``num_queues`` (at most :func:`max_io_queues`),
                       ``virtqueue_size``, ``boot_tpgt``, ``max_sectors``,
                       ``cmd_per_lun``
    :returns: ``['-device', 'vhost-scsi-pci,wwpn=...']``
    :raises: :class:`~vhost_brick.exception.Invalid`
    """
    options = ['vhost-scsi-pci', 'wwpn=' + _wwpn(endpoint)]
    if vcpus is not None:
        if type(vcpus) is not int or vcpus < 1:
            raise _invalid('vcpus must be a positive integer, not %r'
                           % (vcpus,))
    # Read once: the kernel's limit, where queues are asked for.
    queue_limit = max_io_queues() if (
        vcpus is not None or 'num_queues' in properties) else None
    if vcpus is not None:
        properties.setdefault('num_queues', min(vcpus, queue_limit))
    for name, value in sorted(properties.items()):
        if name not in _QEMU_INT_PROPERTIES:
            raise _invalid('unknown vhost-scsi-pci property %r' % name)
        check, expected = _QEMU_INT_PROPERTIES[name]
        if type(value) is not int or not check(value):
            raise _invalid('%s must be %s, not %r' % (name, expected, value))
        options.append('%s=%d' % (name, value))
    if queue_limit is not None and properties['num_queues'] > queue_limit:
        raise _invalid('num_queues %d is more than the %d I/O queues this '
                       "host's vhost_scsi gives a device (its max_io_vqs)"
                       % (properties['num_queues'], queue_limit))
    if migratable is not None:
        if not isinstance(migratable, bool):
            raise _invalid('migratable must be a bool')
        options.append('migratable=%s' % ('on' if migratable else 'off'))
    for name, value, pattern in (('id', device_id, _QEMU_ID_RE),
                                 ('bus', bus, _QEMU_ID_RE),
                                 ('addr', addr, _PCI_ADDR_RE)):
        if value is not None:
            if not isinstance(value, str) or not pattern.match(value):
                raise _invalid('bad QEMU %s %r' % (name, value))
            options.append('%s=%s' % (name, value))
    return ['-device', ','.join(options)]


def libvirt_hostdev_xml(endpoint, model=None, address=None, alias=None):
    """The libvirt ``<hostdev>`` element attaching the endpoint, as text.

    :param endpoint: a :class:`~vhost_brick.endpoint.VhostEndpoint`, or
                     anything else with its ``wwn``
    :param model: ``virtio``, ``virtio-transitional`` or
                  ``virtio-non-transitional``
    :param address: dict of ``<address>`` attributes, ``type`` ``pci``
                    (``domain``, ``bus``, ``slot``, ``function``) or
                    ``ccw`` (``cssid``, ``ssid``, ``devno``)
    :param alias: the device's user alias, ``ua-`` and letters, digits,
                  ``_``, ``.`` or ``-``, by which libvirt finds it (and
                  Nova finds a volume's device: ``ua-<volume id>``)
    :raises: :class:`~vhost_brick.exception.Invalid`
    """
    hostdev = ElementTree.Element(
        'hostdev', {'mode': 'subsystem', 'type': 'scsi_host'})
    if model is not None:
        if model not in LIBVIRT_MODELS:
            raise _invalid('libvirt model must be one of %s, not %r'
                           % (', '.join(LIBVIRT_MODELS), model))
        hostdev.set('model', model)
    ElementTree.SubElement(hostdev, 'source',
                           {'protocol': 'vhost', 'wwpn': _wwpn(endpoint)})
    if alias is not None:
        if not isinstance(alias, str) or not _LIBVIRT_ALIAS_RE.match(alias):
            raise _invalid('libvirt alias must be "ua-" and letters, '
                           'digits, "_", "." or "-", not %r' % (alias,))
        ElementTree.SubElement(hostdev, 'alias', {'name': alias})
    if address is not None:
        ElementTree.SubElement(hostdev, 'address', _address(address))
    return ElementTree.tostring(hostdev, encoding='unicode')


_ADDRESS_FIELDS = {
    'pci': {'domain': 0xFFFF, 'bus': 0xFF, 'slot': 0x1F, 'function': 0x7},
    'ccw': {'cssid': 0xFE, 'ssid': 0x3, 'devno': 0xFFFF},
}


def _address(address):
    address = dict(address)
    kind = address.pop('type', None)
    if kind not in _ADDRESS_FIELDS:
        raise _invalid('address type must be pci or ccw, not %r' % kind)
    fields = _ADDRESS_FIELDS[kind]
    unknown = set(address) - set(fields)
    if unknown:
        raise _invalid('unknown %s address fields %s'
                       % (kind, ', '.join(sorted(unknown))))
    attributes = {'type': kind}
    for name, value in address.items():
        if type(value) is not int or not 0 <= value <= fields[name]:
            raise _invalid('%s address %s must be an integer in 0..%#x, '
                           'not %r' % (kind, name, fields[name], value))
        width = 4 if name in ('domain', 'devno') else (
            1 if name in ('function', 'ssid') else 2)
        attributes[name] = '0x%0*x' % (width, value)
    return attributes


def _qemu_tag(name):
    return '{%s}%s' % (QEMU_XML_NAMESPACE, name)


def _migratable_args(domain):
    """The QEMU arguments passed through in a parsed domain's XML."""
    return [arg.get('value') for line in domain.findall(
        _qemu_tag('commandline')) for arg in line.findall(_qemu_tag('arg'))]


def libvirt_domain_migratable(domain_xml):
    """Whether a libvirt domain makes its vhost-scsi devices migratable.

    True if its XML passes ``-global`` :data:`MIGRATABLE_GLOBAL` to QEMU,
    as :func:`libvirt_migratable_xml` writes it.

    :raises: :class:`~vhost_brick.exception.Invalid` for XML that is not
             a domain
    """
    return _has_migratable_global(_parse_domain(domain_xml))


def _has_migratable_global(domain):
    args = _migratable_args(domain)
    return any(first == '-global' and second == MIGRATABLE_GLOBAL
               for first, second in zip(args, args[1:]))


def libvirt_migratable_xml(domain_xml):
    """The libvirt domain XML with its vhost-scsi devices migratable.

    libvirt has no element for QEMU's ``migratable`` property; this adds
    ``<qemu:commandline>`` passing ``-global`` :data:`MIGRATABLE_GLOBAL`,
    which holds for devices present when QEMU starts and for devices
    hot-plugged later alike (a ``<qemu:override>`` of a device's
    property holds only for devices present at start). Its costs: libvirt
    marks the domain tainted (``custom-argv``), and the setting is
    domain-wide. Only where every vhost volume of the domain is on a
    device the migration's destination can export too.

    :returns: the XML as text, unchanged if already migratable
    :raises: :class:`~vhost_brick.exception.Invalid` for XML that is not
             a domain
    """
    domain = _parse_domain(domain_xml)
    if _has_migratable_global(domain):
        return domain_xml
    commandline = ElementTree.SubElement(domain, _qemu_tag('commandline'))
    for value in ('-global', MIGRATABLE_GLOBAL):
        ElementTree.SubElement(commandline, _qemu_tag('arg'),
                               {'value': value})
    return ElementTree.tostring(domain, encoding='unicode')


def _parse_domain(domain_xml):
    try:
        domain = ElementTree.fromstring(domain_xml)
    except (ElementTree.ParseError, TypeError) as error:
        raise _invalid('not libvirt domain XML: %s' % error) from error
    if domain.tag != 'domain':
        raise _invalid('not libvirt domain XML: its root is <%s>'
                       % domain.tag)
    return domain
