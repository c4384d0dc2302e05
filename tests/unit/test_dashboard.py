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

"""The shipped Grafana dashboard (etc/grafana/glance-remote.json): its
queries name only metrics of the contract and are PromQL that Prometheus
parses once Grafana's variables are filled in (promtool checks them as
recording rules), and its variables are those its queries use. The lab
(tests/functional/test_monitoring.py) runs the same queries against a real
Prometheus.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

import testtools
import yaml

from glance_store_remote import metrics
from tests.harness import daemon
from tests.unit import promql

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, 'etc', 'grafana', 'glance-remote.json')
PROMTOOL_TIMEOUT = 120   # seconds
# What Grafana puts in place of its variables, as a query would get them.
VALUES = {'$backend': 'central', '$instance': '.*',
          '$__rate_interval': '1m', '$__interval': '15s', '$__range': '1h'}


def load():
    with open(DASHBOARD) as f:
        return json.load(f)


def panels(dashboard):
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard['panels']:
        yield panel
        yield from panel.get('panels', ())


def queries(dashboard):
    """(panel title, expression) of every query of the dashboard."""
    return [(panel['title'], target['expr'])
            for panel in panels(dashboard)
            for target in panel.get('targets', ())]


def filled(expr):
    """*expr* with Grafana's variables replaced, the longest name first
    (no name is replaced inside a longer one).
    """
    for name in sorted(VALUES, key=len, reverse=True):
        expr = expr.replace(name, VALUES[name])
    return expr


class TestDashboard(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dashboard = load()

    def test_queries_read_only_contract_metrics(self):
        read = set()
        for title, expr in queries(self.dashboard):
            names = promql.metric_names(expr)
            self.assertTrue(names, title)
            self.assertEqual(set(), names - set(metrics.SERIES), title)
            read |= names
        # Every family of the contract is on the dashboard (a histogram
        # by any of its series).
        shown = {re.sub(r'_(bucket|count|sum)$', '', name) for name in read}
        self.assertEqual(set(metrics.FAMILIES), shown)

    def test_queries_use_only_known_variables(self):
        variables = {'$' + v['name']
                     for v in self.dashboard['templating']['list']}
        for title, expr in queries(self.dashboard):
            used = set(re.findall(r'\$\w+', expr))
            self.assertEqual(set(), used - set(VALUES), title)
            self.assertNotIn('$', filled(expr), title)
        self.assertEqual({'$datasource', '$backend', '$instance'}, variables)

    def test_panels_read_the_chosen_data_source(self):
        for panel in panels(self.dashboard):
            if panel['type'] == 'row':
                continue
            for part in [panel] + panel['targets']:
                self.assertEqual(
                    {'type': 'prometheus', 'uid': '${datasource}'},
                    part['datasource'], panel['title'])

    def test_queries_are_promql(self):
        promtool = shutil.which('promtool')
        if not promtool:
            self.skipTest(daemon.skip_reason(
                'dashboard queries', ['promtool (package prometheus)'],
                ['prometheus']))
        rules = {'groups': [{'name': 'dashboard', 'rules': [
            {'record': 'dashboard:query:%d' % i, 'expr': filled(expr)}
            for i, (_, expr) in enumerate(queries(self.dashboard))]}]}
        with tempfile.NamedTemporaryFile('w', suffix='.yml') as f:
            yaml.safe_dump(rules, f)
            f.flush()
            done = subprocess.run(
                [promtool, 'check', 'rules', f.name],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=PROMTOOL_TIMEOUT, check=False)
        output = done.stdout.decode('utf-8', 'replace')
        self.assertEqual(0, done.returncode, output)
        self.assertIn('SUCCESS: %d rules found' % len(rules['groups'][0][
            'rules']), output)


class TestMetricNames(testtools.TestCase):
    """The lexical reading the two tests above rely on."""

    def test_matchers_ranges_groupings_and_functions_are_not_names(self):
        self.assertEqual(
            {'glance_remote_requests_total', 'glance_remote_bytes_total'},
            promql.metric_names(
                'sum by (backend, result) (rate(glance_remote_requests_total'
                '{result="hit", instance=~"$instance"}[$__rate_interval]))'
                ' / on (backend) group_left () '
                'sum without (source) (glance_remote_bytes_total'
                ' offset 5m) > 1e3 and bool 0.5'))

    def test_histogram_quantile(self):
        self.assertEqual(
            {'glance_remote_fill_duration_seconds_bucket'},
            promql.metric_names(
                'histogram_quantile(0.9, sum by (le) (rate('
                'glance_remote_fill_duration_seconds_bucket[5m])))'))
