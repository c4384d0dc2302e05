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

"""Functional tests of ``glance-remote`` against the real lab: it reads the
edge's own glance-api.conf and reaches central as the driver does."""

import json

from tests.functional import base


class TestGlanceRemote(base.LabTestCase):

    def test_check_reports_the_central_endpoint(self):
        result = self.cli('check')
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn(self.lab.central.url, result.stdout)

    def test_show_prints_centrals_record_as_json(self):
        central, _ = self.make_central_image(size=2048, os_distro='cirros')
        result = self.cli('--json', 'show', central.id)
        self.assertEqual(0, result.returncode, result.stderr)
        record = json.loads(result.stdout)
        self.assertEqual(central.os_hash_value, record['os_hash_value'])
        self.assertEqual('cirros', record['os_distro'])

    def test_show_of_an_unknown_image_exits_1(self):
        result = self.cli('show', '00000000-0000-4000-8000-000000000000')
        self.assertEqual(1, result.returncode)
        self.assertIn('central has no image', result.stderr)

    def test_check_with_central_stopped_exits_1_and_says_why(self):
        self.lab.central.stop()
        result = self.cli('check')
        self.assertEqual(1, result.returncode)
        self.assertIn('unavailable', result.stderr)
        self.assertIn("'central'", result.stderr)
