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

"""The lab's monitoring: a REAL Prometheus (Debian's ``prometheus``
binary) scraping ``glance-remote exporter`` sidecars, for the monitoring
tier (tests/functional/test_monitoring.py).

Prometheus runs as every part of the lab runs (tests.harness.daemon): a
child of the test process on a free loopback port, its own configuration
and TSDB in the directory its caller gives, stopped by its PID's group.
It scrapes and evaluates every second, and loads the shipped alert rules
(``etc/prometheus/``) with every ``for:`` shortened, so that an alert
reaches ``firing`` within seconds; nothing else of the rules changes.

The helpers here query its HTTP API (``/api/v1/query``, ``/api/v1/alerts``)
and wait, within a bounded time, for a value a test expects: a scrape
lands up to a second after what a test did.
"""

import os
import re
import shutil
import time

import requests
import yaml

from tests.harness import daemon
from tests.harness import lab as lab_module
from tests.harness import site as site_module

HOST = daemon.HOST
PACKAGES = ('prometheus',)
RULES_DIR = os.path.join(lab_module.PROJECT_ROOT, 'etc', 'prometheus')
# The shipped alert rules (etc/prometheus/; the others there are promtool's
# unit tests of them).
RULES = os.path.join(RULES_DIR, 'glance-remote-alerts.yml')
DASHBOARDS_DIR = os.path.join(lab_module.PROJECT_ROOT, 'etc', 'grafana')

INTERVAL = '1s'       # scrape and rule evaluation interval of the lab
LAB_FOR = '5s'        # every alert's ``for:`` in the lab
WAIT_TIMEOUT = 30     # seconds for a query to reach an expected value

# Values the lab gives the variables of a Grafana dashboard's queries:
# every backend and instance, and the lab's short ranges (a rate needs at
# least two scrapes in its range).
GRAFANA_VARIABLES = {
    '$__rate_interval': '15s',
    '$__interval': '2s',
    '$__range': '1m',
    '$backend': '.+',
    '$instance': '.+',
}


def unavailable_reason():
    """Why this machine cannot run the monitoring tier, or None."""
    missing = [] if shutil.which('prometheus') else [
        'prometheus (package prometheus)']
    return daemon.skip_reason('monitoring', missing, PACKAGES)


class PrometheusError(RuntimeError):
    """Prometheus refused a query or did not answer."""


def lab_rules(text, for_=LAB_FOR):
    """The rule file *text* with every rule's ``for:`` set to *for_*
    (rules without one keep none); the groups' own ``interval:`` is
    dropped so that the lab's evaluation interval applies. Returns YAML.
    """
    rules = yaml.safe_load(text)
    for group in rules.get('groups', ()):
        group.pop('interval', None)
        for rule in group.get('rules', ()):
            if 'for' in rule:
                rule['for'] = for_
    return yaml.safe_dump(rules, sort_keys=False)


def rule_expressions(text):
    """(name, PromQL expression) of every alerting and recording rule in
    the rule file *text*.
    """
    rules = yaml.safe_load(text)
    return [(rule.get('alert') or rule.get('record'), rule['expr'])
            for group in rules.get('groups', ())
            for rule in group.get('rules', ())]


def dashboard_panels(dashboard):
    """Every panel of the Grafana *dashboard* (its parsed JSON), also
    those a collapsed row holds.
    """
    def walk(panels):
        for panel in panels:
            yield panel
            yield from walk(panel.get('panels', ()))
    return list(walk(dashboard.get('panels', ())))


def dashboard_expressions(dashboard):
    """(panel title, PromQL expression) of every target of every panel of
    the Grafana *dashboard* (its parsed JSON), as written (see
    grafana_query()).
    """
    return [(panel.get('title', ''), target['expr'])
            for panel in dashboard_panels(dashboard)
            for target in panel.get('targets', ())
            if target.get('expr')]


def dashboard_label_queries(dashboard):
    """(variable name, series selector, label) of every variable of the
    Grafana *dashboard* filled by ``label_values(selector, label)``: the
    values of *label* on the series *selector* matches, as written.
    """
    found = []
    for variable in dashboard.get('templating', {}).get('list', ()):
        query = variable.get('query')
        if isinstance(query, dict):
            query = query.get('query')
        match = re.fullmatch(r'\s*label_values\((.+),\s*(\w+)\s*\)\s*',
                             query or '')
        if variable.get('type') == 'query' and match:
            found.append((variable['name'], match.group(1),
                          match.group(2)))
    return found


def grafana_query(expr, variables=None):
    """*expr* with Grafana's variables (``$name``, ``${name}``,
    ``[[name]]``) replaced by the lab's values (GRAFANA_VARIABLES, then
    *variables*). Raises KeyError naming a variable the lab has no value
    for: a new one needs a value here.
    """
    values = dict(GRAFANA_VARIABLES, **(variables or {}))

    def value(match):
        name = '$' + next(group for group in match.groups() if group)
        return values[name]

    return re.sub(r'\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)', value, expr)


class Prometheus(site_module.Daemon):
    """Prometheus scraping *targets* (``{job name: [(host:port,
    {label: value})]}``) every second and evaluating *rules* (a rule
    file's path, rewritten by lab_rules() into its directory).

    After start(): ``url``, query(), value(), wait_value(), alerts(),
    wait_alert(). Cost: about 1 s to start and 60 MB.
    """

    name = 'prometheus'

    def __init__(self, root, targets, rules=RULES):
        super().__init__(root)
        self.targets = targets
        self.rules = rules
        self.port = daemon.free_port()
        self.url = 'http://%s:%d' % (HOST, self.port)
        self.config_file = os.path.join(self.root, 'prometheus.yml')
        self.rules_file = os.path.join(self.root, 'rules.yml')
        self.data_dir = os.path.join(self.root, 'data')

    def _prepare(self):
        files = []
        if self.rules:
            with open(self.rules) as f:
                text = lab_rules(f.read())
            with open(self.rules_file, 'w') as f:
                f.write(text)
            files.append(self.rules_file)
        config = {
            'global': {'scrape_interval': INTERVAL,
                       'scrape_timeout': INTERVAL,
                       'evaluation_interval': INTERVAL},
            'rule_files': files,
            'scrape_configs': [
                {'job_name': job,
                 'static_configs': [
                     {'targets': [address], 'labels': dict(labels)}
                     for address, labels in targets]}
                for job, targets in self.targets.items()],
        }
        with open(self.config_file, 'w') as f:
            yaml.safe_dump(config, f, sort_keys=False)

    def command(self):
        return [shutil.which('prometheus'),
                '--config.file=' + self.config_file,
                '--storage.tsdb.path=' + self.data_dir,
                '--web.listen-address=%s:%d' % (HOST, self.port),
                '--log.level=warn']

    def ready(self):
        return requests.get(self.url + '/-/ready',
                            timeout=2).status_code == 200

    # -- the HTTP API ------------------------------------------------------

    def api(self, path, **params):
        """The ``data`` of a successful answer of /api/v1/<path>; raises
        PrometheusError with Prometheus' error otherwise.
        """
        try:
            response = requests.get('%s/api/v1/%s' % (self.url, path),
                                    params=params, timeout=10)
            answer = response.json()
        except (requests.RequestException, ValueError) as e:
            raise PrometheusError('/api/v1/%s %s: %s' % (path, params, e))
        if answer.get('status') != 'success':
            raise PrometheusError('/api/v1/%s %s: %s: %s' % (
                path, params, answer.get('errorType'), answer.get('error')))
        return answer['data']

    def query(self, expr):
        """The result of the instant query *expr* (a list of samples for
        a vector: each ``{'metric': {...}, 'value': [time, text]}``).
        """
        return self.api('query', query=expr)['result']

    def query_range(self, expr, start, end, step):
        """The matrix *expr* gives from *start* to *end* (epoch seconds)
        every *step* seconds: each series ``{'metric': {...}, 'values':
        [[time, text], ...]}``.
        """
        return self.api('query_range', query=expr, start=start, end=end,
                        step=step)['result']

    def value(self, expr):
        """The one number *expr* gives now, or None when its vector is
        empty; raises PrometheusError when it has several samples.
        """
        data = self.api('query', query=expr)
        result = data['result']
        if data['resultType'] == 'vector':
            if not result:
                return None
            if len(result) > 1:
                raise PrometheusError('%s: %d samples, one wanted: %s' % (
                    expr, len(result), result))
            result = result[0]['value']
        return float(result[1])

    def wait_value(self, expr, expected, timeout=WAIT_TIMEOUT):
        """Wait until value(*expr*) equals *expected* (None: an empty
        vector) and return it; raise AssertionError with the last value
        after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.value(expr)
            if value == expected:
                return value
            if time.monotonic() > deadline:
                raise AssertionError('%s is %s, not %s, after %ss' % (
                    expr, value, expected, timeout))
            time.sleep(0.2)

    def wait_values(self, expected, timeout=WAIT_TIMEOUT):
        """Wait until value(expr) equals *expected*[expr] for every expr
        of *expected* (None: an empty vector); raise AssertionError with
        every value that differs after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            wrong = {}
            for expr, wanted in expected.items():
                value = self.value(expr)
                if value != wanted:
                    wrong[expr] = (value, wanted)
            if not wrong:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    'after %ss, (value, wanted) of %s' % (timeout, wrong))
            time.sleep(0.2)

    def wait_scraped(self, timeout=WAIT_TIMEOUT):
        """Wait until every target was scraped successfully by a scrape
        that began after this call: what Prometheus holds then includes
        whatever was recorded before the call.
        """
        since = time.time()
        count = sum(len(targets) for targets in self.targets.values())
        self.wait_value('count((timestamp(up) > %f) and (up == 1))'
                        % since, count, timeout)

    def series(self, expr):
        """{frozenset of labels: number} of the vector *expr* gives now."""
        return {frozenset(sample['metric'].items()):
                float(sample['value'][1]) for sample in self.query(expr)}

    def wait_targets_up(self, timeout=WAIT_TIMEOUT):
        """Wait until every target was scraped successfully."""
        count = sum(len(targets) for targets in self.targets.values())
        self.wait_value('count(up == 1)', count, timeout)

    def label_values(self, label, selector):
        """The values of *label* on the series *selector* matches."""
        return self.api('label/%s/values' % label, **{'match[]': selector})

    def alerts(self, name=None):
        """Active alerts (pending or firing), those named *name* only
        when given: each a dict with ``labels``, ``state``, ``activeAt``.
        """
        return [alert for alert in self.api('alerts')['alerts']
                if name is None or alert['labels'].get('alertname') == name]

    def wait_alert(self, name, state='firing', timeout=WAIT_TIMEOUT):
        """Wait until an alert *name* is in *state*; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            alerts = self.alerts(name)
            for alert in alerts:
                if alert['state'] == state:
                    return alert
            if time.monotonic() > deadline:
                raise AssertionError('no %s alert %s after %ss: %s' % (
                    state, name, timeout, alerts))
            time.sleep(0.2)


class Exporter(site_module.Daemon):
    """``glance-remote --config-file CONFIG exporter --listen HOST:PORT``,
    the sidecar a node runs next to glance-api, reading *config_file*
    (that node's glance-api.conf). ``address`` is what Prometheus scrapes.
    """

    name = 'exporter'

    def __init__(self, root, config_file):
        super().__init__(root)
        self.config_file = config_file
        self.port = daemon.free_port()
        self.address = '%s:%d' % (HOST, self.port)
        self.url = 'http://%s/metrics' % self.address

    def command(self):
        return [os.path.join(lab_module.BIN, 'glance-remote'),
                '--config-file', self.config_file,
                'exporter', '--listen', self.address]

    def ready(self):
        return requests.get(self.url, timeout=2).status_code == 200

    def text(self):
        """What it serves now (the exposition text)."""
        return requests.get(self.url, timeout=10).text
