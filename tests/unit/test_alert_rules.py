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

"""The shipped alert rules (etc/prometheus/glance-remote-alerts.yml):
promtool accepts them and passes their unit tests
(glance-remote-alerts.test.yml), which fire and spare every rule; they
read only the metrics of the contract; every rule is labelled, annotated
and points at its runbook section of the Monitoring page, whose table
lists every metric.

promtool comes with Debian's ``prometheus`` package, which .ci/run
installs; without it the promtool tests skip and say so, as the lab's
tiers do.
"""

import os
import re
import shutil
import subprocess

import testtools
import yaml

from glance_store_remote import metrics
from tests.harness import daemon
from tests.unit import promql

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FOLDER = os.path.join(ROOT, 'etc', 'prometheus')
RULES = os.path.join(FOLDER, 'glance-remote-alerts.yml')
TESTS = os.path.join(FOLDER, 'glance-remote-alerts.test.yml')
MONITORING = os.path.join(ROOT, 'doc', 'source', 'admin', 'monitoring.rst')
PROMTOOL_TIMEOUT = 120   # seconds; both runs take well under one

# Metrics the rules may read that are not ours: Prometheus' own scrape
# health and node_exporter's textfile collector (the textfile way of
# `glance-remote metrics --textfile`).
FOREIGN = frozenset({'up', 'node_textfile_mtime_seconds'})


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def rules():
    """Every alerting rule of the shipped file, in order."""
    return [rule for group in load(RULES)['groups']
            for rule in group['rules'] if 'alert' in rule]


class TestPromtool(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.promtool = shutil.which('promtool')
        if not self.promtool:
            self.skipTest(daemon.skip_reason(
                'alert rules', ['promtool (package prometheus)'],
                ['prometheus']))

    def promtool_run(self, *args):
        try:
            done = subprocess.run(
                [self.promtool] + list(args), cwd=FOLDER,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=PROMTOOL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as e:
            self.fail('promtool %s did not end within %d s: %s' % (
                ' '.join(args), PROMTOOL_TIMEOUT, e.output))
        output = done.stdout.decode('utf-8', 'replace')
        self.assertEqual(0, done.returncode, 'promtool %s failed:\n%s' % (
            ' '.join(args), output))
        return output

    def test_rules_are_valid(self):
        output = self.promtool_run('check', 'rules', RULES)
        self.assertIn('SUCCESS: %d rules found' % len(rules()), output)

    def test_rules_pass_their_unit_tests(self):
        self.promtool_run('test', 'rules', TESTS)


class TestRules(testtools.TestCase):

    def test_every_rule_is_tested_firing_and_not_firing(self):
        fired = set()
        spared = set()
        tests = load(TESTS)
        self.assertEqual([os.path.basename(RULES)], tests['rule_files'])
        for test in tests['tests']:
            for case in test.get('alert_rule_test', ()):
                (fired if case['exp_alerts'] else spared).add(
                    case['alertname'])
                for alert in case['exp_alerts']:
                    self.assertIn('exp_annotations', alert)
                    self.assertIn('severity', alert['exp_labels'])
        names = {rule['alert'] for rule in rules()}
        self.assertEqual(names, fired)
        self.assertEqual(names, spared)

    def test_rules_read_only_contract_metrics(self):
        allowed = set(metrics.SERIES) | FOREIGN
        for rule in rules():
            names = promql.metric_names(rule['expr'])
            self.assertTrue(names, rule['alert'])
            self.assertEqual(set(), names - allowed, rule['alert'])

    def test_every_rule_is_labelled_and_annotated(self):
        for rule in rules():
            self.assertIn(rule['labels']['severity'], ('warning', 'critical'))
            annotations = rule['annotations']
            self.assertEqual({'summary', 'description', 'runbook_url'},
                             set(annotations), rule['alert'])
            for text in (annotations['summary'],
                         annotations['description']):
                self.assertIn('{{ $labels.instance }}', text)
                if promql.metric_names(rule['expr']) - FOREIGN:
                    # Ours: every family has the backend label.
                    self.assertIn('{{ $labels.backend }}', text)

    def test_runbooks_are_sections_of_the_monitoring_page(self):
        with open(MONITORING) as f:
            page = f.read()
        for rule in rules():
            # A section titled with the alert's name: docutils makes its
            # anchor of the title, lower-cased.
            self.assertEqual(
                'admin/monitoring.html#' + rule['alert'].lower(),
                rule['annotations']['runbook_url'])
            title = rule['alert']
            self.assertRegex(
                page, r'\n%s\n[-~^"=]{%d,}\n' % (title, len(title)))

    def test_the_monitoring_page_lists_every_metric(self):
        # Its table is what an operator reads the rules' metrics by.
        with open(MONITORING) as f:
            listed = set(re.findall(r'^   \* - ``(glance_remote_\w+)``$',
                                    f.read(), re.MULTILINE))
        self.assertEqual(set(metrics.FAMILIES), listed)

    def test_for_durations_are_lines_of_their_own(self):
        # The lab's Prometheus (tests/harness/prometheus.py) shortens them
        # by rewriting these lines.
        with open(RULES) as f:
            text = f.read()
        lines = re.findall(r'^ +for: (\S+)$', text, re.MULTILINE)
        self.assertEqual([rule['for'] for rule in rules() if 'for' in rule],
                         lines)
