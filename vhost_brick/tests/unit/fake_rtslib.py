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

"""An in-memory stand-in for the parts of rtslib-fb that vhost_brick uses.

It models what the kernel and rtslib do that matters to the backend:
a new vhost TPG gets a random nexus, the nexus can only be dropped while
the TPG has no LUN, deleting a held TPG removes its LUNs and then fails
with EBUSY, and deleting a backstore cascades to the LUNs using it.
``STATE.fail_on[step]`` makes one step raise, to test rollback.
"""

import errno
import itertools


class RTSLibError(Exception):
    pass


class RTSLibNotInCFSError(RTSLibError):
    pass


class _State:
    def __init__(self):
        self.storage = {}
        self.targets = {}
        self.held = set()
        self.fail_on = {}
        self.roots = 0
        self._serial = itertools.count(1)

    def maybe_fail(self, step):
        if step in self.fail_on:
            raise self.fail_on.pop(step)

    def random_wwn(self):
        return 'naa.5001405%09x' % next(self._serial)


STATE = _State()


def reset():
    global STATE
    STATE = _State()


class RTSRoot:
    def __init__(self):
        STATE.roots += 1

    @property
    def storage_objects(self):
        return list(STATE.storage.values())


class FabricModule:
    def __init__(self, name):
        self.name = name

    @property
    def targets(self):
        return [target for (fabric, _wwn), target in STATE.targets.items()
                if fabric == self.name]


class BlockStorageObject:
    plugin = 'block'

    def __init__(self, name, dev=None, index=None):
        if dev is None:
            if name not in STATE.storage:
                raise RTSLibNotInCFSError('Storage object block/%s not '
                                          'found' % name)
            self.__dict__ = STATE.storage[name].__dict__
            return
        if name in STATE.storage:
            raise RTSLibError('Storage object block/%s exists' % name)
        STATE.maybe_fail('storage')
        self.name = name
        self.udev_path = dev
        STATE.storage[name] = self

    def delete(self):
        for target in list(STATE.targets.values()):
            for tpg in target.tpgs:
                for lun in tpg.luns:
                    if lun._storage_object is self:
                        lun.delete()
        del STATE.storage[self.name]

    def __repr__(self):
        return '<BlockStorageObject %s>' % self.name


class FileIOStorageObject(BlockStorageObject):
    plugin = 'fileio'


class Target:
    def __init__(self, fabric, wwn, mode='any'):
        key = (fabric.name, wwn)
        if mode == 'lookup':
            if key not in STATE.targets:
                raise RTSLibNotInCFSError('No such Target in configfs')
            self.__dict__ = STATE.targets[key].__dict__
            return
        if key in STATE.targets:
            raise RTSLibError('This Target already exists in configFS')
        STATE.maybe_fail('target')
        self.fabric = fabric.name
        self.wwn = wwn
        self._tpgs = {}
        STATE.targets[key] = self

    @property
    def tpgs(self):
        return list(self._tpgs.values())

    def delete(self):
        for tpg in self.tpgs:
            tpg.delete()
        STATE.maybe_fail('delete_target')
        del STATE.targets[(self.fabric, self.wwn)]

    def __repr__(self):
        return '<Target %s>' % self.wwn


class TPG:
    def __init__(self, target, tag, mode='any'):
        STATE.maybe_fail('tpg')
        self.target = target
        self.tag = tag
        self.path = '/fake/%s/%s/tpgt_%d' % (target.fabric, target.wwn, tag)
        self._nexus = STATE.random_wwn()
        self._luns = {}
        target._tpgs[tag] = self

    @property
    def luns(self):
        return list(self._luns.values())

    @property
    def nexus(self):
        return self._nexus

    @nexus.setter
    def nexus(self, value):
        if self._nexus:
            raise RTSLibError("The TPG's nexus initiator WWN is already set")
        STATE.maybe_fail('nexus')
        self._nexus = value

    def delete(self):
        for lun in self.luns:
            lun.delete()
        if self.target.wwn in STATE.held:
            raise OSError(errno.EBUSY, 'Device or resource busy')
        del self.target._tpgs[self.tag]


class LUN:
    def __init__(self, tpg, lun, storage_object):
        STATE.maybe_fail('lun')
        self.tpg = tpg
        self.lun = lun
        self.path = '%s/lun/lun_%d' % (tpg.path, lun)
        self._storage_object = storage_object
        tpg._luns[lun] = self

    @property
    def storage_object(self):
        if self._storage_object is None:
            raise RTSLibError('Broken LUN in configFS, no storage object')
        return self._storage_object

    def break_link(self):
        """What a helper killed between LUN mkdir and symlink leaves."""
        self._storage_object = None

    def delete(self):
        STATE.maybe_fail('delete_lun')
        del self.tpg._luns[self.lun]


def fwrite(path, value):
    for target in STATE.targets.values():
        for tpg in target.tpgs:
            if path == tpg.path + '/nexus' and value == 'NULL':
                if tpg.luns:
                    raise OSError(errno.EBUSY, 'Device or resource busy')
                tpg._nexus = ''
                return
    raise AssertionError('unexpected fwrite(%r, %r)' % (path, value))


class utils:
    RTSLibError = RTSLibError
    RTSLibNotInCFSError = RTSLibNotInCFSError
    fwrite = staticmethod(fwrite)


def snapshot():
    """Everything in the fake configfs, for before/after comparisons."""
    return {
        'storage': sorted((s.plugin, s.name, s.udev_path)
                          for s in STATE.storage.values()),
        'targets': sorted(
            (t.fabric, t.wwn, tpg.tag, tpg.nexus,
             tuple(sorted((lun.lun, lun._storage_object and
                           lun._storage_object.name) for lun in tpg.luns)))
            for t in STATE.targets.values() for tpg in t.tpgs),
    }
