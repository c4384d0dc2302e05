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

"""Unit tests of the tempest tier's verdict (tests/harness/tempest_lab.py):
which failures fail the tier, and the qcow2 image it gives tempest. The tier
itself runs in tests/functional/test_tempest.py.
"""

import tempfile

from oslo_utils.imageutils import format_inspector
import testtools

from tests.harness import tempest_lab

T = 'tempest.api.image.v2.test_images.ImportImagesTest.'


def results(**statuses):
    return {T + name + '[id-1,smoke]': [status, 'why ' + name]
            for name, status in statuses.items()}


class TestVerdict(testtools.TestCase):

    def test_a_failure_on_the_edge_alone_is_a_regression(self):
        edge = results(a='fail', b='fail', c='success', d='skip')
        stock = results(a='success', b='fail', c='fail', d='skip')
        self.assertEqual({'regressions': [T + 'a'], 'shared': [T + 'b'],
                          'stock_only': [T + 'c']},
                         tempest_lab.compare(edge, stock))

    def test_a_failure_where_stock_skips_is_a_regression(self):
        self.assertEqual([T + 'a'], tempest_lab.compare(
            results(a='fail'), results(a='skip'))['regressions'])

    def test_a_test_that_never_ended_counts_as_failed(self):
        self.assertEqual(
            {'run': 3, 'passed': 1, 'skipped': 1, 'failed': 1},
            tempest_lab.summary(results(a='inprogress', b='skip',
                                        c='success', d='exists')))

    def test_the_tier_fails_on_a_regression_or_a_missing_run(self):
        clean = {'regressions': []}
        self.assertTrue(tempest_lab.passed(
            {'errors': [], 'pairs': [clean] * len(tempest_lab.PAIRS)}))
        self.assertFalse(tempest_lab.passed(
            {'errors': [], 'pairs': [clean, {'regressions': ['x']}]}))
        self.assertFalse(tempest_lab.passed({'errors': [],
                                             'pairs': [clean]}))
        self.assertFalse(tempest_lab.passed(
            {'errors': ['stock: boom'], 'pairs': [clean, clean]}))


class TestQcow2(testtools.TestCase):

    def test_the_http_qcow2_image_is_a_safe_qcow2(self):
        with tempfile.NamedTemporaryFile(suffix='.qcow2') as f:
            f.write(tempest_lab.empty_qcow2(4 * 1024 * 1024))
            f.flush()
            inspector = format_inspector.detect_file_format(f.name)
        self.assertEqual('qcow2', str(inspector))
        self.assertEqual(4 * 1024 * 1024, inspector.virtual_size)
        inspector.safety_check()
