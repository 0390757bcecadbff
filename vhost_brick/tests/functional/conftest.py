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

"""Starts what takes minutes early, so that other tests run meanwhile.

HypervisorTestCase's nested guest boots for minutes under TCG with about
one core of the test VM busy; the tests collected before the class run
on the other one meanwhile. Its endpoints then exist for the rest of the
session, so the tests marked ``base.host_wide`` run first, before it
starts.
"""

_started = False


def _host_wide(item):
    return getattr(getattr(item, 'obj', None), 'host_wide', False)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not _host_wide(item))  # a stable sort


def pytest_runtest_setup(item):
    """Before the first test that is not host-wide: start the early work.

    That is, call ``boot_before_the_tests`` of every class about to run
    that has one.
    """
    global _started
    if _started or _host_wide(item):
        return
    _started = True
    for cls in dict.fromkeys(getattr(other, 'cls', None)
                             for other in item.session.items):
        boot = getattr(cls, 'boot_before_the_tests', None)
        if boot is not None:
            boot()
