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

"""The dashboard's picture (tools/dashboard_picture.py) draws panels the
shipped dashboard has, in units it knows, with Grafana's legends.
"""

import json

import testtools

from tests.harness import prometheus
from tools import dashboard_picture as picture


class TestDashboardPicture(testtools.TestCase):

    def test_every_drawn_panel_is_in_the_shipped_dashboard(self):
        with open(picture.DASHBOARD) as f:
            panels = {panel.get('title'): panel for panel in
                      prometheus.dashboard_panels(json.load(f))}
        for title in picture.PANELS:
            self.assertIn(title, panels)
            panel = panels[title]
            self.assertNotEqual([], prometheus.dashboard_expressions(
                {'panels': [panel]}), title)
            unit = panel.get('fieldConfig', {}).get('defaults', {}).get(
                'unit')
            if unit is not None:
                self.assertIn(unit, picture.UNITS, title)

    def test_legend_format(self):
        labels = {'instance': 'edge-1', 'backend': 'central'}
        self.assertEqual('edge-1 central',
                         picture.legend('{{instance}} {{ backend }}', labels))
        self.assertEqual(' used', picture.legend('{{node}} used', labels))
        # Without a format, the labels themselves.
        self.assertEqual('backend=central,instance=edge-1',
                         picture.legend('', labels))
