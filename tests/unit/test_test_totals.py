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

"""Unit tests of tools/test_totals.py, which makes CI's closing line
(``N passed, N failed, N skipped``) from the stestr repository: the line
is never better than the truth, and no test run is a failure.
"""

import io
import os
import subprocess
import sys
import unittest

import fixtures
import subunit
import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, 'tools', 'test_totals.py')


class _Sample(testtools.TestCase):
    """Cases whose outcomes make a run of the repository (not named test_*,
    so that no loader runs them as this module's own tests).
    """

    def passes(self):
        pass

    def fails(self):
        self.fail('as planned')

    def errs(self):
        raise RuntimeError('as planned')

    def skips(self):
        self.skipTest('as planned')


def _run(names):
    """A subunit v1 stream, as stestr stores a run, of _Sample's *names*."""
    stream = io.BytesIO()
    result = subunit.TestProtocolClient(stream)
    suite = unittest.TestSuite(_Sample(name) for name in names)
    suite.run(result)
    return stream.getvalue()


class TestTotals(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.repository = self.useFixture(fixtures.TempDir()).path

    def store(self, index, names):
        with open(os.path.join(self.repository, str(index)), 'wb') as f:
            f.write(_run(names))

    def totals(self):
        done = subprocess.run([sys.executable, TOOL, self.repository],
                              capture_output=True, text=True, timeout=60)
        return done.stdout.strip(), done.returncode

    def test_every_run_is_summed(self):
        self.store(0, ['passes', 'skips'])
        self.store(1, ['passes', 'passes'])
        self.assertEqual(('3 passed, 0 failed, 1 skipped', 0), self.totals())

    def test_failures_and_errors_count_and_fail_the_line(self):
        self.store(0, ['passes', 'fails', 'errs'])
        self.assertEqual(('1 passed, 2 failed, 0 skipped', 1), self.totals())

    def test_no_test_at_all_is_a_failure(self):
        self.assertEqual(('0 passed, 0 failed, 0 skipped', 1), self.totals())
        self.repository = os.path.join(self.repository, 'absent')
        self.assertEqual(('0 passed, 0 failed, 0 skipped', 1), self.totals())
