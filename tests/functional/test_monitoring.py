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

"""Monitoring against REAL parts: a ``glance-remote exporter`` next to each
edge node and Debian's Prometheus scraping them every second
(tests/harness/prometheus.py), queried through its HTTP API.

What is proved here: after known reads, the sums Prometheus gives over the
workers of a 2-worker edge and over the nodes of a coordinated 3-node site
are exactly what was done (requests by result, bytes by source, fills),
and central's bytes count once per site however many nodes fill from a
peer; the cache gauges say what ``glance-remote cache stats`` says; the
site's members and coordinator are seen from each node, and the site's
outage count is what no node holds (an image one node holds does not
fire the outage alert on the others); with central stopped,
``glance_remote_central_up`` turns 0 and the shipped "central
unreachable" alert fires (its ``for:`` shortened); every query of the
shipped Grafana dashboard returns data and every shipped alert rule
parses and runs, so a renamed metric fails here.
"""

import concurrent.futures
import glob
import json
import os

from testtools import content

from tests.functional import base
from tests.functional import test_edge_site as edge_site
from tests.harness import prometheus

UNAVAILABLE = prometheus.unavailable_reason()
JOB = 'glance-remote'   # the shipped rules expect it in the job's name
BACKEND = 'central'
ON_DEMAND = {BACKEND: {'remote_glance_import_on_demand': True}}

REQUESTS = 'sum(glance_remote_requests_total{result="%s"})'
BYTES = 'sum(glance_remote_bytes_total{source="%s"})'
FILLS = 'sum(glance_remote_fill_duration_seconds_count{outcome="%s"})'
RESULTS = ('hit', 'miss', 'coalesced', 'peer', 'passthrough',
           'unavailable', 'busy')
SOURCES = ('cache', 'central', 'peer')


def counted():
    """The site-wide (or node-wide) sums a test compares before and
    after what it does.
    """
    return ([REQUESTS % result for result in RESULTS] +
            [BYTES % source for source in SOURCES] +
            [FILLS % outcome for outcome in ('verified', 'failed')])


class MonitoringMixin:
    """Starts one exporter per edge node (of the class's lab, with that
    node's glance-api.conf) and one Prometheus scraping them, after the
    class's lab; stops them before it. Skips, naming what is missing,
    where Prometheus is not installed.
    """

    @classmethod
    def monitored(cls):
        """The lab's edge glance-api servers, one exporter each."""
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        if UNAVAILABLE:
            raise cls.skipException(UNAVAILABLE)
        super().setUpClass()
        cls.exporters = []
        cls.prometheus = None
        try:
            root = os.path.join(cls.lab.root, 'monitoring')
            for server in cls.monitored():
                cls.exporters.append(prometheus.Exporter(
                    os.path.join(root, 'exporter-' + server.name),
                    server.config_file).start())
            cls.prometheus = prometheus.Prometheus(
                os.path.join(root, 'prometheus'),
                {JOB: [(exporter.address, {'node': server.name})
                       for exporter, server in zip(cls.exporters,
                                                   cls.monitored())]}
            ).start()
            cls.prometheus.wait_targets_up()
        except BaseException:
            cls._stop_monitoring()
            super().tearDownClass()
            raise

    @classmethod
    def _stop_monitoring(cls):
        for part in [cls.prometheus] + cls.exporters:
            if part is not None:
                part.stop()

    @classmethod
    def tearDownClass(cls):
        try:
            cls._stop_monitoring()
        finally:
            super().tearDownClass()

    def _attach_logs(self, exc_info):
        super()._attach_logs(exc_info)
        for part in [self.prometheus] + self.exporters:
            if part is not None:
                self.addDetail('%s-log' % os.path.basename(part.root),
                               content.text_content(part.log_tail(40)))
        for exporter in self.exporters:
            try:
                text = exporter.text()
            except Exception as e:
                text = 'no answer: %s' % e
            self.addDetail('%s-metrics' % os.path.basename(exporter.root),
                           content.text_content(text))

    def snapshot(self):
        """counted() sums as Prometheus holds them once it has scraped
        everything done so far (an empty sum is 0).
        """
        self.prometheus.wait_scraped()
        return {expr: self.prometheus.value(expr) or 0.0
                for expr in counted()}

    def assert_counted(self, before, requests=(), bytes_from=(), fills=()):
        """Wait until the counted() sums are *before* plus the changes
        given ({result: n}, {source: bytes}, {outcome: n}), the others
        unchanged; fail naming every sum that differs.
        """
        expected = dict(before)
        for template, changes in ((REQUESTS, requests), (BYTES, bytes_from),
                                  (FILLS, fills)):
            for name, change in dict(changes).items():
                expected[template % name] += change
        self.prometheus.wait_values(expected)


class TestEdgeMetrics(MonitoringMixin, base.LabTestCase):
    """A 2-worker edge (gunicorn) with its exporter: what Prometheus sums
    over the node's workers.
    """

    LAB = {'edge_workers': 2, 'edge_options': ON_DEMAND, 'proxy': True}

    def setUp(self):
        super().setUp()
        self.lab.proxy.faults.reset()

    @classmethod
    def monitored(cls):
        return [cls.lab.edge]

    def imported(self, size):
        """A public central image of *size* random bytes, imported at the
        edge on demand (a link would make Glance read it in the
        background, a read this test did not make).
        """
        central, data = self.make_central_image(size=size,
                                                visibility='public')
        self.assertEqual(central.id, self.edge_glance().images.get(
            central.id).id)
        return central, data

    def read(self, central):
        self.download(central.id, central)
        self.wait_fills_done()

    def file_gets_since(self, mark):
        """PIDs of the workers that answered the image downloads logged
        after the first *mark* entries of the edge's access log.
        """
        return {entry.pid for entry in self.lab.edge.access_entries()[mark:]
                if entry.path.endswith('/file')}

    def test_reads_are_summed_over_the_workers(self):
        small, _ = self.imported(base.MiB + 1)
        large, _ = self.imported(3 * base.MiB + 5)
        mark = len(self.lab.edge.access_entries())
        before = self.snapshot()
        self.read(small)
        self.read(large)
        both = small.size + large.size
        self.assert_counted(before, {'miss': 2}, {'central': both},
                            {'verified': 2})
        # Hits until both workers have answered some of this test's reads
        # (the kernel chooses the worker of each connection).
        hits = cache = 0
        while hits < 5 or len(self.file_gets_since(mark)) < 2:
            self.assertLess(hits, 40, 'one worker answered every read')
            central = (small, large)[hits % 2]
            self.read(central)
            hits, cache = hits + 1, cache + central.size
        self.assertEqual({str(pid) for pid in self.lab.edge.worker_pids()},
                         self.file_gets_since(mark))
        self.assert_counted(before, {'miss': 2, 'hit': hits},
                            {'central': both, 'cache': cache},
                            {'verified': 2})

    def test_a_read_that_follows_a_running_fill_is_coalesced(self):
        central, data = self.imported(4 * base.MiB + 1)
        before = self.snapshot()
        held = self.lab.proxy.arm(stall_at=base.MiB)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(self.fetch, central.id)
            self.assertTrue(held.stalled.wait(60))
            self.assert_counted(before, {'miss': 1})
            second = pool.submit(self.fetch, central.id)
            self.assert_counted(before, {'miss': 1, 'coalesced': 1})
            held.release()
            for read in (first, second):
                response, received, error = read.result()
                self.assertEqual((200, None), (response.status_code, error))
                self.assertEqual(data, received)
        self.wait_fills_done()
        # Central sent the image once, for both.
        self.assert_counted(before, {'miss': 1, 'coalesced': 1},
                            {'central': central.size}, {'verified': 1})

    def test_cache_gauges_say_what_cache_stats_says(self):
        central, _ = self.imported(2 * base.MiB + 3)
        self.read(central)
        stats = self.cache_stats()
        self.prometheus.wait_values({
            'glance_remote_cache_used_bytes': stats['current_size'],
            'glance_remote_cache_capacity_bytes': stats['max_size'],
            'glance_remote_cache_entries{state="complete"}':
                stats['complete_entries'],
            'glance_remote_cache_entries{state="partial"}':
                stats['partial_entries'],
            'glance_remote_cache_pinned_entries': stats['pinned_entries'],
        })
        self.assertGreaterEqual(stats['current_size'], central.size)
        self.assertEqual(self.lab.cache_max_size, stats['max_size'])

    def test_central_stopped_turns_central_up_to_0_and_the_alert_fires(self):
        known, _ = self.imported(base.MiB + 7)
        uncached, _ = self.imported(base.MiB + 9)
        self.read(known)
        self.prometheus.wait_value('glance_remote_central_up', 1)
        self.assertEqual([], self.prometheus.alerts(
            'GlanceRemoteCentralUnreachable'))
        before = self.snapshot()
        self.lab.central.stop()
        self.addCleanup(self.start_central)
        response, _, _ = self.fetch(uncached.id)
        self.assertEqual(503, response.status_code)
        self.prometheus.wait_value('glance_remote_central_up', 0)
        self.assert_counted(before, {'unavailable': 1})
        alert = self.prometheus.wait_alert('GlanceRemoteCentralUnreachable')
        self.assertEqual((BACKEND, 'critical'), (
            alert['labels']['backend'], alert['labels']['severity']))
        # What the edge holds is still served, as a hit.
        self.read(known)
        self.assert_counted(before, {'unavailable': 1, 'hit': 1},
                            {'cache': known.size})


class TestSiteMetrics(MonitoringMixin, edge_site.SiteTestCase):
    """A coordinated 3-node site (MariaDB, etcd, haproxy), an exporter on
    each node, one Prometheus scraping all three: the site's sums.
    """

    LAB = {'nodes': 3, 'coordination': True, 'on_demand': True}

    @classmethod
    def monitored(cls):
        return cls.lab.nodes

    def imported(self, size=edge_site.SIZE):
        central, data = self.central_image(size=size)
        self.assertEqual(central.id, self.node_glance(
            self.lab.nodes[0]).images.get(central.id).id)
        return central, data

    def read_on(self, node, central):
        self.node_download(node, central.id, central)
        for index in range(len(self.lab.nodes)):
            self.wait_fills_done(cache_dir=self.lab.cache_dir(index))

    def by_node(self, expr):
        """{node name: value} of *expr* summed by node."""
        return {dict(labels)['node']: value for labels, value in
                self.prometheus.series('sum by (node) (%s)' % expr).items()}

    def test_central_sends_an_image_once_per_site(self):
        central, _ = self.imported(4 * base.MiB + 13)
        size = central.size
        before = self.snapshot()
        by_source = {source: self.by_node(
            'glance_remote_bytes_total{source="%s"}' % source)
            for source in ('central', 'peer')}
        first, *others = self.lab.nodes
        self.read_on(first, central)
        for node in others:
            self.read_on(node, central)
        # Each node's first read filled its cache: from central once, then
        # from a peer that held the image.
        filled = {'central': size, 'peer': size * len(others)}
        self.assert_counted(before, {'miss': 3}, filled, {'verified': 3})
        for node in self.lab.nodes:
            self.read_on(node, central)
        self.assert_counted(before, {'miss': 3, 'hit': 3},
                            dict(filled, cache=3 * size), {'verified': 3})
        # The first node took it from central, each other from a peer.
        self.assertEqual(
            {'central': {node.name: float(size if node is first else 0)
                         for node in self.lab.nodes},
             'peer': {node.name: float(0 if node is first else size)
                      for node in self.lab.nodes}},
            {source: {name: value - by_source[source].get(name, 0.0)
                      for name, value in self.by_node(
                          'glance_remote_bytes_total{source="%s"}'
                          % source).items()}
             for source in by_source})

    def test_each_node_sees_the_site(self):
        central, _ = self.imported()
        for node in self.lab.nodes:
            self.read_on(node, central)
        self.prometheus.wait_values({
            'count(glance_remote_site_members == 3)': 3,
            'count(glance_remote_coordinator_up == 1)': 3,
        })

    def test_the_site_outage_count_is_what_no_node_holds(self):
        # Every image the tests of this class link is read on every
        # node: before this one, no node lacks any.
        central, _ = self.imported()
        unready = 'sum(glance_remote_outage_unready_images)'
        site_unready = 'sum(glance_remote_site_outage_unready_images)'
        with open(prometheus.RULES) as f:
            alert = dict(prometheus.rule_expressions(f.read()))[
                'GlanceRemoteOutageUnready']
        # Linked at the edge, held nowhere: each node lacks it, and so
        # does the site, as each node sees it.
        self.prometheus.wait_values({
            unready: 3, site_unready: 3,
            'count(glance_remote_site_outage_unready_images == 1)': 3})
        self.assertEqual(3, len(self.prometheus.query(alert)))
        # Held by the first node only: the others still lack it, the site
        # does not, and the outage rule spares every node.
        first, *others = self.lab.nodes
        self.node_download(first, central.id, central)
        self.wait_fills_done(cache_dir=self.lab.cache_dir(0))
        self.prometheus.wait_values({
            unready: len(others), site_unready: 0,
            'count(glance_remote_site_outage_unready_images == 0)': 3})
        self.assertEqual([], self.prometheus.query(alert))
        self.assertEqual(
            {node.name: float(node is not first) for node in self.lab.nodes},
            self.by_node('glance_remote_outage_unready_images'))
        # The other nodes read it as every test does (from the first).
        for node in others:
            self.read_on(node, central)

    # -- what the shipped files ask of Prometheus ---------------------------

    def traffic(self):
        """Reads of every kind the site does without a fault: a fill from
        central, fills from a peer, hits.
        """
        central, _ = self.imported(base.MiB + 11)
        for node in self.lab.nodes + self.lab.nodes[:1]:
            self.read_on(node, central)
        self.prometheus.wait_scraped()
        self.prometheus.wait_scraped()

    def test_every_dashboard_query_returns_data(self):
        self.traffic()
        files = sorted(glob.glob(os.path.join(prometheus.DASHBOARDS_DIR,
                                              '*.json')))
        self.assertNotEqual([], files, 'no dashboard in etc/grafana')
        empty, failed, count = [], [], 0
        for path in files:
            with open(path) as f:
                dashboard = json.load(f)
            for title, expr in prometheus.dashboard_expressions(dashboard):
                count += 1
                query = prometheus.grafana_query(expr)
                try:
                    if not self.prometheus.query(query):
                        empty.append((title, query))
                except prometheus.PrometheusError as e:
                    failed.append((title, str(e)))
            # The variables' own queries: a panel shows nothing when its
            # variable finds no value.
            for name, selector, label in prometheus.dashboard_label_queries(
                    dashboard):
                count += 1
                query = prometheus.grafana_query(selector)
                try:
                    if not self.prometheus.label_values(label, query):
                        empty.append(('$' + name, query))
                except prometheus.PrometheusError as e:
                    failed.append(('$' + name, str(e)))
        self.addDetail('dashboard-queries', content.text_content(
            '%d queries in %s' % (count, files)))
        self.assertGreater(count, 0)
        self.assertEqual(([], []), (failed, empty))

    def test_every_alert_rule_runs(self):
        self.traffic()
        with open(prometheus.RULES) as f:
            rules = prometheus.rule_expressions(f.read())
        self.assertNotEqual([], rules)
        failed = []
        for name, expr in rules:
            try:
                self.prometheus.query(expr)
            except prometheus.PrometheusError as e:
                failed.append((name, str(e)))
        self.assertEqual([], failed)
        # Prometheus loaded the same rules and evaluates them.
        groups = self.prometheus.api('rules')['groups']
        self.assertEqual(
            sorted(name for name, _ in rules),
            sorted(rule['name'] for group in groups
                   for rule in group['rules']))
        self.assertEqual([], [
            (rule['name'], rule.get('lastError'))
            for group in groups for rule in group['rules']
            if rule.get('health') != 'ok'])
