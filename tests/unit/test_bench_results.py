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

"""Unit tests of tools/bench_results.py: a section run alone replaces its
own numbers only."""

import json
import os

import fixtures
import testtools

from tools import bench_results


class TestMerge(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.folder = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                   'benchmarks')

    def read(self):
        with open(os.path.join(self.folder, 'results.json')) as f:
            return json.load(f)

    def test_a_section_replaces_its_own_numbers_only(self):
        bench_results.merge(self.folder, 'site', {'x': 1})
        bench_results.merge(self.folder, 'metrics', {'y': 2})
        path = bench_results.merge(self.folder, 'site', {'x': 3})
        self.assertEqual(os.path.join(self.folder, 'results.json'), path)
        self.assertEqual({'site': {'x': 3}, 'metrics': {'y': 2}},
                         self.read())

    def test_an_unreadable_file_is_started_anew(self):
        os.makedirs(self.folder)
        with open(os.path.join(self.folder, 'results.json'), 'w') as f:
            f.write('{not json')
        bench_results.merge(self.folder, 'site', {'x': 1})
        self.assertEqual({'site': {'x': 1}}, self.read())
