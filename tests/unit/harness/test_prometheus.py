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

"""Unit tests of the lab Prometheus' preparation (tests/harness/
prometheus.py): the shipped rules reach it with only their ``for:``
shortened, and a dashboard's queries with Grafana's variables filled in.
"""

import textwrap

import testtools
import yaml

from tests.harness import prometheus

RULES = textwrap.dedent('''\
    groups:
      - name: edge
        interval: 1m
        rules:
          - alert: Down
            expr: glance_remote_central_up == 0
            for: 5m
            labels:
              severity: critical
            annotations:
              summary: "down on {{ $labels.instance }}"
          - alert: Failures
            expr: increase(glance_remote_verification_failures_total[1h]) > 0
          - record: backend:hits:rate5m
            expr: sum by (backend) (rate(glance_remote_requests_total[5m]))
    ''')


class TestLabRules(testtools.TestCase):

    def test_every_for_is_shortened_and_nothing_else_changes(self):
        original = yaml.safe_load(RULES)
        rewritten = yaml.safe_load(prometheus.lab_rules(RULES, '5s'))
        rules = rewritten['groups'][0]['rules']
        self.assertEqual('5s', rules[0]['for'])
        # A rule without a ``for:`` gets none.
        self.assertNotIn('for', rules[1])
        self.assertNotIn('interval', rewritten['groups'][0])
        rules[0]['for'] = '5m'
        original['groups'][0].pop('interval')
        self.assertEqual(original, rewritten)

    def test_rule_expressions(self):
        self.assertEqual(
            [('Down', 'glance_remote_central_up == 0'),
             ('Failures',
              'increase(glance_remote_verification_failures_total[1h]) > 0'),
             ('backend:hits:rate5m',
              'sum by (backend) (rate(glance_remote_requests_total[5m]))')],
            prometheus.rule_expressions(RULES))

    def test_the_shipped_rules_load(self):
        with open(prometheus.RULES) as f:
            text = f.read()
        names = [name for name, _ in prometheus.rule_expressions(text)]
        self.assertIn('GlanceRemoteCentralUnreachable', names)
        shortened = yaml.safe_load(prometheus.lab_rules(text))
        self.assertEqual({prometheus.LAB_FOR}, {
            rule['for'] for group in shortened['groups']
            for rule in group['rules'] if 'for' in rule})


class TestDashboardQueries(testtools.TestCase):

    def test_variables_of_every_spelling_are_replaced(self):
        self.assertEqual(
            'sum by (backend) (rate(glance_remote_requests_total'
            '{backend=~".+", instance=~".+"}[15s])) '
            '/ 2s + increase(x[1m])',
            prometheus.grafana_query(
                'sum by (backend) (rate(glance_remote_requests_total'
                '{backend=~"$backend", instance=~"${instance:regex}"}'
                '[$__rate_interval])) / [[__interval]] + '
                'increase(x[$__range])'))

    def test_an_unknown_variable_is_named(self):
        error = self.assertRaises(KeyError, prometheus.grafana_query,
                                  'up{site="$site"}')
        self.assertIn('$site', str(error))

    def test_an_override_wins(self):
        self.assertEqual('up{backend=~"central"}', prometheus.grafana_query(
            'up{backend=~"$backend"}', {'$backend': 'central'}))

    def test_targets_of_panels_in_collapsed_rows_are_found(self):
        dashboard = {'panels': [
            {'title': 'Hit ratio', 'targets': [{'expr': 'a'}, {'expr': 'b'}]},
            {'title': 'Site', 'type': 'row', 'panels': [
                {'title': 'Members', 'targets': [{'expr': 'c'}]}]},
            {'title': 'Notes', 'type': 'text'},
            {'title': 'Empty', 'targets': [{'refId': 'A'}]},
        ]}
        self.assertEqual(
            [('Hit ratio', 'a'), ('Hit ratio', 'b'), ('Members', 'c')],
            prometheus.dashboard_expressions(dashboard))

    def test_variables_filled_by_label_values(self):
        dashboard = {'templating': {'list': [
            {'name': 'datasource', 'type': 'datasource',
             'query': 'prometheus'},
            {'name': 'backend', 'type': 'query',
             'query': 'label_values(glance_remote_cache_capacity_bytes, '
                      'backend)'},
            {'name': 'instance', 'type': 'query', 'query': {
                'query': 'label_values(up{backend=~"$backend"}, instance)',
                'refId': 'A'}},
            {'name': 'window', 'type': 'custom', 'query': '5m,1h'},
        ]}}
        self.assertEqual(
            [('backend', 'glance_remote_cache_capacity_bytes', 'backend'),
             ('instance', 'up{backend=~"$backend"}', 'instance')],
            prometheus.dashboard_label_queries(dashboard))
