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

"""The node's Prometheus metrics, read at scrape time from what every
glance-api worker shares: the cache index of each remote-glance backend
(cache_index.py).

The workers keep no metric of their own: each event is a short
transaction in the index they all share (the counters of ``glance-remote
cache stats``, the fills' durations, central's last outcome, the breaker),
so the sum over the workers is there by construction and survives their
restarts. prometheus_client's multiprocess mode is not used: it needs an
environment variable in every worker before import, a directory wiped at
each start, and glance-api has no route to serve it. NodeCollector is a
prometheus_client collector that reads the index at each collect(); the
command line serves it (cmd/metrics.py). A scrape reads a few rows per
backend (the outage report more: see NodeCollector.collect), writes no
more than central's row after a probe (below), and never touches the data
path: the workers' counters and breaker stay theirs.

Every family has the label ``backend`` (the backend group); no label ever
carries an image ID, a user or a project. FAMILIES lists the names that
dashboards and alert rules rely on (a contract).

A backend without a cache (no remote_glance_cache_dir) has no index: its
breaker and counters live in each worker's memory, out of reach. Only what
needs no index is exported for it: the outage families (every image it
serves is unready: nothing is held).

Central as last seen by the workers says nothing of a node whose reads
are all hits: it may not have asked central for hours. So when no outcome
of a request to central (a success or a failure) is newer than
PROBE_AFTER seconds, the collector asks central itself (Prober: the
request ``glance-remote check`` makes) and records the outcome in the
index's central row, as a worker's: a cut is seen before a boot needs
central, and a return is seen although no worker asks. The probe has a
breaker of its own that never opens: it neither opens nor closes the
workers' breaker. Probes of all backends start together and a scrape
waits PROBE_WAIT seconds at most for them; a probe still running gives
its outcome to the next scrape. With ``remote_glance_metrics = False``
nothing is recorded, and nothing is probed.

A backend whose index cannot be read is left out of that scrape and
``glance_remote_collect_errors{part="index"}`` is 1 for it; the other
backends are exported as usual. The same family with ``part="outage"``
says that the outage report (readiness.py: the edge database) could not
be made; the outage families then have no sample for that backend. Each
such failure is logged as a warning when it starts or changes, not at
every scrape.

On a coordinated site a node reads from a peer that holds an image
complete, also while central is cut: what this node lacks overstates the
site's risk. The site outage families say what no node of the site holds
(readiness.site_report over the cache views of the members the scrape
listed, asked at once over the peer path: one signed GET per member per
scrape). A member that does not answer holds nothing there, so the count
errs on the side of an alert. ``part="site_outage"`` says that report
could not be made; with the coordinator down, there is no member list and
no site outage sample (the node's own count stands for it).
"""

import collections
import itertools
import logging
import sqlite3
import threading
import time

from prometheus_client import metrics_core
from prometheus_client import utils

from glance_store_remote import breaker as breaker_module
from glance_store_remote import cache_index
from glance_store_remote import coordination
from glance_store_remote import exceptions

LOG = logging.getLogger(__name__)

# result label of glance_remote_requests_total, by index counter.
REQUEST_RESULTS = {
    'hits': 'hit', 'misses': 'miss', 'coalesced': 'coalesced',
    'peer_reads': 'peer', 'passthrough': 'passthrough',
    'unavailable': 'unavailable', 'busy': 'busy'}
# source label of glance_remote_bytes_total, by index counter.
BYTE_SOURCES = {'bytes_from_cache': 'cache',
                'bytes_from_central': 'central',
                'bytes_from_peers': 'peer'}
# Counter families of one index counter each, by index counter.
SINGLE_COUNTERS = {
    'bytes_resent': 'glance_remote_bytes_resent_total',
    'verification_failures': 'glance_remote_verification_failures_total',
    'resumes': 'glance_remote_resumes_total',
    'evictions': 'glance_remote_evictions_total'}
HISTOGRAMS = ('glance_remote_fill_duration_seconds',)
# Every family this module exports, named as PromQL names them (counters
# with _total; a histogram by its base name, see SERIES).
FAMILIES = (
    'glance_remote_requests_total',
    'glance_remote_bytes_total',
    'glance_remote_bytes_resent_total',
    'glance_remote_verification_failures_total',
    'glance_remote_resumes_total',
    'glance_remote_evictions_total',
    'glance_remote_fill_duration_seconds',
    'glance_remote_cache_used_bytes',
    'glance_remote_cache_capacity_bytes',
    'glance_remote_cache_entries',
    'glance_remote_cache_pinned_entries',
    'glance_remote_cache_pinned_bytes',
    'glance_remote_central_up',
    'glance_remote_breaker_open',
    'glance_remote_last_central_success_timestamp_seconds',
    'glance_remote_outage_unready_images',
    'glance_remote_outage_unpinned_images',
    'glance_remote_site_members',
    'glance_remote_coordinator_up',
    'glance_remote_site_outage_unready_images',
    'glance_remote_site_outage_unpinned_images',
    'glance_remote_collect_errors',
)
# Every series name a query may use: the families, a histogram's as its
# _bucket, _count and _sum.
SERIES = tuple(name for name in FAMILIES if name not in HISTOGRAMS) + tuple(
    name + suffix for name in HISTOGRAMS
    for suffix in ('_bucket', '_count', '_sum'))

# Seconds without an answer from central after which a scrape asks it,
# and seconds a scrape waits for that answer (see the module docstring).
PROBE_AFTER = 30.0
PROBE_WAIT = 5.0
# Seconds a scrape waits for a member's cache view (its connect timeout
# aside): a Prometheus scrape times out after 10 s by default.
SITE_VIEW_TIMEOUT = 5.0

# What the collector reads of one backend: its group name, its
# cache.Cache (or None), a breaker.Breaker on the cache's index (or None),
# its coordination.Site (or None: not coordinated) and a Prober of its
# central (or None: never probed).
Source = collections.namedtuple('Source',
                                'backend cache breaker site prober')


def source(group, backend, cache, site=None, central=None):
    """The Source of backend group *backend* (its options *group*);
    *central*, an upstream.Central with a breaker of its own
    (``own_breaker``), is probed when the workers' view of it is stale.
    """
    breaker = None
    if cache is not None:
        breaker = breaker_module.Breaker(
            group.remote_glance_breaker_threshold,
            group.remote_glance_breaker_reset,
            state=breaker_module.IndexState(cache, backend))
    prober = None
    if central is not None and cache is not None and cache.counting:
        prober = Prober(central, cache)
    return Source(backend, cache, breaker, site, prober)


class Prober:
    """Asks central whether it answers (upstream.Central.probe), in a
    thread of its own, one request at a time, and records the outcome in
    the cache index's central row (cache.Cache.save_central), under the
    backend's name as the workers' breaker records theirs.
    """

    def __init__(self, central, cache, clock=time.time):
        self._central = central
        self._cache = cache
        self._clock = clock
        self._lock = threading.Lock()
        self._thread = None

    def start(self):
        """Start a probe unless one runs; return its thread."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._ask, daemon=True,
                    name='central-probe-%s' % self._central.backend)
                self._thread.start()
            return self._thread

    def _ask(self):
        try:
            self._central.probe()
            up = True
        except exceptions.RemoteGlanceError as e:
            LOG.debug('remote-glance backend %s: central does not answer '
                      'the probe: %s', self._central.backend, e)
            up = False
        self._cache.save_central(self._central.backend, up, self._clock())


def probe_due(seen, now):
    """Whether a scrape should ask central itself, given the index's
    cache_index.CentralSeen (or None) at *now*: no outcome, a success or a
    failure, is newer than PROBE_AFTER seconds.
    """
    if seen is None:
        return True
    latest = max((t for t in (seen.last_success, seen.last_failure)
                  if t is not None), default=None)
    return latest is None or not 0 <= now - latest < PROBE_AFTER


# What one scrape read of a backend's index.
_Reading = collections.namedtuple(
    '_Reading', 'counters durations totals capacity central breaker_state')


def _read_index(src):
    """The _Reading of *src*'s index.

    :raises CacheError, sqlite3.Error, OSError: the index cannot be read
    """
    cache = src.cache
    return _Reading(cache.counters(), cache.fill_durations(), cache.totals(),
                    cache.max_size, cache.load_central(src.backend),
                    src.breaker.state()[0])


class NodeCollector:
    """A prometheus_client collector of the metrics of one node.

    :param sources: a Source for each backend
    :param outage_report: a callable (backend, cache) -> an object with
        ``unready`` and ``unpinned`` (lists of image IDs), raising
        RemoteGlanceError when it cannot tell (readiness.node_report with
        its configuration bound); None exports no outage families
    :param site_outage_report: a callable (backend, member peer URLs) ->
        such an object for the whole site (readiness.site_report over the
        members' cache views), or None when the backend cannot ask its
        peers; raising RemoteGlanceError when it cannot tell. Asked for a
        coordinated backend whose coordinator listed its members; None
        exports no site outage families
    """

    def __init__(self, sources, outage_report=None, clock=time.time,
                 site_outage_report=None):
        self._sources = list(sources)
        self._outage_report = outage_report
        self._site_outage_report = site_outage_report
        self._clock = clock
        # {(backend, part): the error last logged}, for one warning per
        # episode of failures.
        self._failing = {}

    def collect(self):
        """The families, read now. Cost per backend with a cache: six
        small SQLite reads, whatever the number of entries, and a request
        to central when the workers' view of it is stale; the outage
        report when there is one (a query of the edge database and a stat
        per complete entry); on a coordinated site 1 + (number of members)
        calls to the coordinator and, with a site outage report, one
        signed GET per member (all at once) and another query of the edge
        database.
        """
        self._probe_stale_centrals()
        out = _Families()
        for src in self._sources:
            if src.cache is not None:
                try:
                    reading = _read_index(src)
                except (exceptions.CacheError, sqlite3.Error,
                        OSError) as e:
                    self._failed(out, src.backend, 'index',
                                 'cache index not readable, no metrics of '
                                 'it: %s' % e)
                else:
                    self._succeeded(out, src.backend, 'index')
                    out.add_reading(src.backend, reading)
            if self._outage_report is not None:
                self._add_outage(out, src)
            if src.site is not None:
                members = self._add_site(out, src)
                if (members is not None and
                        self._site_outage_report is not None):
                    self._add_site_outage(out, src, members)
        return out.families()

    def _probe_stale_centrals(self):
        """Probe every central whose last outcome is stale, all at once,
        and wait PROBE_WAIT seconds at most in all.
        """
        probes = []
        for src in self._sources:
            if src.prober is None:
                continue
            try:
                seen = src.cache.load_central(src.backend)
            except (exceptions.CacheError, sqlite3.Error, OSError):
                continue  # the index read below reports it
            if probe_due(seen, self._clock()):
                probes.append(src.prober.start())
        deadline = time.monotonic() + PROBE_WAIT
        for thread in probes:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _add_outage(self, out, src):
        self._add_report(out, src.backend, 'outage', lambda: (
            self._outage_report(src.backend, src.cache)))

    def _add_report(self, out, backend, part, report_of):
        """The unready and unpinned gauges of *part* ('outage' or
        'site_outage') from the report *report_of()* returns (None: no
        report, no sample); a failure is collect_errors{part}.
        """
        try:
            report = report_of()
        except (exceptions.RemoteGlanceError, sqlite3.Error, OSError) as e:
            self._failed(out, backend, part, '%s not known: %s'
                         % (_PARTS[part], e))
            return
        if report is None:
            return
        self._succeeded(out, backend, part)
        out.gauge(part + '_unready_images').add_metric(
            [backend], len(report.unready))
        out.gauge(part + '_unpinned_images').add_metric(
            [backend], len(report.unpinned))

    def _failed(self, out, backend, part, error):
        out.errors.add_metric([backend, part], 1)
        if self._failing.get((backend, part)) != error:
            LOG.warning('remote-glance backend %s: %s', backend, error)
        self._failing[(backend, part)] = error

    def _succeeded(self, out, backend, part):
        out.errors.add_metric([backend, part], 0)
        if self._failing.pop((backend, part), None) is not None:
            LOG.info('remote-glance backend %s: %s read again', backend,
                     _PARTS[part])

    @staticmethod
    def _add_site(out, src):
        """The members' peer URLs, or None (the coordinator is down)."""
        try:
            members = src.site.members()
        except coordination.Unavailable:
            # Site logs the coordinator's failures, once per episode.
            out.gauge('coordinator_up').add_metric([src.backend], 0)
            return None
        out.gauge('coordinator_up').add_metric([src.backend], 1)
        out.gauge('site_members').add_metric([src.backend], len(members))
        return sorted(members)

    def _add_site_outage(self, out, src, members):
        self._add_report(out, src.backend, 'site_outage', lambda: (
            self._site_outage_report(src.backend, members)))


# What a part of collect_errors is, for the log.
_PARTS = {'index': 'cache index', 'outage': 'outage readiness',
          'site_outage': 'site outage readiness'}


_GAUGE_HELP = {
    'cache_used_bytes': 'Bytes held and reserved by the cache entries '
                        '(complete and partial).',
    'cache_capacity_bytes': 'The cache cap (remote_glance_cache_max_size), '
                            'in bytes.',
    'cache_entries': 'Cache entries, by state (complete, partial).',
    'cache_pinned_entries': 'Cache entries that are pinned (never '
                            'evicted).',
    'cache_pinned_bytes': 'Bytes of the pinned cache entries, which '
                          'eviction never frees.',
    'central_up': '1 if the last request to central (a worker\'s, or '
                  'the exporter\'s probe when the workers\' view is older '
                  'than 30 s) succeeded, else 0.',
    'breaker_open': '1 while the circuit breaker in front of central is '
                    'open (reads that need central fail at once), else 0 '
                    '(closed, or half-open: the next read tries central).',
    'last_central_success_timestamp_seconds':
        'When a worker or the exporter\'s probe last got an answer from '
        'central (epoch seconds; no sample before the first).',
    'outage_unready_images': 'Active edge images on this backend that this '
                             'node does not hold complete: a boot would '
                             'fail for each once central is cut.',
    'outage_unpinned_images': 'Active edge images held complete on this '
                              'node but not pinned (evictable).',
    'site_members': 'Nodes of the site that the coordinator lists (signed '
                    'with the site key, this exporter not counted).',
    'coordinator_up': '1 if the site coordinator answered this scrape, '
                      'else 0.',
    'site_outage_unready_images':
        'Active edge images on this backend that no node of the site '
        'holds complete (a node that did not answer this scrape counts as '
        'holding nothing): a boot would fail for each once central is cut.',
    'site_outage_unpinned_images':
        'Active edge images held complete by a node of the site but pinned '
        'on none of those holding them (evictable).',
}
_COUNTER_HELP = {
    'glance_remote_bytes_resent_total':
        'Bytes central sent again before the offset a read needed (it '
        'serves no byte ranges).',
    'glance_remote_verification_failures_total':
        'Reads and fills whose data, from central or a peer, did not '
        'match central\'s record of the image (discarded).',
    'glance_remote_resumes_total': 'Fills resumed from a verified prefix.',
    'glance_remote_evictions_total': 'Cache entries evicted (to make '
                                     'room, by the operator, or released '
                                     'after a copy into a store).',
}
_GAUGE_LABELS = {'cache_entries': ['backend', 'state']}


class _Families:
    """The families of one scrape, each made once and filled backend by
    backend (a family must appear once in an exposition).
    """

    def __init__(self):
        self._families = collections.OrderedDict()
        self.requests = self._add(metrics_core.CounterMetricFamily(
            'glance_remote_requests', 'Reads of image data through '
            'glance-api (clients\', copy-image\'s, prefetch\'s), each '
            'counted once by result.', labels=['backend', 'result']))
        self.bytes = self._add(metrics_core.CounterMetricFamily(
            'glance_remote_bytes', 'Image bytes served or fetched, by '
            'source (cache: served from the cache; central, peer: read '
            'from there).', labels=['backend', 'source']))
        self.counters = {
            index_name: self._add(metrics_core.CounterMetricFamily(
                family[:-len('_total')], _COUNTER_HELP[family],
                labels=['backend']))
            for index_name, family in SINGLE_COUNTERS.items()}
        self.durations = self._add(metrics_core.HistogramMetricFamily(
            'glance_remote_fill_duration_seconds', 'Durations of the fills '
            'of the cache from central or a peer, by outcome.',
            labels=['backend', 'outcome']))
        self._gauges = {
            name: self._add(metrics_core.GaugeMetricFamily(
                'glance_remote_' + name, text,
                labels=_GAUGE_LABELS.get(name, ['backend'])))
            for name, text in _GAUGE_HELP.items()}
        self.errors = self._add(metrics_core.GaugeMetricFamily(
            'glance_remote_collect_errors', '1 if this scrape could not '
            'read a part of the backend (index: its cache index; outage: '
            'the outage readiness report; site_outage: the site\'s), '
            'else 0.',
            labels=['backend', 'part']))

    def _add(self, family):
        self._families[family.name] = family
        return family

    def gauge(self, name):
        return self._gauges[name]

    def add_reading(self, backend, reading):
        for counter, result in REQUEST_RESULTS.items():
            self.requests.add_metric([backend, result],
                                     reading.counters[counter])
        for counter, src in BYTE_SOURCES.items():
            self.bytes.add_metric([backend, src], reading.counters[counter])
        for counter, family in self.counters.items():
            family.add_metric([backend], reading.counters[counter])
        for outcome in cache_index.FILL_OUTCOMES:
            durations = reading.durations[outcome]
            cumulative = list(itertools.accumulate(durations.buckets))
            buckets = [(utils.floatToGoString(bound), count) for bound, count
                       in zip(cache_index.FILL_BUCKETS, cumulative)]
            buckets.append(('+Inf', cumulative[-1]))
            self.durations.add_metric([backend, outcome], buckets,
                                      durations.seconds)
        totals = reading.totals
        self.gauge('cache_used_bytes').add_metric([backend], totals.used)
        self.gauge('cache_capacity_bytes').add_metric(
            [backend], reading.capacity)
        self.gauge('cache_entries').add_metric(
            [backend, 'complete'], totals.complete)
        self.gauge('cache_entries').add_metric(
            [backend, 'partial'], totals.partial)
        self.gauge('cache_pinned_entries').add_metric(
            [backend], totals.pinned)
        self.gauge('cache_pinned_bytes').add_metric(
            [backend], totals.pinned_bytes)
        # Half-open is not open: the next read that needs central tries
        # it, rather than failing fast.
        self.gauge('breaker_open').add_metric(
            [backend], int(reading.breaker_state == breaker_module.OPEN))
        central = reading.central
        if central is not None:
            self.gauge('central_up').add_metric([backend], int(central.up))
            if central.last_success is not None:
                self.gauge('last_central_success_timestamp_seconds'
                           ).add_metric([backend], central.last_success)

    def families(self):
        """The families that have a sample: a family without any (no
        central request seen yet, no site) is left out rather than written
        as a lone HELP and TYPE, which some parsers of the textfile refuse.
        """
        return [family for family in self._families.values()
                if family.samples]
