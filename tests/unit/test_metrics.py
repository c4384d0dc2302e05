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

"""Unit tests of metrics.py: the node's collector on real caches in a temp
dir, its exposition parsed back as Prometheus would read it."""

import hashlib
import os
import shutil
import subprocess
import threading
import time
import types
import uuid

import fixtures
from prometheus_client import exposition
from prometheus_client import parser
from prometheus_client import registry as registry_module
import testtools

from glance_store_remote import breaker
from glance_store_remote import cache
from glance_store_remote import cache_index
from glance_store_remote import coordination
from glance_store_remote import exceptions
from glance_store_remote import glance_edge
from glance_store_remote import metrics
from glance_store_remote import readiness
from tests.harness import daemon

KiB = 1024


def put(store, image_id, data, pinned=False):
    """A complete entry, filled and committed as a fill does."""
    record = {'id': image_id, 'size': len(data), 'status': 'active',
              'os_hash_algo': 'sha512',
              'os_hash_value': hashlib.sha512(data).hexdigest()}
    assert store.reserve(cache.expected_from_record(record), record)
    with open(store.data_path(image_id, partial=True), 'wb') as f:
        f.write(data)
    store.commit(image_id, record)
    if pinned:
        store.set_pinned(image_id, True)


def reserve(store, image_id, size):
    """A partial entry: a fill's reservation."""
    record = {'id': image_id, 'size': size, 'status': 'active'}
    assert store.reserve(cache.expected_from_record(record), record)


class FakeSite:
    """A coordination.Site's members() as the collector sees it."""

    def __init__(self, members=None, error=None):
        self._members = members
        self._error = error

    def members(self):
        if self._error:
            raise self._error
        return self._members


def exposition_text(*sources, outage_report=None, site_outage_report=None):
    registry = registry_module.CollectorRegistry(auto_describe=False)
    registry.register(metrics.NodeCollector(
        sources, outage_report=outage_report,
        site_outage_report=site_outage_report))
    return exposition.generate_latest(registry).decode()


def scrape(*sources, outage_report=None, site_outage_report=None):
    """{(sample name, frozenset of label items): value} and the families
    of one exposition of a collector of *sources*.
    """
    text = exposition_text(*sources, outage_report=outage_report,
                           site_outage_report=site_outage_report)
    families = list(parser.text_string_to_metric_families(text))
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in families for s in family.samples}
    return samples, families


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def samples_of(collector):
    """{(sample name, frozenset of label items): value} of one
    exposition of *collector*.
    """
    registry = registry_module.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = exposition.generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in parser.text_string_to_metric_families(text)
            for s in family.samples}


def names(samples, backend=None):
    return {name for name, labels in samples
            if backend is None or ('backend', backend) in labels}


class CollectorTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.folder = self.useFixture(fixtures.TempDir()).path
        self.now = [10000.0]

    def make_cache(self, name, max_size=100 * KiB):
        return cache.Cache(os.path.join(self.folder, name), max_size,
                           clock=lambda: self.now[0])

    def source(self, backend, store, site=None, threshold=2, prober=None):
        return metrics.Source(backend, store, breaker.Breaker(
            threshold, 60, state=breaker.IndexState(store, backend),
            clock=lambda: self.now[0]), site, prober)


class TestOneBackend(CollectorTestCase):

    def setUp(self):
        super().setUp()
        self.cache = self.make_cache('c', max_size=64 * KiB)
        self.images = [str(uuid.uuid4()) for _ in range(4)]
        put(self.cache, self.images[0], b'a' * KiB, pinned=True)
        put(self.cache, self.images[1], b'b' * 2 * KiB)
        reserve(self.cache, self.images[2], 4 * KiB)
        self.cache.count(hits=11, misses=3, coalesced=2, peer_reads=5,
                         passthrough=7, unavailable=13, busy=17,
                         bytes_from_cache=1000, bytes_from_central=2000,
                         bytes_from_peers=3000, bytes_resent=40,
                         verification_failures=1, resumes=6)
        for seconds in (0.5, 1, 20, 5000):
            self.cache.record_fill('verified', seconds)
        self.cache.record_fill('failed', 3)
        self.cache.save_central('c', True, 1234.5)
        self.cache.save_central('c', False, 1300.0)
        self.report = types.SimpleNamespace(unready=self.images[2:],
                                            unpinned=[self.images[1]])
        # The site: another node holds images[2], none holds images[3].
        self.site_report = types.SimpleNamespace(unready=self.images[3:],
                                                 unpinned=[])
        self.samples, self.families = scrape(
            self.source('c', self.cache, FakeSite({'http://a': set(),
                                                   'http://b': {'x'}})),
            outage_report=lambda backend, store: self.report,
            site_outage_report=lambda backend, urls: self.site_report)

    def test_every_family_is_exported_with_a_backend_label(self):
        self.assertEqual(set(metrics.SERIES), names(self.samples))
        for name, labels in self.samples:
            self.assertIn(('backend', 'c'), labels, name)
        self.assertEqual(
            set(metrics.FAMILIES),
            {f.name + '_total' if f.type == 'counter' else f.name
             for f in self.families})

    def test_requests_by_result(self):
        for result, count in (('hit', 11), ('miss', 3), ('coalesced', 2),
                              ('peer', 5), ('passthrough', 7),
                              ('unavailable', 13), ('busy', 17)):
            self.assertEqual(count, value(
                self.samples, 'glance_remote_requests_total', backend='c',
                result=result))

    def test_bytes_and_single_counters(self):
        for source, count in (('cache', 1000), ('central', 2000),
                              ('peer', 3000)):
            self.assertEqual(count, value(
                self.samples, 'glance_remote_bytes_total', backend='c',
                source=source))
        for name, count in (('bytes_resent', 40),
                            ('verification_failures', 1), ('resumes', 6),
                            ('evictions', 0)):
            self.assertEqual(count, value(
                self.samples, 'glance_remote_%s_total' % name, backend='c'))

    def test_fill_durations_are_a_cumulative_histogram(self):
        name = 'glance_remote_fill_duration_seconds'
        bounds = [str(float(b)) for b in cache_index.FILL_BUCKETS] + ['+Inf']
        verified = [value(self.samples, name + '_bucket', backend='c',
                          outcome='verified', le=le) for le in bounds]
        # 0.5 and 1 in le=1, 20 in le=30, 5000 above the last bound.
        self.assertEqual([2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4], verified)
        self.assertEqual(4, value(self.samples, name + '_count', backend='c',
                                  outcome='verified'))
        self.assertEqual(5021.5, value(self.samples, name + '_sum',
                                       backend='c', outcome='verified'))
        failed = [value(self.samples, name + '_bucket', backend='c',
                        outcome='failed', le=le) for le in bounds]
        self.assertEqual([0] + [1] * 10, failed)
        self.assertEqual(1, value(self.samples, name + '_count', backend='c',
                                  outcome='failed'))
        self.assertEqual(3, value(self.samples, name + '_sum', backend='c',
                                  outcome='failed'))

    def test_cache_use_and_entries(self):
        self.assertEqual(7 * KiB, value(
            self.samples, 'glance_remote_cache_used_bytes', backend='c'))
        self.assertEqual(64 * KiB, value(
            self.samples, 'glance_remote_cache_capacity_bytes', backend='c'))
        self.assertEqual(2, value(self.samples, 'glance_remote_cache_entries',
                                  backend='c', state='complete'))
        self.assertEqual(1, value(self.samples, 'glance_remote_cache_entries',
                                  backend='c', state='partial'))
        self.assertEqual(1, value(
            self.samples, 'glance_remote_cache_pinned_entries', backend='c'))
        self.assertEqual(KiB, value(
            self.samples, 'glance_remote_cache_pinned_bytes', backend='c'))

    def test_central_as_last_seen(self):
        self.assertEqual(0, value(self.samples, 'glance_remote_central_up',
                                  backend='c'))
        self.assertEqual(1234.5, value(
            self.samples,
            'glance_remote_last_central_success_timestamp_seconds',
            backend='c'))
        self.assertEqual(0, value(self.samples, 'glance_remote_breaker_open',
                                  backend='c'))

    def test_outage_and_site(self):
        self.assertEqual(2, value(
            self.samples, 'glance_remote_outage_unready_images', backend='c'))
        self.assertEqual(1, value(
            self.samples, 'glance_remote_outage_unpinned_images',
            backend='c'))
        self.assertEqual(2, value(self.samples, 'glance_remote_site_members',
                                  backend='c'))
        self.assertEqual(1, value(
            self.samples, 'glance_remote_coordinator_up', backend='c'))
        self.assertEqual(1, value(
            self.samples, 'glance_remote_site_outage_unready_images',
            backend='c'))
        self.assertEqual(0, value(
            self.samples, 'glance_remote_site_outage_unpinned_images',
            backend='c'))
        for part in ('index', 'outage', 'site_outage'):
            self.assertEqual(0, value(
                self.samples, 'glance_remote_collect_errors', backend='c',
                part=part))

    def test_prometheus_own_linter_accepts_the_exposition(self):
        promtool = shutil.which('promtool')
        if not promtool:
            self.skipTest(daemon.skip_reason(
                'exposition lint', ['promtool (package prometheus)'],
                ['prometheus']))
        text = exposition_text(
            self.source('c', self.cache, FakeSite({'http://a': set()})),
            outage_report=lambda backend, store: self.report)
        done = subprocess.run([promtool, 'check', 'metrics'],
                              input=text.encode(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual((0, b''), (done.returncode, done.stdout))

    def test_no_label_carries_an_image_id(self):
        for _, labels in self.samples:
            for _, label in labels:
                for image_id in self.images:
                    self.assertNotIn(image_id, label)

    def test_a_scrape_writes_nothing_to_the_index_but_a_probe(self):
        # Central's outcome is recent: the prober asks nothing and the
        # scrape writes nothing.
        self.cache.save_central('c', False, time.time())
        central = FakeCentral()
        prober = metrics.Prober(central, self.cache,
                                clock=lambda: self.now[0])
        before = (self.cache.counters(), self.cache.fill_durations(),
                  self.cache.entries(), self.cache.load_central('c'),
                  self.cache.load_breaker('c'))
        scrape(self.source('c', self.cache, prober=prober))
        self.assertEqual(0, central.probes)
        self.assertEqual(before, (self.cache.counters(),
                                  self.cache.fill_durations(),
                                  self.cache.entries(),
                                  self.cache.load_central('c'),
                                  self.cache.load_breaker('c')))


class TestStates(CollectorTestCase):

    def setUp(self):
        super().setUp()
        self.cache = self.make_cache('c')

    def test_central_has_no_sample_before_a_request_was_seen(self):
        samples, _ = scrape(self.source('c', self.cache))
        self.assertNotIn('glance_remote_central_up', names(samples))
        self.assertNotIn(
            'glance_remote_last_central_success_timestamp_seconds',
            names(samples))
        self.assertEqual(0, value(samples, 'glance_remote_requests_total',
                                  backend='c', result='hit'))

    def test_no_success_timestamp_before_a_success(self):
        self.cache.save_central('c', False, 50.0)
        samples, _ = scrape(self.source('c', self.cache))
        self.assertEqual(0, value(samples, 'glance_remote_central_up',
                                  backend='c'))
        self.assertNotIn(
            'glance_remote_last_central_success_timestamp_seconds',
            names(samples))

    def test_central_of_another_backend_is_not_ours(self):
        self.cache.save_central('other', True, 50.0)
        samples, _ = scrape(self.source('c', self.cache))
        self.assertNotIn('glance_remote_central_up', names(samples))

    def test_an_open_breaker_counts_as_open_and_a_half_open_not(self):
        src = self.source('c', self.cache, threshold=2)
        src.breaker.failed()
        samples, _ = scrape(src)
        self.assertEqual(0, value(samples, 'glance_remote_breaker_open',
                                  backend='c'))
        src.breaker.failed()
        samples, _ = scrape(src)
        self.assertEqual(1, value(samples, 'glance_remote_breaker_open',
                                  backend='c'))
        # Past reset_after: half-open, the next read tries central (an
        # idle node stays so until one does: it fails no read fast).
        self.now[0] += 61
        samples, _ = scrape(src)
        self.assertEqual(0, value(samples, 'glance_remote_breaker_open',
                                  backend='c'))
        src.breaker.succeeded()
        samples, _ = scrape(src)
        self.assertEqual(0, value(samples, 'glance_remote_breaker_open',
                                  backend='c'))

    def test_a_coordinator_down_gives_0_and_no_member_count(self):
        samples, _ = scrape(self.source('c', self.cache, FakeSite(
            error=coordination.Unavailable('coordinator unavailable'))))
        self.assertEqual(0, value(samples, 'glance_remote_coordinator_up',
                                  backend='c'))
        self.assertNotIn('glance_remote_site_members', names(samples))

    def test_a_node_without_site_exports_no_site_families(self):
        samples, _ = scrape(self.source('c', self.cache))
        self.assertFalse({'glance_remote_coordinator_up',
                          'glance_remote_site_members'} & names(samples))

    def test_an_outage_report_that_fails_leaves_its_families_out(self):
        def report(backend, store):
            raise exceptions.RemoteGlanceError('edge database unreachable')
        logger = self.useFixture(fixtures.FakeLogger())
        samples, _ = scrape(self.source('c', self.cache),
                            outage_report=report)
        self.assertFalse(names(samples) & {
            'glance_remote_outage_unready_images',
            'glance_remote_outage_unpinned_images'})
        self.assertEqual(1, value(samples, 'glance_remote_collect_errors',
                                  backend='c', part='outage'))
        self.assertEqual(0, value(samples, 'glance_remote_collect_errors',
                                  backend='c', part='index'))
        self.assertIn('edge database unreachable', logger.output)

    def test_a_failure_is_logged_once_per_episode(self):
        outcomes = [exceptions.RemoteGlanceError('down')] * 2 + [
            types.SimpleNamespace(unready=[], unpinned=[])] + [
            exceptions.RemoteGlanceError('down')]

        def report(backend, store):
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        logger = self.useFixture(fixtures.FakeLogger())
        collector = metrics.NodeCollector([self.source('c', self.cache)],
                                          outage_report=report)
        for _ in range(4):
            list(collector.collect())
        self.assertEqual(2, logger.output.count(
            'outage readiness not known: down'))
        self.assertEqual(1, logger.output.count('outage readiness read '
                                                'again'))

    def test_without_an_outage_report_no_outage_families(self):
        samples, _ = scrape(self.source('c', self.cache))
        self.assertNotIn(('glance_remote_collect_errors',
                          frozenset({('backend', 'c'), ('part', 'outage')})),
                         samples)
        self.assertNotIn('glance_remote_outage_unready_images',
                         names(samples))

    def test_the_report_is_asked_with_the_backend_and_its_cache(self):
        asked = []

        def report(backend, store):
            asked.append((backend, store))
            return types.SimpleNamespace(unready=[], unpinned=[])
        samples, _ = scrape(self.source('c', self.cache),
                            outage_report=report)
        self.assertEqual([('c', self.cache)], asked)
        self.assertEqual(0, value(
            samples, 'glance_remote_outage_unready_images', backend='c'))

    def test_source_builds_the_breaker_of_the_group(self):
        group = types.SimpleNamespace(remote_glance_breaker_threshold=1,
                                      remote_glance_breaker_reset=30)
        src = metrics.source(group, 'c', self.cache)
        self.assertEqual((1, 30), (src.breaker.threshold,
                                   src.breaker.reset_after))
        src.breaker.failed()
        samples, _ = scrape(src)
        self.assertEqual(1, value(samples, 'glance_remote_breaker_open',
                                  backend='c'))
        self.assertIsNone(metrics.source(group, 'd', None).breaker)


class TestSeveralBackends(CollectorTestCase):

    def test_each_backend_is_labelled_with_its_own_numbers(self):
        first, second = self.make_cache('one'), self.make_cache('two')
        first.count(hits=1)
        second.count(hits=2)
        put(second, str(uuid.uuid4()), b'x' * KiB)
        samples, families = scrape(self.source('one', first),
                                   self.source('two', second))
        for backend, hits, used in (('one', 1, 0), ('two', 2, KiB)):
            self.assertEqual(hits, value(
                samples, 'glance_remote_requests_total', backend=backend,
                result='hit'))
            self.assertEqual(used, value(
                samples, 'glance_remote_cache_used_bytes', backend=backend))
        # One family each, both backends in it.
        self.assertEqual(len(families), len({f.name for f in families}))

    def test_a_broken_index_does_not_hide_the_other_backends(self):
        broken, good = self.make_cache('broken'), self.make_cache('good')
        good.count(misses=4)
        broken.index.db().execute('DROP TABLE counters')
        logger = self.useFixture(fixtures.FakeLogger())
        samples, _ = scrape(self.source('broken', broken),
                            self.source('good', good))
        self.assertEqual(4, value(samples, 'glance_remote_requests_total',
                                  backend='good', result='miss'))
        self.assertEqual({'glance_remote_collect_errors'},
                         names(samples, 'broken'))
        self.assertEqual(1, value(samples, 'glance_remote_collect_errors',
                                  backend='broken', part='index'))
        self.assertEqual(0, value(samples, 'glance_remote_collect_errors',
                                  backend='good', part='index'))
        self.assertIn('remote-glance backend broken: cache index not '
                      'readable', logger.output)

    def test_a_backend_without_cache_exports_only_its_outage(self):
        good = self.make_cache('good')
        asked = []

        def report(backend, store):
            asked.append((backend, store))
            return types.SimpleNamespace(unready=['x'] * 3, unpinned=[])
        samples, _ = scrape(metrics.Source('nocache', None, None, None, None),
                            self.source('good', good), outage_report=report)
        self.assertEqual({'glance_remote_outage_unready_images',
                          'glance_remote_outage_unpinned_images',
                          'glance_remote_collect_errors'},
                         names(samples, 'nocache'))
        self.assertEqual(3, value(
            samples, 'glance_remote_outage_unready_images',
            backend='nocache'))
        self.assertEqual([('nocache', None), ('good', good)], asked)
        self.assertIn('glance_remote_requests_total', names(samples, 'good'))
        samples, _ = scrape(metrics.Source('nocache', None, None, None, None))
        self.assertEqual(set(), names(samples))


class FakeCentral:
    """upstream.Central's probe: it answers or raises, once *release* is
    set when given.
    """

    backend = 'c'

    def __init__(self, answers=True, release=None):
        self.answers = answers
        self.release = release
        self.probes = 0

    def probe(self):
        self.probes += 1
        if self.release is not None:
            self.release.wait(10)
        if not self.answers:
            raise exceptions.UpstreamUnavailable('c', 'refused')
        return 'http://central'


class TestProbe(CollectorTestCase):
    """A node whose reads are all hits still says whether central
    answers: the scrape asks central when no outcome is recent, records
    the outcome in the central row, and leaves the workers' breaker alone.
    """

    def setUp(self):
        super().setUp()
        self.cache = self.make_cache('c')

    def collector(self, *centrals):
        self.probers = [metrics.Prober(central, self.cache,
                                       clock=lambda: self.now[0])
                        for central in centrals]
        return metrics.NodeCollector(
            [self.source('c', self.cache, prober=prober)
             for prober in self.probers], clock=lambda: self.now[0])

    def test_probe_due_when_no_outcome_is_recent(self):
        seen = cache_index.CentralSeen
        now = 1000.0
        stale = now - metrics.PROBE_AFTER - 1
        self.assertTrue(metrics.probe_due(None, now))
        self.assertTrue(metrics.probe_due(seen(True, None, None), now))
        self.assertTrue(metrics.probe_due(seen(True, stale, None), now))
        self.assertTrue(metrics.probe_due(seen(False, stale, stale), now))
        # A recent failure of the workers is their word: no probe.
        self.assertFalse(metrics.probe_due(seen(False, stale, now - 1), now))
        self.assertFalse(metrics.probe_due(seen(True, now - 1, None), now))
        # A clock that stepped back probes.
        self.assertTrue(metrics.probe_due(seen(True, now + 60, None), now))

    def test_a_node_that_never_asked_central_asks_it_at_the_scrape(self):
        central = FakeCentral()
        samples = samples_of(self.collector(central))
        self.assertEqual(1, central.probes)
        self.assertEqual(1, value(samples, 'glance_remote_central_up',
                                  backend='c'))
        self.assertEqual(self.now[0], value(
            samples, 'glance_remote_last_central_success_timestamp_seconds',
            backend='c'))

    def test_a_cut_is_seen_by_the_scrape_of_an_idle_node(self):
        self.cache.save_central('c', True, self.now[0] - 3600)
        samples = samples_of(self.collector(FakeCentral(answers=False)))
        self.assertEqual(0, value(samples, 'glance_remote_central_up',
                                  backend='c'))

    def test_a_recent_outcome_is_not_asked_again(self):
        for up in (True, False):
            self.cache.save_central('c', up, self.now[0] - 1)
            central = FakeCentral()
            samples_of(self.collector(central))
            self.assertEqual(0, central.probes)

    def test_the_probe_leaves_the_workers_breaker_alone(self):
        # The workers' breaker opened; the probe's success is recorded as
        # central's state but does not close their breaker.
        workers = breaker.Breaker(1, 60, state=breaker.IndexState(
            self.cache, 'c'), clock=lambda: self.now[0])
        workers.failed()
        self.now[0] += metrics.PROBE_AFTER + 1
        samples = samples_of(self.collector(FakeCentral()))
        self.assertEqual(1, value(samples, 'glance_remote_central_up',
                                  backend='c'))
        self.assertEqual(1, value(samples, 'glance_remote_breaker_open',
                                  backend='c'))
        self.assertEqual(breaker.OPEN, workers.state()[0])

    def test_slow_centrals_hold_the_scrape_no_longer_than_one_wait(self):
        release = threading.Event()
        self.addCleanup(release.set)
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.metrics.PROBE_WAIT', 0.2))
        centrals = [FakeCentral(release=release) for _ in range(3)]
        collector = self.collector(*centrals)
        started = time.monotonic()
        samples = samples_of(collector)
        # Three probes at once, one wait: well under three waits.
        self.assertLess(time.monotonic() - started, 0.55)
        self.assertNotIn(('glance_remote_central_up',
                          frozenset({('backend', 'c')})), samples)
        # A second scrape starts no second probe while the first runs.
        samples_of(collector)
        self.assertEqual([1, 1, 1], [c.probes for c in centrals])
        release.set()
        for prober in self.probers:
            prober.start().join(10)
        self.assertEqual(1, value(samples_of(collector),
                                  'glance_remote_central_up', backend='c'))

    def test_without_counting_nothing_is_probed(self):
        quiet = cache.Cache(os.path.join(self.folder, 'q'), KiB,
                            counting=False)
        group = types.SimpleNamespace(remote_glance_breaker_threshold=1,
                                      remote_glance_breaker_reset=60)
        self.assertIsNone(metrics.source(group, 'q', quiet,
                                         central=FakeCentral()).prober)
        self.assertIsNotNone(metrics.source(group, 'c', self.cache,
                                            central=FakeCentral()).prober)


class TestSiteOutage(CollectorTestCase):
    """The site outage families: what no member of a coordinated site
    holds, asked over the members the scrape listed.
    """

    def setUp(self):
        super().setUp()
        self.cache = self.make_cache('c')
        self.asked = []
        self.members = {'http://b': set(), 'http://a': {'x'}}

    def report(self, unready=(), unpinned=(), error=None):
        def site_outage_report(backend, urls):
            self.asked.append((backend, urls))
            if error is not None:
                raise error
            return types.SimpleNamespace(unready=list(unready),
                                         unpinned=list(unpinned))
        return site_outage_report

    def test_asked_with_the_members_listed(self):
        samples, _ = scrape(
            self.source('c', self.cache, FakeSite(self.members)),
            site_outage_report=self.report(['i1', 'i2'], ['i3']))
        self.assertEqual([('c', ['http://a', 'http://b'])], self.asked)
        self.assertEqual(2, value(
            samples, 'glance_remote_site_outage_unready_images', backend='c'))
        self.assertEqual(1, value(
            samples, 'glance_remote_site_outage_unpinned_images',
            backend='c'))
        self.assertEqual(0, value(samples, 'glance_remote_collect_errors',
                                  backend='c', part='site_outage'))

    def test_with_the_real_site_report_a_silent_member_holds_nothing(self):
        # The report the command line builds, on views: b holds i1, a
        # did not answer (it held i2).
        def site_outage_report(backend, urls):
            views = {'http://a': None, 'http://b': {'entries': [
                {'image_id': 'c1', 'state': 'complete', 'pinned': True}]}}
            self.assertEqual(sorted(views), urls)
            return readiness.classify(
                [glance_edge.LinkedImage('e1', 'c1', 1),
                 glance_edge.LinkedImage('e2', 'c2', 1)],
                *readiness.site_holdings(views))
        samples, _ = scrape(
            self.source('c', self.cache, FakeSite(self.members)),
            site_outage_report=site_outage_report)
        self.assertEqual(1, value(
            samples, 'glance_remote_site_outage_unready_images', backend='c'))

    def test_a_failing_report_is_a_collect_error_logged_once(self):
        logger = self.useFixture(fixtures.FakeLogger())
        collector = metrics.NodeCollector(
            [self.source('c', self.cache, FakeSite(self.members))],
            site_outage_report=self.report(
                error=exceptions.RemoteGlanceError('edge database gone')))
        for _ in range(2):
            samples = samples_of(collector)
            self.assertEqual(1, value(
                samples, 'glance_remote_collect_errors', backend='c',
                part='site_outage'))
            self.assertNotIn('glance_remote_site_outage_unready_images',
                             names(samples))
            # The node's own families are there.
            self.assertIn('glance_remote_site_members', names(samples))
        self.assertEqual(1, logger.output.count(
            'site outage readiness not known: edge database gone'))

    def test_no_site_family_without_a_member_list(self):
        # Coordinator down: no member list, the node's count stands.
        samples, _ = scrape(
            self.source('c', self.cache, FakeSite(
                error=coordination.Unavailable('down'))),
            site_outage_report=self.report())
        self.assertEqual([], self.asked)
        self.assertFalse({'glance_remote_site_outage_unready_images',
                          'glance_remote_site_outage_unpinned_images'} &
                         names(samples))
        # Not a site, no report asked.
        samples, _ = scrape(self.source('c', self.cache),
                            site_outage_report=self.report())
        self.assertEqual([], self.asked)

    def test_a_backend_that_cannot_ask_its_peers_has_no_site_family(self):
        samples, _ = scrape(
            self.source('c', self.cache, FakeSite(self.members)),
            site_outage_report=lambda backend, urls: None)
        self.assertNotIn('glance_remote_site_outage_unready_images',
                         names(samples))
        self.assertNotIn(('glance_remote_collect_errors', frozenset(
            {('backend', 'c'), ('part', 'site_outage')})), samples)
