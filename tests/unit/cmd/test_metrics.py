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

"""Unit tests of cmd/metrics.py: ``glance-remote metrics`` (stdout and
--textfile) and ``glance-remote exporter`` serving real HTTP on loopback,
on a real cache directory."""

import argparse
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

from unittest import mock

import fixtures
from prometheus_client import parser

from glance_store_remote import cache
from glance_store_remote.cmd import config
from glance_store_remote.cmd import metrics as metrics_cmd
from glance_store_remote import metrics
from glance_store_remote.peers import client
from tests.unit.cmd import base as cli_base
from tests.unit import edge_state


def parse(text):
    """{(sample name, frozenset of label items): value}."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in parser.text_string_to_metric_families(text)
            for s in family.samples}


def hits(samples, backend='c'):
    return samples[('glance_remote_requests_total',
                    frozenset({('backend', backend), ('result', 'hit')}))]


def gauge(samples, name, backend='c', **labels):
    return samples[(name, frozenset(dict(labels, backend=backend).items()))]


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    """(status, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape_then_terminate(url, answers):
    """In a thread: GET *url* once the exporter answers (its answer into
    *answers*), then SIGTERM this process, whose main thread runs the
    exporter.
    """
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            answers.append(get(url, timeout=2))
            break
        except OSError:
            time.sleep(0.05)
    # Only to the exporter's handler (else SIGTERM would end the test
    # run).
    while not exporter_handles_sigterm() and time.monotonic() < deadline:
        time.sleep(0.05)
    if exporter_handles_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)


def exporter_handles_sigterm():
    handler = signal.getsignal(signal.SIGTERM)
    return getattr(handler, '__module__', None) == metrics_cmd.__name__


class MetricsTestCase(cli_base.CliTestCase):

    def setUp(self):
        super().setUp()
        self.logger = self.useFixture(fixtures.FakeLogger())
        self.conf, self.backends = config.load_backends(self.config)
        cache.Cache(self.cache_dir, 1024).count(hits=3, misses=1)


class TestMetrics(MetricsTestCase):

    def test_prints_the_exposition_of_the_backends(self):
        metrics_cmd.cmd_metrics(argparse.Namespace(textfile=None),
                                self.conf, self.backends)
        samples = parse(self.stdout.getvalue())
        self.assertEqual(3, hits(samples))
        self.assertEqual(1, samples[(
            'glance_remote_requests_total',
            frozenset({('backend', 'c'), ('result', 'miss')}))])

    def test_the_probe_of_a_closed_port_records_central_down_only(self):
        # Central (127.0.0.1:9) refuses: the scrape's probe, a real
        # upstream.Central with a breaker of its own, records central
        # down in the index and leaves the workers' breaker closed.
        store = cache.Cache(self.cache_dir, 1024)
        metrics_cmd.cmd_metrics(argparse.Namespace(textfile=None),
                                self.conf, self.backends)
        samples = parse(self.stdout.getvalue())
        self.assertEqual(0, samples[('glance_remote_central_up',
                                     frozenset({('backend', 'c')}))])
        self.assertEqual(0, samples[('glance_remote_breaker_open',
                                     frozenset({('backend', 'c')}))])
        self.assertIsNone(store.load_breaker('c'))
        self.assertFalse(store.load_central('c').up)

    def test_textfile_is_written_whole_and_alone(self):
        folder = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(folder, 'glance_remote.prom')
        with open(path, 'w') as f:
            f.write('an older file\n')
        metrics_cmd.cmd_metrics(argparse.Namespace(textfile=path),
                                self.conf, self.backends)
        with open(path) as f:
            self.assertEqual(3, hits(parse(f.read())))
        self.assertEqual(['glance_remote.prom'], os.listdir(folder))
        self.assertEqual('', self.stdout.getvalue())

    def test_textfile_in_a_missing_directory_is_a_usage_error(self):
        path = os.path.join(self.cache_dir, 'nope', 'glance_remote.prom')
        error = self.assertRaises(
            config.UsageError, metrics_cmd.cmd_metrics,
            argparse.Namespace(textfile=path), self.conf, self.backends)
        self.assertIn('does not exist', str(error))

    def test_a_cache_of_another_user_is_refused(self):
        self.useFixture(fixtures.MonkeyPatch(
            'os.geteuid', lambda: os.stat(self.cache_dir).st_uid + 1))
        error = self.assertRaises(
            config.UsageError, metrics_cmd.cmd_metrics,
            argparse.Namespace(textfile=None), self.conf, self.backends)
        self.assertIn('sudo -u', str(error))

    def test_a_backend_without_cache_has_only_its_outage(self):
        with open(self.config, 'a') as f:
            f.write('[d]\nauth_type = none\n')
        with open(self.config) as f:
            text = f.read().replace('c:remote-glance',
                                    'c:remote-glance, d:remote-glance')
        with open(self.config, 'w') as f:
            f.write(text)
        conf, backends = config.load_backends(self.config)
        self.assertEqual(['c', 'd'], backends)
        metrics_cmd.cmd_metrics(argparse.Namespace(textfile=None), conf,
                                backends)
        samples = parse(self.stdout.getvalue())
        self.assertEqual(3, hits(samples))
        self.assertEqual({'glance_remote_collect_errors'},
                         {name for name, labels in samples
                          if ('backend', 'd') in labels})
        self.assertEqual(1, gauge(samples, 'glance_remote_collect_errors',
                                  backend='d', part='outage'))
        self.assertIn('backend d has no remote_glance_cache_dir',
                      self.logger.output)


class TestCommandLine(MetricsTestCase):
    """The commands through glance-remote's main(), as an operator runs
    them.
    """

    def test_metrics(self):
        self.assertEqual(0, self.run_cli('metrics'))
        self.assertEqual(3, hits(parse(self.stdout.getvalue())))

    def test_metrics_of_the_backend_named(self):
        self.assertEqual(0, self.run_cli('--backend', 'c', 'metrics'))
        self.assertEqual(3, hits(parse(self.stdout.getvalue())))

    def test_textfile(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'glance_remote.prom')
        self.assertEqual(0, self.run_cli('metrics', '--textfile', path))
        with open(path) as f:
            self.assertEqual(3, hits(parse(f.read())))

    def test_textfile_in_a_missing_directory_exits_2(self):
        path = os.path.join(self.cache_dir, 'nope', 'glance_remote.prom')
        self.assertEqual(2, self.run_cli('metrics', '--textfile', path))
        self.assertIn('does not exist', self.stderr.getvalue())

    def test_a_bad_listen_address_exits_2(self):
        self.assertEqual(2, self.run_cli('exporter', '--listen', '9612'))
        self.assertIn('HOST:PORT', self.stderr.getvalue())

    def test_exporter_serves_until_sigterm_and_exits_0(self):
        port = free_port()
        answers = []
        helper = threading.Thread(target=scrape_then_terminate,
                                  args=('http://127.0.0.1:%d/metrics' % port,
                                        answers))
        helper.start()
        code = self.run_cli('exporter', '--listen', '127.0.0.1:%d' % port)
        helper.join(30)
        self.assertEqual(0, code)
        self.assertEqual(200, answers[0][0])
        self.assertEqual(3, hits(parse(answers[0][1])))


class TestOutage(MetricsTestCase):
    """The outage families, from the edge database that glance-api.conf
    names (readiness.node_report).
    """

    def metrics(self, conf=None, backends=None):
        self.stdout.truncate(0)
        self.stdout.seek(0)
        metrics_cmd.cmd_metrics(argparse.Namespace(textfile=None),
                                conf or self.conf, backends or self.backends)
        return parse(self.stdout.getvalue())

    def test_unready_and_unpinned_images_are_counted(self):
        db = edge_state.EdgeDatabase(os.path.dirname(self.config))
        self.addCleanup(db.close)
        with open(self.config, 'a') as f:
            f.write('[database]\nconnection = %s\n' % db.url)
        conf, backends = config.load_backends(self.config)
        store = cache.Cache(self.cache_dir, 1024 * 1024)
        held, pinned, absent, partial = (str(uuid.uuid4())
                                         for _ in range(4))
        edge_state.hold(store, held)
        edge_state.hold(store, pinned, pinned=True)
        edge_state.hold(store, partial, complete=False)
        for central_id in (held, pinned, absent, partial):
            db.add_image('remote-glance://c/%s' % central_id)
        samples = self.metrics(conf, backends)
        self.assertEqual(2, gauge(samples,
                                  'glance_remote_outage_unready_images'))
        self.assertEqual(1, gauge(samples,
                                  'glance_remote_outage_unpinned_images'))
        self.assertEqual(0, gauge(samples, 'glance_remote_collect_errors',
                                  part='outage'))

    def test_no_edge_database_is_an_error_said_once(self):
        for _ in range(2):
            samples = self.metrics()
            self.assertEqual(1, gauge(samples, 'glance_remote_collect_errors',
                                      part='outage'))
            self.assertNotIn(('glance_remote_outage_unready_images',
                              frozenset({('backend', 'c')})), samples)
            self.assertEqual(3, hits(samples))
        # Each command run has its own collector: one warning each.
        self.assertEqual(
            2, self.logger.output.count('outage readiness not known'))


class TestSiteOutage(MetricsTestCase):
    """The site outage families of a coordinated backend: its members'
    cache views (peers.client.cache_views) against the edge database.
    """

    SECRET = 'a-site-secret-0123456789'

    def setUp(self):
        super().setUp()
        self.db = edge_state.EdgeDatabase(os.path.dirname(self.config))
        self.addCleanup(self.db.close)
        self.site = mock.Mock()
        self.site.members.return_value = {'http://n1': set(),
                                          'http://n2': set()}
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.cmd.config.site',
            lambda group, backend: self.site))
        self.asked = []
        self.views = {}

        def cache_view(peer, verify=False):
            self.asked.append((peer.url, peer.timeout, peer._secret))
            view = self.views.get(peer.url)
            if view is None:
                raise client.PeerUnreachable(peer.url, 'down')
            return view
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.peers.client.Peer.cache_view', cache_view))

    def configure(self, secret=SECRET):
        with open(self.config, 'a') as f:
            f.write('remote_glance_coordination_url = etcd3+http://x:2379\n')
            if secret:
                f.write('remote_glance_peer_secret = %s\n' % secret)
            f.write('[database]\nconnection = %s\n' % self.db.url)
        return config.load_backends(self.config)

    @staticmethod
    def view(*central_ids):
        return {'entries': [{'image_id': i, 'state': 'complete',
                             'pinned': True} for i in central_ids],
                'stats': {}}

    def metrics(self, conf, backends):
        metrics_cmd.cmd_metrics(argparse.Namespace(textfile=None), conf,
                                backends)
        return parse(self.stdout.getvalue())

    def test_images_held_by_no_member_are_counted(self):
        conf, backends = self.configure()
        held, elsewhere, nowhere = (str(uuid.uuid4()) for _ in range(3))
        edge_state.hold(cache.Cache(self.cache_dir, 1024 * 1024), held)
        for central_id in (held, elsewhere, nowhere):
            self.db.add_image('remote-glance://c/%s' % central_id)
        # n1 (this node, say) holds *held*, n2 *elsewhere*.
        self.views = {'http://n1': self.view(held),
                      'http://n2': self.view(elsewhere)}
        samples = self.metrics(conf, backends)
        self.assertEqual(2, gauge(samples,
                                  'glance_remote_outage_unready_images'))
        self.assertEqual(1, gauge(
            samples, 'glance_remote_site_outage_unready_images'))
        self.assertEqual(0, gauge(
            samples, 'glance_remote_site_outage_unpinned_images'))
        self.assertEqual(0, gauge(samples, 'glance_remote_collect_errors',
                                  part='site_outage'))
        self.assertEqual(
            [('http://n1', metrics.SITE_VIEW_TIMEOUT, self.SECRET),
             ('http://n2', metrics.SITE_VIEW_TIMEOUT, self.SECRET)],
            sorted(self.asked))
        self.site.stop.assert_called_once_with()

    def test_a_member_that_does_not_answer_holds_nothing(self):
        conf, backends = self.configure()
        central_id = str(uuid.uuid4())
        self.db.add_image('remote-glance://c/%s' % central_id)
        self.views = {'http://n1': self.view(central_id)}
        self.assertEqual(0, gauge(self.metrics(conf, backends),
                                  'glance_remote_site_outage_unready_images'))
        self.views = {'http://n2': self.view()}
        self.stdout.truncate(0)
        self.stdout.seek(0)
        self.assertEqual(1, gauge(self.metrics(conf, backends),
                                  'glance_remote_site_outage_unready_images'))

    def test_without_a_peer_secret_no_site_family(self):
        conf, backends = self.configure(secret=None)
        samples = self.metrics(conf, backends)
        self.assertEqual([], self.asked)
        self.assertNotIn('glance_remote_site_outage_unready_images',
                         {name for name, _ in samples})
        self.assertEqual(2, gauge(samples, 'glance_remote_site_members'))

    def test_an_unreadable_edge_database_is_a_collect_error(self):
        conf, backends = self.configure()
        os.unlink(self.db.path)
        samples = self.metrics(conf, backends)
        self.assertEqual(1, gauge(samples, 'glance_remote_collect_errors',
                                  part='site_outage'))
        self.assertIn('site outage readiness not known', self.logger.output)


class TestListen(cli_base.CliTestCase):

    def test_host_and_port(self):
        for text, expected in (('127.0.0.1:9612', ('127.0.0.1', 9612)),
                               ('[::1]:9612', ('::1', 9612)),
                               ('0.0.0.0:0', ('0.0.0.0', 0)),
                               ('localhost:80', ('localhost', 80))):
            self.assertEqual(expected, metrics_cmd.parse_listen(text))

    def test_anything_else_is_a_usage_error(self):
        for text in ('9612', ':9612', '127.0.0.1', '::1:9612', '[::1]',
                     '127.0.0.1:port', '127.0.0.1:70000', ''):
            error = self.assertRaises(config.UsageError,
                                      metrics_cmd.parse_listen, text)
            self.assertIn('HOST:PORT', str(error))

    def test_an_address_in_use_is_a_usage_error(self):
        with socket.socket() as taken:
            taken.bind(('127.0.0.1', 0))
            taken.listen()
            port = taken.getsockname()[1]
            error = self.assertRaises(config.UsageError,
                                      metrics_cmd.make_server, '127.0.0.1',
                                      port, None)
        self.assertIn('127.0.0.1:%d' % port, str(error))


class TestExporter(MetricsTestCase):

    def test_serves_metrics_and_nothing_else(self):
        registry, stop = metrics_cmd._registry(self.conf, self.backends)
        self.addCleanup(stop)
        server = metrics_cmd.make_server('127.0.0.1', 0, registry)
        self.addCleanup(server.server_close)
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            base = 'http://127.0.0.1:%d' % server.server_address[1]
            status, body = get(base + '/metrics')
            self.assertEqual(200, status)
            self.assertEqual(3, hits(parse(body)))
            # Read at each scrape, not at start.
            cache.Cache(self.cache_dir, 1024).count(hits=2)
            self.assertEqual(5, hits(parse(get(base + '/metrics')[1])))
            self.assertEqual(404, get(base + '/')[0])
        finally:
            server.shutdown()
            thread.join(10)
        self.assertFalse(thread.is_alive())

    def test_runs_until_sigterm_then_returns(self):
        port = free_port()
        url = 'http://127.0.0.1:%d/metrics' % port
        answers = []
        helper = threading.Thread(target=scrape_then_terminate,
                                  args=(url, answers))
        helper.start()
        previous = signal.getsignal(signal.SIGTERM)
        metrics_cmd.cmd_exporter(
            argparse.Namespace(listen='127.0.0.1:%d' % port), self.conf,
            self.backends)
        helper.join(30)
        self.assertEqual(previous, signal.getsignal(signal.SIGTERM))
        self.assertEqual(200, answers[0][0])
        self.assertEqual(3, hits(parse(answers[0][1])))
        self.assertIn('serving the metrics of remote-glance backends c on '
                      'http://127.0.0.1:%d/metrics' % port, self.logger.output)
        # The port is free again.
        # The listener is closed: the port can be bound again (address
        # reuse only for connections in TIME_WAIT).
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(('127.0.0.1', port))
            s.listen()
