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

"""The same tests with an OLDER Glance as central: Glance 30.2.0 (2025.1)
from its own virtualenv (tools/older_glance.py, built by tox), the edge on
Glance 33 with this driver. Link, hook, download, Range, resume, offline,
on-demand import, and a chain of two Glance 33 edges.

Each class below reruns a class of the other modules unchanged, only with
``central_python`` pointing at the older Glance.
"""

import os

from tests.functional import test_chain
from tests.functional import test_ondemand
from tests.functional import test_readthrough
from tests.functional import test_record_copy
from tests.functional import test_store

OLDER = os.environ.get('GSR_OLDER_CENTRAL_PYTHON')


def on_older_central(cls):
    """A subclass of test class *cls* whose central runs the older Glance."""
    class Older(cls):
        LAB = dict(cls.LAB, central_python=OLDER)

        @classmethod
        def setUpClass(klass):
            if not OLDER:
                raise klass.skipException(
                    'GSR_OLDER_CENTRAL_PYTHON is not set (tox -e functional '
                    'sets it)')
            super().setUpClass()

        def test_central_is_the_older_glance(self):
            self.assertIn('30.2.0', self.lab.central.log_text() +
                          _glance_version(OLDER))
    Older.__name__ = Older.__qualname__ = 'Older' + cls.__name__
    return Older


def _glance_version(python):
    import subprocess
    return subprocess.run(
        [python, '-c', 'import importlib.metadata as m; '
         'print(m.version("glance"))'],
        capture_output=True, text=True, timeout=60).stdout


OlderLocationAdd = on_older_central(test_store.TestLocationAdd)
OlderDownload = on_older_central(test_store.TestDownload)
OlderHitsAndMisses = on_older_central(test_readthrough.TestHitsAndMisses)
OlderFailures = on_older_central(test_readthrough.TestFailures)
OlderRecordCopy = on_older_central(test_record_copy.TestRecordCopy)
OlderOffline = on_older_central(test_record_copy.TestOffline)
OlderOnDemandImport = on_older_central(test_ondemand.TestOnDemandImport)
OlderChain = on_older_central(test_chain.TestChain)
