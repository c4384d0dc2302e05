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

"""Benchmark of the remote-glance edge, side by side in one run, on loopback.

Variants, each measured with the same client (a plain streaming GET that
reads 4 MiB at a time and discards the bytes):

* direct: the image from central itself;
* local: the same image in the edge's own ``file`` store;
* remote-glance miss / hit: through this driver's cache (evicted before
  each miss);
* alternative miss / hit: today's alternative, Glance's image cache
  (``caching`` flavor) in front of glance_store's ``http`` store whose
  location is central's ``/v2/images/<id>/file`` (central needs a HEAD
  filter for that variant alone, see tests/harness/head_filter.py).

Metrics on and off: the same hits and misses through a backend that keeps
its metrics in the cache index (``remote_glance_metrics``, the default) and
through one that does not, interleaved, as ratios.

Then: 8 and 16 concurrent misses (wall time and upstream fetches), a soak
of 64 clients mixing hits, misses and ranges on a small cache, the edge
worker's RSS growth while streaming a large image (miss and hit), time to
503 with central down and the breaker open, behaviour with central frozen,
and what a client sees when central is killed 30% into a miss; then a
central on Ceph RBD (tools/bench_ceph.py).

Writes doc/source/benchmarks/results.json and bench.png. Run it with
``tox -e bench`` (``-- --size-mib 256`` for a quicker run; ``-- --only
metrics`` for the metrics rows alone). Nothing here asserts: it measures
and reports ratios.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid

import requests
import urllib3.exceptions

from glance_store_remote import cache as cache_module
from tests.harness import lab as lab_module
from tools import bench_ceph
from tools import bench_data
from tools import bench_nova
from tools import bench_results
from tools import bench_site

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MiB = 1024 * 1024
READ = 4 * MiB
SOAK_CAP = 256 * MiB
# The backend whose metrics are off (remote_glance_metrics = False), beside
# 'central' whose metrics are on.
QUIET = 'quiet'
OUT = os.path.join(ROOT, 'doc', 'source', 'benchmarks')
CLIENT_AGENT = 'gsr-bench'


def get(url, headers=None, timeout=600, on_bytes=None, verify=None):
    """Stream *url*; returns (seconds, status, bytes received, error).

    With *verify* (a hashlib name), hash what arrives as nova's glanceclient
    does, on the client's own critical path.
    """
    hasher = hashlib.new(verify) if verify else None
    headers = dict(headers or {}, **{'User-Agent': CLIENT_AGENT})
    started = time.perf_counter()
    received = 0
    status = None
    error = None
    try:
        with requests.get(url, headers=headers, stream=True,
                          timeout=timeout) as response:
            status = response.status_code
            read = response.raw.read
            while True:
                block = read(READ)
                if not block:
                    break
                received += len(block)
                if hasher is not None:
                    hasher.update(block)
                if on_bytes is not None:
                    on_bytes(received)
    except urllib3.exceptions.ProtocolError as e:
        error = 'short body (%s)' % type(e.args[1]).__name__ if len(
            e.args) > 1 else type(e).__name__
    except (requests.RequestException, urllib3.exceptions.HTTPError,
            OSError) as e:
        error = type(e).__name__
    return time.perf_counter() - started, status, received, error


def identity_headers():
    ident = lab_module.ADMIN
    return {'X-Identity-Status': 'Confirmed',
            'X-Project-Id': ident.project_id, 'X-User-Id': ident.user_id,
            'X-Roles': ','.join(ident.roles)}


def random_file(folder, size):
    return bench_data.random_file(
        os.path.join(folder, 'image-%d.raw' % size), size)


class Bench:

    def __init__(self, args):
        self.args = args
        self.size = args.size_mib * MiB
        self.rows = []
        self.lines = []
        self.results = {'size_mib': args.size_mib, 'trials': args.trials,
                        'machine': '%d cores' % os.cpu_count()}
        self.tmp = tempfile.mkdtemp(prefix='gsr-bench-')
        self.lab = None
        self.alt = None
        self.ceph = bench_ceph.CephRows(self)
        self.site = bench_site.SiteRows(self)

    # -- setup ---------------------------------------------------------------

    def start(self):
        self.say('starting central (with the HEAD filter), the remote-glance '
                 'edge and the alternative edge')
        self.lab = lab_module.Lab(
            cache_max_size=64 * 1024 * MiB, edge_threads=32,
            central_flavor='headfile',
            edge_options={'central': {
                'remote_glance_breaker_threshold': 3,
                'remote_glance_breaker_reset': 3,
                'remote_glance_import_on_demand': True}}).start()
        central = self.lab.central
        root = os.path.join(self.lab.root, 'alt-edge')
        self.alt = lab_module.GlanceServer(
            'alt-edge', root, flavor='caching', threads=32,
            backends={'local': 'file', 'web': 'http'},
            policy=lab_module.ADMIN_EVERYONE,
            options={'import_filtering_opts': {
                'allowed_hosts': '[%s]' % lab_module.HOST,
                'allowed_ports': '[%d]' % central.port}})
        lab_module.db_sync(self.alt)
        self.alt.start()
        self.cache = cache_module.Cache(self.lab.cache_dir,
                                        64 * 1024 * MiB)
        # A second remote-glance backend whose central is behind a
        # throttling proxy: a WAN-like link.
        from tests.harness import faults
        self.proxy = faults.FaultyCentral(central.url).start()
        wan_cache = os.path.join(self.lab.root, 'wan-cache')
        ceph_backends = self.ceph.start(self.lab.root)
        self.lab.edge.set_options(dict(ceph_backends, **{
            'DEFAULT': {'enabled_backends': ', '.join(
                ['local:file', 'central:remote-glance',
                 'wan:remote-glance', 'relay:remote-glance',
                 'soak:remote-glance', QUIET + ':remote-glance'] +
                self.ceph.backends(ceph_backends))},
            'relay': {'auth_type': 'none',
                      'endpoint_override': central.url},
            'soak': {'auth_type': 'none', 'endpoint_override': central.url,
                     'remote_glance_cache_dir': os.path.join(
                         self.lab.root, 'soak-cache'),
                     'remote_glance_cache_max_size': SOAK_CAP},
            'wan': {'auth_type': 'none', 'endpoint_override': self.proxy.url,
                    'timeout': 60, 'remote_glance_cache_dir': wan_cache,
                    'remote_glance_cache_max_size': 64 * 1024 * MiB}},
            **self.quiet_backend()))
        self.lab.edge.restart()
        self.wan_cache = cache_module.Cache(wan_cache, 64 * 1024 * MiB)

    def quiet_backend(self):
        """The edge options of QUIET: 'central' without its metrics.
        Sets self.quiet_cache (what the bench does there is not counted
        either).
        """
        folder = os.path.join(self.lab.root, 'quiet-cache')
        self.quiet_cache = cache_module.Cache(folder, 64 * 1024 * MiB,
                                              counting=False)
        return {QUIET: {'auth_type': 'none',
                        'endpoint_override': self.lab.central.url,
                        'remote_glance_cache_dir': folder,
                        'remote_glance_cache_max_size': 64 * 1024 * MiB,
                        'remote_glance_metrics': False}}

    def start_for_metrics(self):
        """--only metrics: central and an edge with 'central' and QUIET."""
        self.say('starting central and the remote-glance edge')
        self.lab = lab_module.Lab(cache_max_size=64 * 1024 * MiB,
                                  edge_threads=32).start()
        self.cache = cache_module.Cache(self.lab.cache_dir,
                                        64 * 1024 * MiB)
        self.lab.edge.set_options(dict(self.quiet_backend(), DEFAULT={
            'enabled_backends': 'local:file, central:remote-glance, '
            '%s:remote-glance' % QUIET}))
        self.lab.edge.restart()

    def stop(self):
        self.ceph.stop()
        if getattr(self, 'proxy', None) is not None:
            self.proxy.stop()
        if self.alt is not None:
            self.alt.stop()
        if self.lab is not None:
            self.lab.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def central_image(self, size, name, server=None):
        """Upload *size* random bytes to *server* (default: central)."""
        path = random_file(self.tmp, size)
        client = (server or self.lab.central).glance()
        image = client.images.create(name=name, disk_format='raw',
                                     container_format='bare')
        with open(path, 'rb') as f:
            client.images.upload(image.id, f)
        os.unlink(path)
        return client.images.get(image.id)

    def link(self, central_id, backend='central'):
        client = self.lab.edge.glance(lab_module.ADMIN)
        image = client.images.create(name='linked', disk_format='raw',
                                     container_format='bare')
        client.images.add_location(
            image.id, 'remote-glance://%s/%s' % (backend, central_id), {})
        return image.id

    def link_alt(self, central_id):
        client = self.alt.glance()
        image = client.images.create(name='alt', disk_format='raw',
                                     container_format='bare')
        client.images.add_location(
            image.id, '%s/v2/images/%s/file' % (self.lab.central.url,
                                                central_id), {})
        return image.id

    def local_image(self, size):
        path = random_file(self.tmp, size)
        client = self.lab.edge.glance(lab_module.ADMIN)
        image = client.images.create(name='local', disk_format='raw',
                                     container_format='bare')
        with open(path, 'rb') as f:
            client.images.upload(image.id, f)
        os.unlink(path)
        return image.id

    def url(self, server, image_id):
        return '%s/v2/images/%s/file' % (server.url, image_id)

    # -- reporting -----------------------------------------------------------

    def row(self, name, value, unit, ratio=None, note=''):
        self.rows.append((name, value, unit, ratio, note))
        ratio_text = '' if ratio is None else '%.2fx' % ratio
        self.say('  %-50s %9s %-6s %6s  %s' % (
            name, '%.1f' % value if isinstance(value, float) else value,
            unit, ratio_text, note))

    def say(self, text):
        self.lines.append(text)
        say(text)

    def throughput(self, name, fn, trials=None):
        """Median MiB/s of fn() -> seconds over the trials."""
        speeds = []
        for _ in range(trials or self.args.trials):
            seconds = fn()
            speeds.append(self.size / MiB / seconds)
        value = statistics.median(speeds)
        self.results.setdefault('throughput', {})[name] = {
            'median_mib_s': value, 'trials_mib_s': speeds}
        return value

    # -- measurements --------------------------------------------------------

    def timed(self, url, hdrs=None, verify=None):
        """Seconds of one whole download of the benchmark's size."""
        seconds, status, received, error = get(url, hdrs, verify=verify)
        if status != 200 or received != self.size or error:
            raise RuntimeError('%s: %s %s %s' % (url, status, received,
                                                 error))
        return seconds

    def run_ceph_only(self):
        """--only ceph: the Ceph rows alone (tools/bench_ceph.py)."""
        self.start()
        self.ceph.run(identity_headers(), self.timed)

    def run(self):
        self.start()
        self.say('uploading %d MiB to central and to the edge\'s local store'
                 % self.args.size_mib)
        image = self.central_image(self.size, 'bench')
        edge_id = self.link(image.id)
        local_id = self.local_image(self.size)
        headers = identity_headers()
        timed = self.timed

        def ours_miss():
            self.evict(image.id)
            return timed(self.url(self.lab.edge, edge_id), headers)

        def alt_miss():
            return timed(self.url(self.alt, self.link_alt(image.id)))

        def relay():
            return timed(self.url(self.lab.edge, relay_id), headers)

        def ours_miss_verified():
            self.evict(image.id)
            return timed(self.url(self.lab.edge, edge_id), headers,
                         verify=image.os_hash_algo)

        relay_id = self.link(image.id, backend='relay')

        alt_hit_id = self.link_alt(image.id)
        timed(self.url(self.alt, alt_hit_id))

        self.say('\nthroughput, %d MiB image, median of %d (MiB/s)'
                 % (self.args.size_mib, self.args.trials))
        direct = self.throughput('direct', lambda: timed(
            self.url(self.lab.central, image.id)))
        local = self.throughput('local', lambda: timed(
            self.url(self.lab.edge, local_id), headers))
        miss = self.throughput('remote-glance miss', ours_miss)
        hit = self.throughput('remote-glance hit', lambda: timed(
            self.url(self.lab.edge, edge_id), headers))
        alt_miss_speed = self.throughput('alternative miss', alt_miss)
        alt_hit = self.throughput('alternative hit', lambda: timed(
            self.url(self.alt, alt_hit_id)))
        relayed = self.throughput('remote-glance without cache', relay)
        direct_v = self.throughput('direct, client verifies', lambda: timed(
            self.url(self.lab.central, image.id), verify=image.os_hash_algo))
        miss_v = self.throughput('remote-glance miss, client verifies',
                                 ours_miss_verified)
        hash_speed = self.throughput('sha512 on one core', lambda: hash_time(
            image.os_hash_algo, self.size), trials=1)
        self.row('direct from central', direct, 'MiB/s')
        self.row('edge local file store', local, 'MiB/s')
        self.row('remote-glance miss (vs direct)', miss, 'MiB/s',
                 miss / direct, 'goal >= 0.5')
        self.row('remote-glance hit (vs local)', hit, 'MiB/s', hit / local,
                 'goal >= 1.0')
        self.row('alternative miss (vs direct)', alt_miss_speed, 'MiB/s',
                 alt_miss_speed / direct)
        self.row('alternative hit (vs local)', alt_hit, 'MiB/s',
                 alt_hit / local)
        self.say('context: where a miss spends its time')
        self.row('remote-glance without cache, a relay (vs direct)',
                 relayed, 'MiB/s', relayed / direct)
        self.row('%s alone, one core' % image.os_hash_algo, hash_speed,
                 'MiB/s', hash_speed / direct)
        self.row('direct, client verifies %s as nova does'
                 % image.os_hash_algo, direct_v, 'MiB/s')
        self.row('remote-glance miss, client verifies (vs same)', miss_v,
                 'MiB/s', miss_v / direct_v)
        self.results['ratios'] = {
            'miss_vs_direct': miss / direct, 'hit_vs_local': hit / local,
            'alt_miss_vs_direct': alt_miss_speed / direct,
            'alt_hit_vs_local': alt_hit / local,
            'relay_vs_direct': relayed / direct,
            'hash_vs_direct': hash_speed / direct,
            'verified_miss_vs_verified_direct': miss_v / direct_v}

        self.metrics(image, headers)
        self.concurrency(image, edge_id, headers, self.size / MiB / miss)
        self.soak(headers)
        self.memory(headers)
        self.on_demand(headers)
        self.outage(headers)
        self.killed_mid_miss(headers)
        self.ceph.run(headers, timed)
        self.site.run()

    def run_metrics_only(self):
        """--only metrics: the metrics rows alone (see write_metrics)."""
        self.start_for_metrics()
        self.say('uploading %d MiB to central' % self.args.size_mib)
        image = self.central_image(self.size, 'bench')
        self.metrics(image, identity_headers())

    def metrics(self, image, headers, small=MiB, requests_each=40):
        """Hits and misses with the metrics on ('central') and off
        (QUIET), interleaved so that drift hits both alike: throughput of
        *image*, then the median time of one small read, where the index
        write a read costs weighs most.
        """
        self.say('\nmetrics on (remote_glance_metrics) vs off, %d MiB image, '
                 'median of %d, interleaved' % (self.args.size_mib,
                                                self.args.trials))
        sides = {'on': (self.link(image.id), self.cache),
                 'off': (self.link(image.id, backend=QUIET),
                         self.quiet_cache)}
        speeds = {(kind, side): [] for kind in ('miss', 'hit')
                  for side in sides}
        for trial in range(self.args.trials):
            order = ('on', 'off') if trial % 2 == 0 else ('off', 'on')
            for kind in ('miss', 'hit'):
                for side in order:
                    edge_id, store = sides[side]
                    if kind == 'miss':
                        self.evict(image.id, store=store)
                    seconds = self.timed(self.url(self.lab.edge, edge_id),
                                         headers)
                    speeds[kind, side].append(self.size / MiB / seconds)
        results = self.results['metrics'] = {}
        for kind in ('hit', 'miss'):
            on = statistics.median(speeds[kind, 'on'])
            off = statistics.median(speeds[kind, 'off'])
            self.row('remote-glance %s, metrics on (vs off)' % kind, on,
                     'MiB/s', on / off, 'off: %.1f MiB/s' % off)
            results['%s_mib_s' % kind] = {
                'on': on, 'off': off, 'on_vs_off': on / off,
                'trials_on': speeds[kind, 'on'],
                'trials_off': speeds[kind, 'off']}
        small_image = self.central_image(small, 'metrics-small')
        small_ids = {'on': self.link(small_image.id),
                     'off': self.link(small_image.id, backend=QUIET)}
        times = {(kind, side): [] for kind in ('miss', 'hit')
                 for side in sides}
        for n in range(requests_each):
            order = ('on', 'off') if n % 2 == 0 else ('off', 'on')
            for kind in ('miss', 'hit'):
                for side in order:
                    if kind == 'miss':
                        self.evict(small_image.id, store=sides[side][1])
                    seconds, status, received, error = get(
                        self.url(self.lab.edge, small_ids[side]), headers)
                    if status != 200 or received != small or error:
                        raise RuntimeError('small %s: %s %s %s' % (
                            kind, status, received, error))
                    times[kind, side].append(seconds * 1000)
        for kind in ('hit', 'miss'):
            on = statistics.median(times[kind, 'on'])
            off = statistics.median(times[kind, 'off'])
            self.row('%d MiB %s, metrics on (vs off), median' % (
                small // MiB, kind), on, 'ms', on / off,
                'off: %.2f ms; %d each' % (off, requests_each))
            results['small_%s_ms' % kind] = {'on': on, 'off': off,
                                             'on_vs_off': on / off}

    def write_metrics(self):
        """--only metrics: merge the metrics' results into results.json
        (the other sections stay as they are) and write their lines to
        results-metrics.txt.
        """
        path = bench_results.merge(OUT, 'metrics', dict(
            self.results['metrics'], size_mib=self.args.size_mib,
            trials=self.args.trials))
        lines = [line for line in self.lines
                 if not line.startswith(('starting', 'uploading'))]
        with open(os.path.join(OUT, 'results-metrics.txt'), 'w') as f:
            f.write('\n'.join(lines).lstrip('\n') + '\n')
        self.say('wrote %s and results-metrics.txt' % os.path.relpath(
            path, ROOT))

    def evict(self, central_id, store=None):
        """Evict an image, waiting for readers that are still closing."""
        store = store or self.cache
        deadline = time.monotonic() + 30
        while store.evict(central_id, force_pinned=True) == 'busy':
            if time.monotonic() > deadline:
                raise RuntimeError('image %s stays busy' % central_id)
            time.sleep(0.05)

    def central_gets(self, central_id, since):
        return [e for e in self.lab.central.access_entries()[since:]
                if e.method == 'GET' and e.path.endswith(
                    '%s/file' % central_id) and CLIENT_AGENT not in e.agent]

    def concurrency(self, image, edge_id, headers, one_miss):
        self.say('\nconcurrent misses of one %d MiB image'
                 % self.args.size_mib)
        self.results['concurrency'] = {}
        for clients in (8, 16):
            self.evict(image.id)
            since = len(self.lab.central.access_entries())
            wall, outcomes = self.together(
                clients, self.url(self.lab.edge, edge_id), headers)
            fetches = len(self.central_gets(image.id, since))
            ok = sum(1 for o in outcomes if o[2] == self.size and not o[3])
            self.row('remote-glance %d concurrent misses: wall / one miss'
                     % clients, wall, 's', wall / one_miss,
                     '%d upstream fetch(es), %d/%d complete'
                     % (fetches, ok, clients))
            self.results['concurrency'][str(clients)] = {
                'wall_s': wall, 'vs_one_miss': wall / one_miss,
                'upstream_fetches': fetches, 'complete': ok}
        self.wan_concurrency(headers)
        alt_id = self.link_alt(image.id)
        since = len(self.lab.central.access_entries())
        wall, outcomes = self.together(8, self.url(self.alt, alt_id))
        fetches = len(self.central_gets(image.id, since))
        self.row('alternative 8 concurrent misses', wall, 's', None,
                 '%d upstream fetch(es)' % fetches)
        self.results['concurrency']['alternative_8'] = {
            'wall_s': wall, 'upstream_fetches': fetches}

    def wan_concurrency(self, headers):
        """The same through a backend whose central sits behind a WAN-like
        link (the fault proxy throttling image bodies): coalescing then
        saves what is scarce, the WAN.
        """
        rate = self.args.wan_mib_s * MiB
        size = min(self.size, 512 * MiB)
        image = self.central_image(size, 'wan')
        edge_id = self.link(image.id, backend='wan')
        self.proxy.arm(rate=rate, sticky=True)
        try:
            one, _, received, error = get(self.url(self.lab.edge, edge_id),
                                          headers)
            if received != size or error:
                raise RuntimeError('WAN miss failed: %s' % error)
            for clients in (8, 16):
                self.evict(image.id, store=self.wan_cache)
                before = len(self.proxy.image_gets())
                wall, outcomes = self.together(
                    clients, self.url(self.lab.edge, edge_id), headers)
                fetches = len(self.proxy.image_gets()) - before
                ok = sum(1 for o in outcomes if o[2] == size and not o[3])
                self.row('WAN %d MiB/s: %d concurrent misses / one miss'
                         % (self.args.wan_mib_s, clients), wall, 's',
                         wall / one, '%d upstream fetch(es), %d/%d complete'
                         % (fetches, ok, clients))
                self.results['concurrency']['wan_%d' % clients] = {
                    'wall_s': wall, 'one_miss_s': one,
                    'vs_one_miss': wall / one, 'upstream_fetches': fetches,
                    'complete': ok, 'wan_mib_s': self.args.wan_mib_s,
                    'size_mib': size // MiB}
        finally:
            self.proxy.faults.reset()

    def together(self, clients, url, headers=None):
        barrier = threading.Barrier(clients)

        def one(_):
            barrier.wait()
            return get(url, headers)
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            outcomes = list(pool.map(one, range(clients)))
        return time.perf_counter() - started, outcomes

    def soak(self, headers):
        """64 clients mixing hits, misses and ranges on a backend whose cap
        holds about two thirds of the images, for --soak-seconds.
        """
        seconds = self.args.soak_seconds
        self.say('\nsoak: 64 clients for %d s on a %d MiB cache'
                 % (seconds, SOAK_CAP // MiB))
        rng = random.Random(7)
        images = []
        for n in range(8):
            size = rng.choice((16, 32, 48)) * MiB
            image = self.central_image(size, 'soak-%d' % n)
            images.append((image, self.link(image.id, backend='soak')))
        [pid] = self.lab.edge.worker_pids()
        soak_dir = os.path.join(self.lab.root, 'soak-cache', 'entries')
        peak_used = [0]
        counts = {'requests': 0, 'wrong': 0, 'errors': 0}
        lock = threading.Lock()

        def watch():
            while time.monotonic() < deadline:
                try:
                    used = sum(os.path.getsize(os.path.join(soak_dir, n))
                               for n in os.listdir(soak_dir)
                               if n.endswith('.data'))
                except OSError:
                    used = 0
                peak_used[0] = max(peak_used[0], used)
                time.sleep(0.1)

        def client(seed):
            local = random.Random(seed)
            while time.monotonic() < deadline:
                image, edge_id = local.choice(images)
                hdrs = dict(headers)
                if local.random() < 0.3:
                    first = local.randrange(image.size - 1)
                    last = local.randrange(first, image.size)
                    hdrs['Range'] = 'bytes=%d-%d' % (first, last)
                    want = last - first + 1
                else:
                    want = image.size
                _, status, received, error = get(
                    self.url(self.lab.edge, edge_id), hdrs)
                with lock:
                    counts['requests'] += 1
                    if error or status not in (200, 206):
                        counts['errors'] += 1
                    elif received != want:
                        counts['wrong'] += 1
        # A warm-up round first: every worker thread then holds its index
        # connection, and growth after it would be a leak.
        deadline = time.monotonic() + 5
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            list(pool.map(client, range(1000, 1064)))
        time.sleep(3)
        counts.update(requests=0, wrong=0, errors=0)
        fds = len(os.listdir('/proc/%d/fd' % pid))
        rss_before = lab_module.rss(pid)
        deadline = time.monotonic() + seconds
        watcher = threading.Thread(target=watch)
        watcher.start()
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            list(pool.map(client, range(64)))
        watcher.join()
        time.sleep(3)
        self.row('soak requests (errors, wrong lengths)', counts['requests'],
                 '', None, '%d errors, %d wrong' % (counts['errors'],
                                                    counts['wrong']))
        self.row('soak: worker fds before -> after', fds, '', None,
                 '-> %d' % len(os.listdir('/proc/%d/fd' % pid)))
        self.row('soak: worker RSS growth', (lab_module.rss(pid) -
                                             rss_before) / MiB, 'MiB')
        self.row('soak: peak cache use vs cap', peak_used[0] / MiB, 'MiB',
                 peak_used[0] / SOAK_CAP, 'cap %d MiB' % (SOAK_CAP // MiB))
        self.results['soak'] = dict(counts, seconds=seconds,
                                    peak_used=peak_used[0], cap=SOAK_CAP)

    def memory(self, headers):
        size = self.args.rss_size_mib * MiB
        self.say('\nedge worker RSS while streaming a %d MiB image'
                 % self.args.rss_size_mib)
        image = self.central_image(size, 'rss')
        edge_id = self.link(image.id)
        [pid] = self.lab.edge.worker_pids()
        self.results['rss'] = {}
        for phase in ('miss', 'hit'):
            baseline = lab_module.rss(pid)
            peak = [baseline]
            done = threading.Event()

            def sample():
                while not done.is_set():
                    peak[0] = max(peak[0], lab_module.rss(pid))
                    time.sleep(0.02)
            sampler = threading.Thread(target=sample)
            sampler.start()
            _, status, received, error = get(
                self.url(self.lab.edge, edge_id), headers)
            done.set()
            sampler.join()
            growth = (peak[0] - baseline) / MiB
            self.row('RSS growth, %s of %d MiB' % (phase, size // MiB),
                     growth, 'MiB', None, 'goal < 32; %s' % (
                         'ok' if received == size and not error else
                         'FAILED %s %s' % (status, error)))
            self.results['rss'][phase] = {'growth_mib': growth,
                                          'baseline_mib': baseline / MiB}
        self.evict(image.id)

    def on_demand(self, headers, count=20):
        """Latency of image-show and of a small download when the edge
        imports the image on demand, against an image it has.
        """
        self.say('\non-demand import: median of %d requests, 1 MiB images'
                 % count)
        images = [self.central_image(MiB, 'on-demand-%d' % i).id
                  for i in range(2 * count)]
        shown, downloaded = images[:count], images[count:]

        def median_ms(paths):
            times = []
            for path in paths:
                seconds, status, _, error = get(self.lab.edge.url + path,
                                                headers)
                if status not in (200, 404) or error:
                    raise RuntimeError('%s: %s %s' % (path, status, error))
                times.append(seconds * 1000)
            return statistics.median(times)
        first = median_ms('/v2/images/%s' % i for i in shown)
        known = median_ms('/v2/images/%s' % i for i in shown)
        first_file = median_ms('/v2/images/%s/file' % i for i in downloaded)
        known_file = median_ms('/v2/images/%s/file' % i for i in downloaded)
        nobody = median_ms('/v2/images/%s' % uuid.uuid4()
                           for _ in range(count))
        self.row('image-show, an image the edge has', known, 'ms')
        self.row('first image-show, imported on demand', first, 'ms',
                 first / known, 'vs the edge has it')
        self.row('download of 1 MiB, cache hit', known_file, 'ms')
        self.row('first download of 1 MiB, imported on demand', first_file,
                 'ms', first_file / known_file, 'vs a cache hit')
        self.row('image-show of an ID nobody has', nobody, 'ms',
                 nobody / known, 'vs the edge has it; answer 404')
        self.results['on_demand_ms'] = {
            'show_known': known, 'show_first': first,
            'file_hit': known_file, 'file_first': first_file,
            'show_unknown': nobody}

    def outage(self, headers):
        self.say('\ncentral down or frozen, uncached image')
        image = self.central_image(MiB, 'outage')
        edge_id = self.link(image.id)
        alt_id = self.link_alt(image.id)
        url = self.url(self.lab.edge, edge_id)
        self.lab.central.stop()
        for _ in range(3):
            get(url, headers)
        times = []
        statuses = set()
        for _ in range(20):
            seconds, status, _, _ = get(url, headers)
            times.append(seconds * 1000)
            statuses.add(status)
        self.row('time to 503, breaker open (median)',
                 statistics.median(times), 'ms', None,
                 'goal < 50; max %.1f ms; answers %s'
                 % (max(times), sorted(statuses)))
        self.results['breaker_open_ms'] = {
            'median': statistics.median(times), 'max': max(times)}
        self.lab.central.start()
        time.sleep(3.5)  # the breaker's reset time: let the probe close it
        get(self.url(self.lab.central, image.id))
        self.lab.central.freeze()
        try:
            seconds, status, _, error = get(url, headers, timeout=60)
            self.row('remote-glance, central frozen', seconds, 's', None,
                     'answer %s %s (edge timeout 5 s)' % (status,
                                                          error or ''))
            self.results['frozen'] = {'seconds': seconds, 'status': status}
            seconds, status, _, error = get(self.url(self.alt, alt_id),
                                            timeout=20)
            self.row('alternative, central frozen', seconds, 's', None,
                     'answer %s %s' % (status, error or ''))
            self.results['alt_frozen'] = {'seconds': seconds,
                                          'status': status,
                                          'error': error}
        finally:
            self.lab.central.thaw()

    def killed_mid_miss(self, headers):
        self.say('\ncentral killed 30%% into a miss of a %d MiB image'
                 % self.args.size_mib)
        self.results['killed'] = {}
        for variant in ('remote-glance', 'alternative'):
            self.lab.central.stop()
            self.lab.central.start()
            image = self.central_image(self.size, 'kill-%s' % variant)
            if variant == 'remote-glance':
                url = self.url(self.lab.edge, self.link(image.id))
                partial = self.cache.data_path(image.id, partial=True)

                def progress():
                    try:
                        return os.path.getsize(partial)
                    except OSError:
                        return 0
                hdrs = headers
            else:
                url = self.url(self.alt, self.link_alt(image.id))
                seen = [0]
                progress = lambda: seen[0]  # noqa: E731
                hdrs = None
            killer = threading.Thread(target=self.kill_at, args=(
                progress, int(self.size * 0.3)))
            killer.start()
            _, status, received, error = get(
                url, hdrs, timeout=60,
                on_bytes=None if hdrs else (
                    lambda n: seen.__setitem__(0, n)))
            killer.join()
            self.lab.central.stop()
            self.lab.central.start()
            what = 'status %s, %.0f%% of the bytes, %s' % (
                status, 100.0 * received / self.size,
                'error: %s' % error if error else 'NO ERROR')
            self.row('%s: client sees' % variant, received // MiB, 'MiB',
                     None, what)
            self.results['killed'][variant] = {
                'status': status, 'received': received, 'error': error}

    def kill_at(self, progress, threshold, timeout=60):
        deadline = time.monotonic() + timeout
        while progress() < threshold and time.monotonic() < deadline:
            time.sleep(0.002)
        os.killpg(self.lab.central.proc.pid, signal.SIGKILL)

    # -- output --------------------------------------------------------------

    def write(self):
        os.makedirs(OUT, exist_ok=True)
        self.results['rows'] = [
            {'name': n, 'value': v, 'unit': u, 'ratio': r, 'note': note}
            for n, v, u, r, note in self.rows]
        with open(os.path.join(OUT, 'results.json'), 'w') as f:
            json.dump(self.results, f, indent=2, sort_keys=True)
        plot(self.results['throughput'], os.path.join(OUT, 'bench.png'),
             self.args.size_mib)
        with open(os.path.join(OUT, 'results.txt'), 'w') as f:
            f.write('\n'.join(line for line in self.lines
                              if not line.startswith(('starting',
                                                      'uploading'))))
            f.write('\n')
        self.say('\nwrote %s' % os.path.relpath(OUT, ROOT))


def hash_time(algo, size):
    """Seconds to hash *size* bytes in 4 MiB blocks on one core."""
    block = os.urandom(READ)
    hasher = hashlib.new(algo)
    started = time.perf_counter()
    for _ in range(size // READ):
        hasher.update(block)
    return time.perf_counter() - started


def plot(throughput, path, size_mib):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    names = ['direct', 'local', 'remote-glance miss', 'remote-glance hit',
             'alternative miss', 'alternative hit']
    values = [throughput[n]['median_mib_s'] for n in names]
    colors = ['#888888', '#888888', '#1f77b4', '#1f77b4', '#d62728',
              '#d62728']
    figure, axes = pyplot.subplots(figsize=(8, 4))
    bars = axes.bar(names, values, color=colors)
    axes.bar_label(bars, fmt='%.0f')
    axes.set_ylabel('MiB/s (median)')
    axes.set_title('Download of a %d MiB image on loopback, 2 cores'
                   % size_mib)
    axes.tick_params(axis='x', labelrotation=20)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def say(text):
    print(text, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-mib', type=int, default=1024,
                        help='image size for throughput (default 1024)')
    parser.add_argument('--rss-size-mib', type=int, default=2048,
                        help='image size for the RSS run (default 2048)')
    parser.add_argument('--trials', type=int, default=3)
    parser.add_argument('--soak-seconds', type=int, default=60,
                        help='length of the soak, in seconds (default 60)')
    parser.add_argument('--only', choices=('ceph', 'nova', 'site',
                                           'metrics'),
                        help='run only these rows and print them (ceph, '
                        'nova: nothing is written; site, metrics: their rows '
                        'are merged into results.json)')
    parser.add_argument('--wan-mib-s', type=int, default=100,
                        help='WAN-like link speed for the second '
                        'concurrency run, in MiB/s (default 100)')
    bench = Bench(parser.parse_args())
    try:
        if bench.args.only == 'ceph':
            bench.run_ceph_only()
        elif bench.args.only == 'site':
            bench.site.run()
            bench.site.write()
        elif bench.args.only == 'nova':
            bench_nova.run(bench.args)
        elif bench.args.only == 'metrics':
            bench.run_metrics_only()
            bench.write_metrics()
        else:
            bench.run()
            bench.write()
    finally:
        bench.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
