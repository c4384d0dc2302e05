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

"""The tempest tier inside the functional run: tempest 47's image API
tests and glance-tempest-plugin's RBAC tests against the edge and a stock
Glance behind one real Keystone (tests/harness/tempest_lab.py). It fails when a
test fails on the edge and not on stock; failures both share are attached
to the result by name. Tempest lives in a virtualenv that
tools/tempest_env.py builds once under .tox (``tox -e functional`` and
``tox -e tempest`` do it and set ``GSR_TEMPEST_PYTHON``).
"""

import os

import testtools
from testtools import content

from tests.harness import site
from tests.harness import tempest_lab

TEMPEST = os.environ.get('GSR_TEMPEST_PYTHON')


class TestTempest(testtools.TestCase):

    def test_no_tempest_test_fails_on_the_edge_that_passes_on_stock(self):
        if not TEMPEST or not os.path.exists(TEMPEST):
            self.skipTest('GSR_TEMPEST_PYTHON is not set (tox -e functional '
                          'builds tempest 47 in .tox/tempest-47)')
        missing = site.unavailable_reason(('mariadbd', 'mariadb-install-db'))
        if missing:
            self.skipTest('TEMPEST TIER SKIPPED (it needs MariaDB): %s'
                          % missing)
        report = tempest_lab.run_tier(TEMPEST)
        self.addCleanup(tempest_lab.shutil.rmtree, report['folder'],
                        ignore_errors=True)
        text = tempest_lab.report_text(report)
        self.addDetail('tempest-tier', content.text_content(text))
        self.assertTrue(tempest_lab.passed(report), text)
        # The tier ran Glance's tests, not a selection that matched none.
        self.assertGreater(report['pairs'][0]['edge']['passed'], 100, text)
