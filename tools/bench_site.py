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

"""The HA edge site rows of tools/bench.py (``--only site``): three edge
glance-api nodes on one MariaDB behind haproxy (tests/harness/site.py), the
lab's central behind a WAN that the kernel shapes.

Rows, side by side in one run, with one image of ``--size-mib`` (at most
256 MiB, as the WAN rows of bench.py cap theirs at 512):

* 3 nodes x 8 concurrent boots (a boot: a whole GET through the site's
  haproxy, hashed by the client and checked against central's record, as
  nova's glanceclient does) of an image no node holds: central's bytes
  sent for it and the wall time against one boot, with per-node caches
  (no coordinator) and with the coordinated site (etcd);
* a miss at one node filled from a peer against the same miss filled from
  central, the two links shaped to the same speed;
* the time the site takes to pull once again after etcd returns from an
  outage;
* one miss through the site against a direct download from central, both
  through the same shaped WAN (100 MiB/s and 1 Gbit/s); for context, the
  same miss at one node (no haproxy) and through the per-node site (no
  coordinator).

Shaping: the section runs in a network namespace of its own
(``ip netns add``, its ``lo`` up): a child process started with ``ip netns
exec`` starts the site and its clients there, so that every packet stays
on that namespace's loopback, and shapes traffic by source port with htb
and u32 filters on that ``lo`` (this kernel has tbf and htb, not netem).
The parent removes the namespace and SIGKILLs, by PID, any process still
in it, also after a failure. Where a namespace cannot be made (not root,
no ``ip``/``tc``), the rows are measured on the host's loopback without
shaping and say so.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests

from glance_store_remote import cache as cache_module
from tests.harness import daemon
from tests.harness import lab as lab_module
from tools import bench_data
from tools import bench_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MiB = 1024 * 1024
READ = 4 * MiB
MAX_SIZE = 256 * MiB
CLIENT_AGENT = 'gsr-bench'
WAN = 100 * MiB               # bytes/s of the WAN of the boot rows
GBIT = 1000 ** 3 // 8         # 1 Gbit/s in bytes/s
NODES = 3
BOOTS_PER_NODE = 8
PROBE_SIZE = 8 * MiB          # images read to find when etcd is back
PROBES = 40                   # fresh images ready for that
PROBE_PAUSE = 0.25            # seconds between two probe rounds
INNER_TIMEOUT = 3600          # seconds for the whole section
OUT = os.path.join(ROOT, 'doc', 'source', 'benchmarks')
TEXT_FILE = 'results-site.txt'


def headers():
    ident = lab_module.ADMIN
    return {'X-Identity-Status': 'Confirmed',
            'X-Project-Id': ident.project_id, 'X-User-Id': ident.user_id,
            'X-Roles': ','.join(ident.roles), 'User-Agent': CLIENT_AGENT}


def load():
    return '%.1f %.1f %.1f' % os.getloadavg()


def boot(url, record, hdrs=None, first_bytes=None, last_bytes=None):
    """One whole GET of *url*, hashed as it arrives; returns (seconds,
    problem or None). A boot is good when the bytes match *record*.

    :param first_bytes: a list to which the seconds to the first 4 MiB are
        appended
    :param last_bytes: a list to which the seconds the last 4 MiB took
        are appended (from the end of the block before them)
    """
    hasher = hashlib.new(record.os_hash_algo)
    received = 0
    started = time.perf_counter()
    before_last = last = started
    try:
        with requests.get(url, headers=dict(hdrs or headers()),
                          stream=True, timeout=600) as response:
            read = response.raw.read
            while True:
                block = read(READ)
                if not block:
                    break
                before_last, last = last, time.perf_counter()
                if not received and first_bytes is not None:
                    first_bytes.append(last - started)
                received += len(block)
                hasher.update(block)
            status = response.status_code
    except (requests.RequestException, OSError) as e:
        return time.perf_counter() - started, type(e).__name__
    seconds = time.perf_counter() - started
    if last_bytes is not None:
        last_bytes.append(last - before_last)
    if status != 200:
        return seconds, 'status %s' % status
    if received != record.size:
        return seconds, '%d of %d bytes' % (received, record.size)
    if hasher.hexdigest() != record.os_hash_value:
        return seconds, 'wrong bytes'
    return seconds, None


# -- the shaper --------------------------------------------------------------

class Shaper:
    """htb on the loopback of the namespace this process runs in: traffic
    whose source port is a shaped port goes through a class of its own at
    that rate; the rest is not classified and is sent at once.
    """

    def __init__(self, namespace):
        self.namespace = namespace
        if namespace is not None:
            # Never shape a loopback this benchmark did not make.
            here = subprocess.run(
                ['ip', 'netns', 'identify', str(os.getpid())],
                capture_output=True, text=True, timeout=30).stdout.split()
            if here != [namespace]:
                raise RuntimeError('not in namespace %s (in %s): no '
                                   'shaping' % (namespace, here))
        self.rates = {}

    def tc(self, *args, check=True):
        subprocess.run(['tc'] + list(args), check=check,
                       capture_output=True, timeout=30)

    def set(self, rates):
        """Shape each port of *rates* ({port: bytes per second}); {} for
        none.
        """
        self.rates = dict(rates)
        if self.namespace is None:
            return
        self.tc('qdisc', 'del', 'dev', 'lo', 'root', check=False)
        if not rates:
            return
        # No class 1:ffff: traffic that no filter classifies is sent at
        # once (htb's direct queue).
        self.tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb',
                'default', 'ffff')
        for n, (port, rate) in enumerate(sorted(rates.items()), 10):
            bits = '%dbit' % (rate * 8)
            # loopback packets are up to 64 KiB (its MTU): a burst of
            # 1 MiB keeps the rate exact at these speeds.
            self.tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid',
                    '1:%d' % n, 'htb', 'rate', bits, 'ceil', bits, 'burst',
                    '1m', 'cburst', '1m', 'quantum', '65536', 'mtu', '65536')
            self.tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol',
                    'ip', 'prio', '1', 'u32', 'match', 'ip', 'sport',
                    str(port), '0xffff', 'flowid', '1:%d' % n)

    def describe(self, rate):
        if self.namespace is None:
            return 'NOT shaped (loopback at full speed)'
        if rate % MiB == 0:
            return '%d MiB/s' % (rate // MiB)
        return '%g Gbit/s' % (rate * 8 / 1000 ** 3)


# -- the measurements (inside the namespace) ---------------------------------

class SiteBench:
    """The measurements, run in the child: two sites side by side (the
    per-node one is stopped after the rows that compare them), one shaper.

    Cost at 256 MiB and 3 trials: about 6 minutes, two sites of about
    700 MB each, a few GB in the nodes' caches (removed with the labs).
    """

    def __init__(self, size, trials, shaper):
        self.size = size
        self.trials = trials
        self.shaper = shaper
        self.rows = []
        self.lines = []
        self.results = {'size_mib': size // MiB, 'trials': trials,
                        'machine': '%d cores' % os.cpu_count(),
                        'shaped': shaper.namespace is not None,
                        'load_before': load()}
        self.tmp = tempfile.mkdtemp(prefix='gsr-bench-site-')
        self.lab = None
        self.labs = []

    # -- reporting ---------------------------------------------------------

    def say(self, text):
        self.lines.append(text)
        print(text, flush=True)

    def row(self, name, value, unit, ratio=None, note=''):
        self.rows.append((name, value, unit, ratio, note))
        self.say(format_row(name, value, unit, ratio, note))

    # -- the lab -----------------------------------------------------------

    def start(self, coordination):
        """Start a site (with or without its etcd) and use it."""
        from tests.harness import site
        lab = site.EdgeSiteLab(nodes=NODES, coordination=coordination,
                               cache_max_size=64 * self.size)
        lab.node_threads = 4 * BOOTS_PER_NODE
        self.labs.append(lab)
        lab.start()
        return self.use(lab)

    def use(self, lab):
        """Make *lab* the site the measurements read."""
        self.lab = lab
        self.caches = [cache_module.Cache(lab.cache_dir(i), 64 * self.size)
                       for i in range(NODES)]
        return lab

    def stop(self):
        while self.labs:
            self.labs.pop().stop()
        self.lab = None

    def cleanup(self):
        self.stop()
        try:
            self.shaper.set({})
        except Exception:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def central_image(self, size, name):
        path = bench_data.random_file(os.path.join(self.tmp, 'image.raw'),
                                      size)
        client = self.lab.central.glance()
        image = client.images.create(name=name, disk_format='raw',
                                     container_format='bare')
        with open(path, 'rb') as f:
            client.images.upload(image.id, f)
        os.unlink(path)
        return client.images.get(image.id)

    def link(self, central_id):
        client = self.lab.edge.glance(lab_module.ADMIN)
        image = client.images.create(name='linked', disk_format='raw',
                                     container_format='bare')
        client.images.add_location(
            image.id, 'remote-glance://central/%s' % central_id, {})
        return image.id

    def linked(self, size, name):
        record = self.central_image(size, name)
        return record, self.link(record.id)

    @staticmethod
    def url(server, image_id):
        return '%s/v2/images/%s/file' % (server.url, image_id)

    def wait_fills(self, image_id, timeout=120):
        """Wait until no node fills *image_id* (a fill commits after the
        client's last byte).
        """
        deadline = time.monotonic() + timeout
        for store in self.caches:
            lock = store.lock(image_id, 'fill')
            try:
                while not lock.try_lock():
                    if time.monotonic() > deadline:
                        raise RuntimeError('a fill of %s still runs'
                                           % image_id)
                    time.sleep(0.05)
                lock.unlock()
            finally:
                lock.close()

    def evict(self, image_id):
        """Evict the image from every node's cache."""
        self.wait_fills(image_id)
        deadline = time.monotonic() + 30
        for store in self.caches:
            while store.evict(image_id, force_pinned=True) == 'busy':
                if time.monotonic() > deadline:
                    raise RuntimeError('image %s stays busy' % image_id)
                time.sleep(0.05)

    def central_sent(self, central_id, since):
        """(bytes, file GETs, record GETs) central answered the nodes for
        *central_id* since access-log entry *since*, once its log settled.
        """
        entries = self.lab.central.access_entries()
        for _ in range(40):
            time.sleep(0.3)
            latest = self.lab.central.access_entries()
            if latest == entries:
                break
            entries = latest
        entries = [e for e in entries[since:] if CLIENT_AGENT not in e.agent]
        files = [e for e in entries if e.method == 'GET' and
                 e.path.endswith('/%s/file' % central_id) and
                 e.status in ('200', '206')]
        records = [e for e in entries if e.method == 'GET' and
                   e.path == '/v2/images/%s' % central_id]
        sent = sum(int(e.sent) for e in files if e.sent.isdigit())
        return sent, len(files), len(records)

    def together(self, calls):
        barrier = threading.Barrier(len(calls))

        def one(call):
            barrier.wait()
            return call()
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            results = list(pool.map(one, calls))
        return time.perf_counter() - started, results

    # -- 1. 3 nodes x 8 boots ----------------------------------------------

    def boots(self, record, edge_id):
        """One boot, then 3 x 8 concurrent boots through the front, of
        *record* (evicted from every node first); returns the trial's
        dict.
        """
        url = self.url(self.lab.edge, edge_id)
        self.evict(record.id)
        one, problem = boot(url, record)
        if problem:
            raise RuntimeError('one boot: %s' % problem)
        self.evict(record.id)
        since = len(self.lab.central.access_entries())
        node_since = {n.name: len(n.access_entries()) for n in self.lab.nodes}
        count = NODES * BOOTS_PER_NODE
        wall, results = self.together([lambda: boot(url, record)] * count)
        self.wait_fills(record.id)
        sent, gets, records = self.central_sent(record.id, since)
        spread = [len([e for e in n.access_entries()[node_since[n.name]:]
                       if e.path.endswith('/%s/file' % edge_id)])
                  for n in self.lab.nodes]
        return {'one_boot_s': one, 'wall_s': wall,
                'central_sent_bytes': sent, 'central_file_gets': gets,
                'central_record_gets': records, 'boots': count,
                'good_boots': sum(1 for _, p in results if p is None),
                'problems': sorted({p for _, p in results if p}),
                'boots_per_node': spread,
                'boot_s': sorted(s for s, _ in results)}

    def boot_trials(self):
        """Both sites, running side by side, their trials alternating
        (the machine's load drifts); a dict per site of the trials and
        their medians.
        """
        self.shaper.set({lab.central.port: WAN for lab in self.labs})
        results = {}
        for lab in self.labs:
            self.use(lab)
            results[lab] = self.linked(self.size, 'boots')
        trials = {lab: [] for lab in self.labs}
        for trial in range(self.trials):
            # Each site first in every other trial.
            for lab in self.labs[::-1 if trial % 2 else 1]:
                self.use(lab)
                trials[lab].append(self.boots(*results[lab]))
        summary = {}
        for lab, runs in trials.items():
            size = results[lab][0].size
            one = statistics.median(t['one_boot_s'] for t in runs)
            wall = statistics.median(t['wall_s'] for t in runs)
            sent = statistics.median(t['central_sent_bytes'] for t in runs)
            summary['site' if lab.coordination else 'per_node'] = {
                'one_boot_s': one, 'wall_s': wall, 'vs_one_boot': wall / one,
                'central_sent_bytes': sent,
                'central_sent_images': sent / size,
                'central_sent_images_trials': [
                    t['central_sent_bytes'] / size for t in runs],
                'central_file_gets': [t['central_file_gets'] for t in runs],
                'central_record_gets': [t['central_record_gets']
                                        for t in runs],
                'good_boots': sum(t['good_boots'] for t in runs),
                'boots': sum(t['boots'] for t in runs),
                'boots_per_node': [t['boots_per_node'] for t in runs],
                'trials': runs}
        return summary

    def boot_rows(self, label, result):
        self.row('%s: central sent per image' % label,
                 result['central_sent_images'], 'images', None,
                 'trials %s; GETs %s; record GETs %s' % (
                     '/'.join('%.2f' % n for n in
                              result['central_sent_images_trials']),
                     '/'.join(str(n) for n in result['central_file_gets']),
                     '/'.join(str(n) for n in
                              result['central_record_gets'])))
        self.row('%s: 24 boots, wall / one boot' % label, result['wall_s'],
                 's', result['vs_one_boot'],
                 'one boot %.1f s; %d/%d verified; per node %s' % (
                     result['one_boot_s'], result['good_boots'],
                     result['boots'], '/'.join(
                         str(n) for n in result['boots_per_node'][0])))

    # -- 2. a peer read against a read from central ------------------------

    def peer_vs_central(self):
        rate = GBIT
        first, second = self.lab.nodes[0], self.lab.nodes[1]
        self.shaper.set({self.lab.central.port: rate, first.port: rate})
        record, edge_id = self.linked(self.size, 'peer')
        mark = 'filling from peer'
        peer_times, central_times, peer_fills = [], [], 0
        for _ in range(self.trials):
            self.evict(record.id)
            seconds, problem = boot(self.url(first, edge_id), record)
            if problem:
                raise RuntimeError('fill at %s: %s' % (first.name, problem))
            self.wait_fills(record.id)
            before = second.log_text().count(mark)
            seconds, problem = boot(self.url(second, edge_id), record)
            if problem:
                raise RuntimeError('peer read: %s' % problem)
            peer_fills += second.log_text().count(mark) - before
            peer_times.append(seconds)
            self.evict(record.id)
            since = len(self.lab.central.access_entries())
            seconds, problem = boot(self.url(second, edge_id), record)
            if problem:
                raise RuntimeError('read from central: %s' % problem)
            central_times.append(seconds)
            if self.central_sent(record.id, since)[1] != 1:
                raise RuntimeError('the miss at %s did not read central'
                                   % second.name)
        peer = self.size / MiB / statistics.median(peer_times)
        central = self.size / MiB / statistics.median(central_times)
        link = self.shaper.describe(rate)
        self.row('miss at a node filled from central (link %s)' % link,
                 central, 'MiB/s')
        self.row('same miss filled from a peer (vs from central)', peer,
                 'MiB/s', peer / central,
                 'peer link %s too; %d/%d fills from the peer' % (
                     link, peer_fills, self.trials))
        self.results['peer'] = {
            'link_bytes_s': rate, 'peer_mib_s': peer,
            'central_mib_s': central, 'peer_vs_central': peer / central,
            'peer_s': peer_times, 'central_s': central_times,
            'peer_fills': peer_fills}

    # -- 3. single flight back after etcd returns --------------------------

    def etcd_recovery(self):
        """Stop etcd, read an image on every node (each node finds the
        coordinator gone), keep it down for twice the nodes' retry
        interval, start it again, then read a fresh image on every node at
        once every PROBE_PAUSE seconds until central sends one once. Two
        outages: an idle site (no reads after the first), and a busy one
        (a round of reads every second all along).
        """
        from glance_store_remote import coordination
        self.shaper.set({self.lab.central.port: WAN})
        outage = 2 * coordination.RETRY_INTERVAL
        self.results['etcd_recovery'] = {}
        for variant in ('idle', 'busy'):
            rounds_down = int(outage) + 1 if variant == 'busy' else 1
            down_images = [self.linked(PROBE_SIZE, 'down-%d' % n)
                           for n in range(rounds_down)]
            probes = [self.linked(PROBE_SIZE, 'probe-%d' % n)
                      for n in range(PROBES)]
            self.lab.etcd.stop()
            stopped = time.monotonic()
            during = []
            for image in down_images:
                during.append(self.pulls(*image))
                time.sleep(max(0.0, 1 - (time.monotonic() - stopped) %
                               1))
            time.sleep(max(0.0, outage - (time.monotonic() - stopped)))
            started = time.monotonic()
            self.lab.etcd.start()
            back = time.monotonic()
            rounds = []
            for image in probes:
                last_round = time.monotonic()
                rounds.append(self.pulls(*image))
                if rounds[-1] == 1:
                    break
                time.sleep(PROBE_PAUSE)
            done = time.monotonic()
            recovered = rounds[-1] == 1
            self.row('etcd back after %.0f s, %s site: one pull again after'
                     % (back - stopped, variant), done - back, 's', None,
                     '%s; %d probe round(s) (pulls %s); pulls while down %s'
                     % ('recovered' if recovered else 'NOT RECOVERED',
                        len(rounds), rounds, during))
            self.results['etcd_recovery'][variant] = {
                'seconds_after_ready': done - back,
                'good_round_started_s': last_round - back,
                'outage_s': back - stopped, 'etcd_start_s': back - started,
                'recovered': recovered, 'pulls_per_round': rounds,
                'pulls_while_down': during,
                'probe_mib': PROBE_SIZE // MiB,
                'retry_interval_s': coordination.RETRY_INTERVAL}

    def pulls(self, record, edge_id):
        """Read the image on every node at once (verified); the number of
        GETs of it central answered.
        """
        since = len(self.lab.central.access_entries())
        _, results = self.together([
            (lambda n=n: boot(self.url(n, edge_id), record))
            for n in self.lab.nodes])
        problems = [p for _, p in results if p]
        if problems:
            raise RuntimeError('probe reads: %s' % problems)
        self.wait_fills(record.id)
        return self.central_sent(record.id, since)[1]

    # -- 4. one miss through the WAN against a direct download -------------

    def wan_miss(self):
        """A direct download from central, then a miss through the
        coordinated site's haproxy, at its node-3 directly, and through
        the per-node site's haproxy, alternating, at each WAN speed.
        """
        per_node, site = self.labs
        images = {}
        for lab in self.labs:
            self.use(lab)
            images[lab] = self.linked(self.size, 'wan')
        record, edge_id = images[site]
        variants = {
            'direct': (site, self.url(site.central, record.id)),
            'site': (site, self.url(site.edge, edge_id)),
            'node': (site, self.url(site.nodes[2], edge_id)),
            'per_node': (per_node, self.url(per_node.edge,
                                            images[per_node][1]))}
        hdrs = {'direct': {'User-Agent': CLIENT_AGENT}}
        self.results['wan'] = {}
        for rate in (WAN, GBIT):
            self.shaper.set({lab.central.port: rate for lab in self.labs})
            times = {v: [] for v in variants}
            firsts = {v: [] for v in variants}
            lasts = {v: [] for v in variants}
            for _ in range(self.trials):
                for variant, (lab, url) in variants.items():
                    self.use(lab)
                    image = images[lab][0]
                    if variant != 'direct':
                        self.evict(image.id)
                    seconds, problem = boot(url, image, hdrs.get(variant),
                                            firsts[variant], lasts[variant])
                    if problem:
                        raise RuntimeError('%s at %d B/s: %s' % (
                            variant, rate, problem))
                    times[variant].append(seconds)
            speed = {v: self.size / MiB / statistics.median(t)
                     for v, t in times.items()}
            extra = {v: statistics.median(t) - statistics.median(
                times['direct']) for v, t in times.items()}
            first = {v: statistics.median(t) - statistics.median(
                firsts['direct']) for v, t in firsts.items()}
            final = {v: statistics.median(t) - statistics.median(
                lasts['direct']) for v, t in lasts.items()}
            link = self.shaper.describe(rate)
            self.row('WAN %s: direct from central, verified' % link,
                     speed['direct'], 'MiB/s')
            for variant, name, note in (
                    ('site', 'one miss via the site front', 'goal >= 0.97'),
                    ('node', 'one miss at a node', 'no haproxy'),
                    ('per_node', 'one miss, per-node site',
                     'no coordinator')):
                self.row('WAN %s: %s (vs direct)' % (link, name),
                         speed[variant], 'MiB/s',
                         speed[variant] / speed['direct'],
                         '%s; %+.2f s: first 4 MiB %+.2f, last %+.2f' % (
                             note, extra[variant], first[variant],
                             final[variant]))
            self.results['wan'][str(rate)] = {
                'link_bytes_s': rate, 'median_mib_s': speed,
                'trials_s': times, 'first_4mib_s': firsts,
                'last_4mib_s': lasts,
                'vs_direct': {v: speed[v] / speed['direct']
                              for v in variants}}
        self.use(site)

    # -- the section -------------------------------------------------------

    def run(self):
        wan = self.shaper.describe(WAN)
        self.say('\nHA edge site: %d nodes behind haproxy on MariaDB, %d MiB '
                 'image, median of %d; central behind a WAN of %s unless '
                 'said otherwise (load average %s on %d cores, shared)'
                 % (NODES, self.size // MiB, self.trials, wan,
                    self.results['load_before'], os.cpu_count()))
        self.start(coordination=False)
        self.start(coordination=True)
        boots = self.boot_trials()
        per_node, site = boots['per_node'], boots['site']
        self.results['boots'] = boots
        self.boot_rows('per-node caches', per_node)
        self.boot_rows('coordinated site', site)
        self.row('central bytes, coordinated site / per-node',
                 site['central_sent_bytes'] /
                 max(per_node['central_sent_bytes'], 1), '', None,
                 '24 boots (8 a node) of one image')
        self.row('24 boots wall, coordinated site / per-node',
                 site['wall_s'] / per_node['wall_s'], '')
        self.wan_miss()
        self.labs.pop(0).stop()
        self.use(self.labs[0])
        self.peer_vs_central()
        self.etcd_recovery()
        self.results['load_after'] = load()
        self.say('load average after: %s' % self.results['load_after'])

    def dump(self, path):
        with open(path, 'w') as f:
            json.dump({'rows': self.rows, 'lines': self.lines,
                       'results': self.results}, f, indent=2)


def format_row(name, value, unit, ratio=None, note=''):
    ratio_text = '' if ratio is None else '%.2fx' % ratio
    return '  %-58s %9s %-6s %6s  %s' % (
        name, '%.2f' % value if isinstance(value, float) else value, unit,
        ratio_text, note)


def inner_main(argv):
    """The child in the namespace: measure, dump to the --inner file."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--inner', required=True)
    parser.add_argument('--size-mib', type=int, required=True)
    parser.add_argument('--trials', type=int, required=True)
    parser.add_argument('--namespace')
    args = parser.parse_args(argv)
    bench = SiteBench(args.size_mib * MiB, args.trials,
                      Shaper(args.namespace))
    try:
        bench.run()
    except BaseException as e:
        bench.results['error'] = '%s: %s' % (type(e).__name__, e)
        bench.say('  site rows stopped: %s' % bench.results['error'])
        raise
    finally:
        bench.cleanup()
        bench.dump(args.inner)
    return 0


# -- the parent: the namespace ----------------------------------------------

class Namespace:
    """A network namespace of the benchmark's own, its ``lo`` up."""

    def __init__(self):
        self.name = 'gsr-bench-%d' % os.getpid()
        self.made = False

    @staticmethod
    def unavailable_reason():
        if os.geteuid() != 0:
            return 'not root: no network namespace'
        missing = [b for b in ('ip', 'tc') if not shutil.which(b) and
                   not os.path.exists('/usr/sbin/' + b)]
        if missing:
            return 'missing %s (Debian package iproute2)' % ', '.join(missing)
        return None

    def make(self):
        """Make it; returns None, or why it cannot be made."""
        reason = self.unavailable_reason()
        if reason:
            return reason
        made = subprocess.run(['ip', 'netns', 'add', self.name],
                              capture_output=True, text=True, timeout=30)
        if made.returncode:
            return 'ip netns add: %s' % made.stderr.strip()
        self.made = True
        up = subprocess.run(['ip', 'netns', 'exec', self.name, 'ip', 'link',
                             'set', 'lo', 'up'], capture_output=True,
                            text=True, timeout=30)
        if up.returncode:
            return 'lo up in the namespace: %s' % up.stderr.strip()
        probe = subprocess.run(
            ['ip', 'netns', 'exec', self.name, 'tc', 'qdisc', 'add', 'dev',
             'lo', 'root', 'handle', '1:', 'htb'],
            capture_output=True, text=True, timeout=30)
        if probe.returncode:
            return 'tc htb in the namespace: %s' % probe.stderr.strip()
        subprocess.run(['ip', 'netns', 'exec', self.name, 'tc', 'qdisc',
                        'del', 'dev', 'lo', 'root'], capture_output=True,
                       timeout=30)
        return None

    def pids(self):
        """PIDs of the processes in this namespace (all the benchmark's)."""
        try:
            mine = os.stat('/run/netns/%s' % self.name)
        except OSError:
            return []
        found = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                ns = os.stat('/proc/%s/ns/net' % entry)
            except OSError:
                continue
            if (ns.st_ino, ns.st_dev) == (mine.st_ino, mine.st_dev):
                found.append(int(entry))
        return found

    def remove(self):
        """SIGKILL what still runs in it, by PID; delete it."""
        if not self.made:
            return
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        subprocess.run(['ip', 'netns', 'del', self.name],
                       capture_output=True, timeout=30)
        self.made = False


class SiteRows:
    """The site section of a running tools.bench.Bench: runs the
    measurements in a child inside a namespace of its own, then adds the
    rows to the bench's.
    """

    def __init__(self, bench):
        self.bench = bench
        self.data = None
        self.failed = None

    def run(self):
        bench = self.bench
        size = min(bench.size, MAX_SIZE)
        namespace = Namespace()
        proc = None
        out = os.path.join(bench.tmp, 'site.json')
        try:
            reason = namespace.make()
            if reason:
                namespace.remove()
                bench.say('\nHA edge site: NOT SHAPED, %s' % reason)
            prefix = [] if reason else ['ip', 'netns', 'exec', namespace.name]
            command = prefix + [
                sys.executable, '-m', 'tools.bench_site', '--inner', out,
                '--size-mib', str(size // MiB),
                '--trials', str(bench.args.trials)] + (
                [] if reason else ['--namespace', namespace.name])
            proc = subprocess.Popen(command, cwd=ROOT,
                                    stdin=subprocess.DEVNULL,
                                    start_new_session=True,
                                    preexec_fn=daemon.die_with_parent)
            proc.wait(INNER_TIMEOUT)
        finally:
            daemon.stop(proc, 30)
            namespace.remove()
        try:
            with open(out) as f:
                self.data = json.load(f)
        except (OSError, ValueError):
            self.data = {'rows': [], 'lines': [], 'results': {
                'error': 'the site child left no results (exit %s)'
                % proc.returncode}}
        results = self.data['results']
        if proc.returncode or results.get('error'):
            self.failed = results.get('error') or 'exit %s' % proc.returncode
            bench.say('  HA edge site rows FAILED: %s' % self.failed)
        if not results.get('shaped'):
            results['not_shaped_because'] = reason
        bench.results['site'] = dict(results, rows=[
            {'name': n, 'value': v, 'unit': u, 'ratio': r, 'note': note}
            for n, v, u, r, note in self.data['rows']])
        for line in self.data['lines']:
            bench.lines.append(line)
        for row in self.data['rows']:
            bench.rows.append(tuple(row))
        if not self.failed:
            self.write_text()

    def write_text(self):
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, TEXT_FILE), 'w') as f:
            f.write('\n'.join(self.data['lines']).lstrip('\n') + '\n')

    def write(self):
        """--only site: merge the site's results into results.json (the
        other sections' numbers stay as they are). Nothing is written
        after a failed run.
        """
        if self.failed:
            raise RuntimeError('the site rows failed (%s); nothing written'
                               % self.failed)
        path = bench_results.merge(OUT, 'site', self.bench.results['site'])
        self.bench.say('wrote %s and %s' % (
            os.path.relpath(path, ROOT),
            os.path.relpath(os.path.join(OUT, TEXT_FILE), ROOT)))


if __name__ == '__main__':
    sys.exit(inner_main(sys.argv[1:]))
