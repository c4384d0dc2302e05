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

"""The fault soak (``tox -e soak``): an operator's bad day on a loopback
site, one fault at a time, every answer checked.

The site is tests/harness/site.py's EdgeSiteLab, coordinated (etcd): three edge
glance-api nodes on one MariaDB behind haproxy, reading the lab's central.
edge-3's cache is capped (``--cap-images`` images) so that it evicts all
the time; the lab gives every node one cap, so edge-3 is restarted with a
config of its own before the soak. edge-1 and edge-2 read every image once
first: from then on a peer holds each image.

``--clients`` threads boot (whole GETs, hashed against central's sha512),
range (checked byte for byte) and show (checked against central's record)
the images, through the balancer and at each node, while faults come one
at a time: a peer node and the capped node SIGKILLed and restarted,
central frozen (SIGSTOP) and thawed, stopped and started, SIGKILLed while
a node streams from it, etcd stopped and started, MariaDB restarted.
After each fault, every node reads an image it never read (central, the
database and the node itself are needed) until it succeeds: the recovery
time. After the soak: every linked image's record in the edge database
against central's, every image read whole on every node, open descriptors
of each node's worker against before.

Failures during a fault are counted per phase and target, never hidden.
The soak fails (exit 1) on wrong bytes or a wrong record, a node that
never recovers, or a check after the soak; it writes its table either way.
Everything runs on 127.0.0.1, every loop is bounded, and every process is
the lab's, stopped by PID (also after a failure).


"""

import argparse
import collections
import contextlib
import io
import json
import os
import random
import sqlite3
import sys
import threading
import time

import requests

from glance_store_remote import cache as cache_module
from glance_store_remote import cache_index
from tests.harness import lab as lab_module
from tests.harness import site as site_module
from tools import soak_report as report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MiB = 1024 * 1024
READ = MiB
OUT = os.path.join(ROOT, 'doc', 'source', 'benchmarks')
IMAGES = 6
PROBE_SIZE = MiB + 17         # the image each node reads after a fault
RECOVERY_TIMEOUT = 180        # seconds for every node to read again
PROBE_PAUSE = 0.2             # seconds between two reads of one prober
OUTAGE_PAUSE = 0.5            # seconds between two reads during a fault
# A freeze shorter than the nodes' timeout (the lab's 5 s) is only a slow
# central: it lasts at least this long.
FREEZE_MIN = 8
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60             # seconds of silence a client waits
MID_STREAM_SHARE = 0.3        # central is killed when this much is filled
# Where the clients send: the balancer and the capped node most.
TARGET_WEIGHTS = (('balancer', 4), (report.CAPPED, 3), ('edge-1', 1.5),
                  ('edge-2', 1.5))
OPS = (('boot', 4), ('range', 4), ('show', 2))
FULL = {'duration': 360, 'clients': 10, 'image_mib': 16, 'outage': 10,
        'settle': 5}
QUICK = {'duration': 0, 'clients': 6, 'image_mib': 8, 'outage': 3,
         'settle': 3}


def identity():
    ident = lab_module.ADMIN
    return {'X-Identity-Status': 'Confirmed',
            'X-Project-Id': ident.project_id, 'X-User-Id': ident.user_id,
            'X-Roles': ','.join(ident.roles), 'User-Agent': 'gsr-soak'}


def read_data(url, expected, asked=None, pace=None, progress=None):
    """GET image data at *url*; (outcome, request id). Never raises.

    :param asked: (first, last) for a Range, or None
    :param pace: seconds to sleep after each MiB (a slow client)
    :param progress: called with the bytes received so far
    """
    headers = identity()
    if asked:
        headers['Range'] = 'bytes=%d-%d' % asked
    try:
        response = requests.get(url, headers=headers, stream=True,
                                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.ConnectionError as e:
        return ('timeout' if isinstance(e, requests.ConnectTimeout)
                else 'connection error'), None
    except requests.Timeout:
        return 'timeout', None
    except (requests.RequestException, OSError) as e:
        return type(e).__name__, None
    request_id = response.headers.get('x-openstack-request-id')
    with response:
        if response.status_code not in (200, 206):
            return 'status %d' % response.status_code, request_id
        body = bytearray()
        try:
            while True:
                block = response.raw.read(READ)
                if not block:
                    break
                body += block
                if progress:
                    progress(len(body))
                if pace:
                    time.sleep(pace)
        except Exception:
            # The stream broke (reset, IncompleteRead, timeout): the
            # client knows; the bytes so far are judged, never as whole.
            return report.SHORT, request_id
        return report.judge_body(response.status_code, response.headers,
                                 bytes(body), expected, asked), request_id


def read_record(url, central):
    """image-show at *url*; (outcome, request id). Never raises."""
    try:
        response = requests.get(url, headers=identity(),
                                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.ConnectTimeout:
        return 'timeout', None
    except requests.ConnectionError:
        return 'connection error', None
    except requests.Timeout:
        return 'timeout', None
    except (requests.RequestException, OSError) as e:
        return type(e).__name__, None
    request_id = response.headers.get('x-openstack-request-id')
    if response.status_code != 200:
        return 'status %d' % response.status_code, request_id
    try:
        record = response.json()
    except ValueError:
        return report.WRONG_RECORD, request_id
    outcome = report.judge_record(record, central)
    return (report.OK if outcome == report.OK else report.WRONG_RECORD,
            request_id)


class Image:
    """One image at central, linked at the edge, its bytes kept."""

    def __init__(self, name, data, central, edge_id):
        self.name = name
        self.data = data
        self.central = central   # {'id', 'size', 'checksum', ...}
        self.edge_id = edge_id

    @property
    def central_id(self):
        return self.central['id']


class Soak:

    def __init__(self, args):
        self.args = args
        self.image_size = args.image_mib * MiB
        self.cap = int(args.cap_images * self.image_size)
        self.lab = None
        self.caches = {}
        self.images = []
        self.linked = []          # every image linked (for the DB check)
        self.tally = report.Tally()
        self.phase = report.STEADY
        self.down = set()         # nodes killed just now
        self.last_ended = None    # (fault, when it ended)
        self.stop_clients = threading.Event()
        self.recoveries = []
        self.faults_run = 0
        self.notes = []
        self.rng = random.Random(args.seed)
        # {phase: {node: {counter: bytes}}} read by each node's cache
        self.bytes = collections.defaultdict(lambda: collections.defaultdict(
            collections.Counter))
        self.last_counters = None

    # -- the site ----------------------------------------------------------

    def say(self, text):
        print(text, flush=True)

    def start(self):
        lab = site_module.EdgeSiteLab(
            nodes=3, coordination=True,
            cache_max_size=4 * IMAGES * self.image_size + 256 * MiB)
        # Clients, the probes and the peers' reads at once, on one worker.
        lab.node_threads = max(16, 2 * self.args.clients + 8)
        self.lab = lab
        lab.start()
        capped = lab.node(report.CAPPED)
        capped.stop()
        capped.set_options({'central': {
            'remote_glance_cache_max_size': self.cap}})
        capped.start()
        lab.balancer.wait_states({report.CAPPED: 'UP'}, timeout=60)
        for index, node in enumerate(lab.nodes):
            self.caches[node.name] = cache_module.Cache(
                lab.cache_dir(index), 1)

    def make_image(self, name, size):
        """Upload random bytes to central, link them at the edge (the
        record-copy filter copies central's record synchronously).
        """
        data = os.urandom(size)
        central = self.lab.central.glance()
        image = central.images.create(name=name, disk_format='raw',
                                      container_format='bare')
        central.images.upload(image.id, io.BytesIO(data))
        record = central.images.get(image.id)
        edge = self.lab.edge.glance(lab_module.ADMIN)
        linked = edge.images.create(name=name, disk_format='raw',
                                    container_format='bare')
        edge.images.add_location(
            linked.id, 'remote-glance://central/%s' % record.id, {})
        made = Image(name, data, {
            'id': record.id, 'size': record.size,
            'checksum': record.checksum,
            'os_hash_value': record.os_hash_value}, linked.id)
        self.linked.append(made)
        return made

    def url(self, target, image, data=True):
        server = (self.lab.balancer if target == 'balancer'
                  else self.lab.node(target))
        return '%s/v2/images/%s%s' % (server.url, image.edge_id,
                                      '/file' if data else '')

    def wait_fills(self, image, timeout=120):
        """Wait until no node fills *image* (the commit follows the
        client's last byte).
        """
        deadline = time.monotonic() + timeout
        for store in self.caches.values():
            lock = store.lock(image.central_id, 'fill')
            try:
                while not lock.try_lock():
                    if time.monotonic() > deadline:
                        raise RuntimeError('a fill of %s still runs'
                                           % image.name)
                    time.sleep(0.05)
                lock.unlock()
            finally:
                lock.close()

    def held(self, node, image):
        try:
            entry = self.caches[node].entry(image.central_id)
        except Exception:
            return False
        return entry is not None and entry.state == 'complete'

    def peer_held(self, image):
        """A running peer of the capped node holds *image* complete."""
        return any(self.held(node, image) for node in ('edge-1', 'edge-2')
                   if node not in self.down)

    def descriptors(self):
        counts = {}
        for node in self.lab.nodes:
            total = 0
            for pid in node.worker_pids():
                try:
                    total += len(os.listdir('/proc/%d/fd' % pid))
                except OSError:
                    pass
            counts[node.name] = (total, node.proc.pid)
        return counts

    def account(self, phase):
        """Add what each node's cache read since the last call to
        *phase*'s bytes.
        """
        now = self.counters()
        for node, values in now.items():
            for key in ('bytes_from_central', 'bytes_from_peers'):
                self.bytes[phase][node][key] += (
                    values[key] - self.last_counters[node][key])
        self.last_counters = now

    def counters(self):
        return {name: store.counters() for name, store in self.caches.items()}

    # -- the clients -------------------------------------------------------

    def client(self, number):
        rng = random.Random(self.args.seed * 1000 + number)
        targets = [t for t, _ in TARGET_WEIGHTS]
        target_weights = [w for _, w in TARGET_WEIGHTS]
        ops = [o for o, _ in OPS]
        op_weights = [w for _, w in OPS]
        while not self.stop_clients.is_set():
            target = rng.choices(targets, target_weights)[0]
            op = rng.choices(ops, op_weights)[0]
            image = rng.choice(self.images)
            phase = self.phase
            peer_held = (self.peer_held(image) if target == report.CAPPED
                         else None)
            started = time.monotonic()
            if op == 'show':
                outcome, request_id = read_record(
                    self.url(target, image, data=False), image.central)
            else:
                asked = None
                if op == 'range':
                    size = len(image.data)
                    if rng.random() < 0.25:
                        # The tail: the byte a fill holds back last.
                        first = size - rng.randint(1, 64 * 1024)
                    else:
                        first = rng.randrange(size)
                    asked = (first, min(size - 1,
                                        first + rng.randint(0, 2 * MiB)))
                outcome, request_id = read_data(self.url(target, image),
                                                image.data, asked)
            # A request that a fault overtook belongs to that fault.
            if self.phase != report.STEADY:
                phase = self.phase
            self.tally.add(report.Result(
                started, phase, target, op, outcome,
                time.monotonic() - started, peer_held, request_id,
                self.last_ended))
            if outcome in (report.WRONG, report.WRONG_RECORD):
                self.say('  %s: %s %s of %s at %s' % (
                    outcome, phase, op, image.name, target))
            elif outcome != report.OK:
                # A failing target is not hammered: a client backs off.
                time.sleep(0.2)

    # -- the faults --------------------------------------------------------

    def crash_node(self, name):
        node = self.lab.node(name)
        self.down.add(name)
        node.kill()
        readers = self.fault_started()
        time.sleep(self.args.outage)
        node.start()
        self.down.discard(name)
        return readers

    def crash_peer(self):
        return self.crash_node('edge-1')

    def crash_capped(self):
        return self.crash_node(report.CAPPED)

    def freeze_central(self):
        self.lab.central.freeze()
        readers = self.fault_started()
        time.sleep(max(self.args.outage, FREEZE_MIN))
        self.lab.central.thaw()
        return readers

    def stop_central(self):
        self.lab.central.stop()
        readers = self.fault_started()
        time.sleep(self.args.outage)
        self.lab.central.start()
        return readers

    def kill_central_mid_stream(self):
        """A slow client at edge-1 reads an image no node holds; central
        is SIGKILLed when edge-1's fill from it holds MID_STREAM_SHARE of
        the image (the fill runs ahead of a slow client).
        """
        image = self.make_image('mid-stream',
                                max(8 * self.image_size, 128 * MiB) + 5)
        outcome = []
        mark = int(MID_STREAM_SHARE * len(image.data))
        store = self.caches['edge-1']
        partial = store.data_path(image.central_id, partial=True)

        def slow():
            started = time.monotonic()
            result, request_id = read_data(
                self.url('edge-1', image), image.data, pace=0.05)
            outcome.append(result)
            phase = self.phase if self.phase != report.STEADY else \
                'central SIGKILLed mid-stream'
            self.tally.add(report.Result(
                started, phase, 'edge-1', 'mid-stream', result,
                time.monotonic() - started, None, request_id,
                self.last_ended))

        reader = threading.Thread(target=slow, daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        filled = 0
        while time.monotonic() < deadline and reader.is_alive():
            try:
                filled = os.path.getsize(partial)
            except OSError:
                filled = 0
            if filled >= mark or self.held('edge-1', image):
                break
            time.sleep(0.002)
        central = self.lab.central
        central.kill()
        readers = self.fault_started()
        if self.held('edge-1', image):
            self.notes.append('central SIGKILLed mid-stream: edge-1 held '
                              'the whole image before the kill')
        else:
            self.notes.append('central SIGKILLed mid-stream: edge-1\'s fill '
                              'held %.0f%% of the image at the kill'
                              % (100.0 * filled / len(image.data)))
        reader.join(READ_TIMEOUT + 30)
        self.notes.append('central SIGKILLed mid-stream: the slow client at '
                          'edge-1 got %s' % (outcome or ['no answer'])[0])
        time.sleep(self.args.outage)
        central.start()
        self.images_after.append(image)
        return readers

    def stop_etcd(self):
        self.lab.etcd.stop()
        readers = self.fault_started()
        time.sleep(self.args.outage)
        self.lab.etcd.start()
        return readers

    def restart_mariadb(self):
        self.lab.db.stop()
        readers = self.fault_started()
        time.sleep(self.args.outage)
        self.lab.db.start()
        return readers

    FAULTS = (
        ('peer edge-1 SIGKILLed, restarted', 'crash_peer'),
        ('central frozen (SIGSTOP), thawed', 'freeze_central'),
        ('central stopped, started', 'stop_central'),
        ('central SIGKILLed mid-stream', 'kill_central_mid_stream'),
        ('etcd stopped, started', 'stop_etcd'),
        ('MariaDB restarted', 'restart_mariadb'),
        ('capped edge-3 SIGKILLed, restarted', 'crash_capped'),
    )

    def recover(self, probes, ended):
        """Each node reads its probe image (never read before) until it
        succeeds; {node: seconds after *ended*, or None}.
        """
        seconds = {}

        def probe(name, image):
            deadline = ended + RECOVERY_TIMEOUT
            while time.monotonic() < deadline:
                outcome, _ = read_data(self.url(name, image), image.data)
                if outcome == report.OK:
                    seconds[name] = time.monotonic() - ended
                    return
                if outcome in (report.WRONG, report.WRONG_RECORD):
                    self.tally.add(report.Result(
                        time.monotonic(), self.phase, name, 'probe',
                        outcome, 0.0, None, None, None))
                time.sleep(PROBE_PAUSE)
            seconds[name] = None

        threads = [threading.Thread(target=probe, args=(name, image),
                                    daemon=True)
                   for name, image in probes.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(RECOVERY_TIMEOUT + READ_TIMEOUT + 30)
        return {name: seconds.get(name) for name in probes}

    def during(self, images, ended):
        """Each node reads its own image that only central holds, every
        OUTAGE_PAUSE seconds until *ended* is set: it needs central (and
        its breaker opens while central cannot answer). Returns
        {node: [failed, reads]} once the readers stopped.
        """
        counts = {name: [0, 0] for name in images}

        def read(name, image):
            while not ended.is_set():
                outcome, _ = read_data(self.url(name, image), image.data)
                counts[name][1] += 1
                if outcome in (report.WRONG, report.WRONG_RECORD):
                    self.tally.add(report.Result(
                        time.monotonic(), self.phase, name, 'outage read',
                        outcome, 0.0, None, None, None))
                if outcome != report.OK:
                    counts[name][0] += 1
                ended.wait(OUTAGE_PAUSE)

        threads = [threading.Thread(target=read, args=item, daemon=True)
                   for item in images.items()]
        for thread in threads:
            thread.start()
        return threads, counts

    def breakers_open(self):
        """The nodes whose breaker for central is not closed."""
        found = []
        for index, node in enumerate(self.lab.nodes):
            path = os.path.join(self.lab.cache_dir(index), cache_index.INDEX)
            try:
                with contextlib.closing(sqlite3.connect(
                        'file:%s?mode=ro' % path, uri=True,
                        timeout=5)) as db:
                    states = [state for (state,) in db.execute(
                        'SELECT state FROM breaker')]
            except sqlite3.Error:
                continue
            if any(state != 'closed' for state in states):
                found.append(node.name)
        return found

    def fault(self, name, method):
        round_ = self.faults_run // len(self.FAULTS) + 1
        fresh = {kind: {node.name: self.make_image(
            '%s-%d-%s' % (kind, self.faults_run, node.name), PROBE_SIZE)
            for node in self.lab.nodes} for kind in ('outage', 'probe')}
        self.say('fault %d: %s' % (self.faults_run + 1, name))
        self.account(report.STEADY)
        self.phase = name
        started = time.monotonic()
        stop_readers = threading.Event()
        self.fault_started = lambda: self.during(fresh['outage'],
                                                 stop_readers)
        readers = None
        try:
            readers = getattr(self, method)()
        finally:
            stop_readers.set()
        ended = time.monotonic()
        breakers = self.breakers_open()
        threads, counts = readers or ([], {})
        for thread in threads:
            thread.join(READ_TIMEOUT + 30)
        seconds = self.recover(fresh['probe'], ended)
        self.last_ended = (name, ended)
        self.account(name)
        self.phase = report.STEADY
        self.recoveries.append(report.Recovery(
            name if round_ == 1 else '%s (%d)' % (name, round_),
            ended - started, seconds, counts, breakers))
        self.say('  outage %.1f s, breakers open at its end %s, reads of '
                 'an image only central held %s, recovered after %s' % (
                     ended - started, breakers, counts,
                     {n: None if s is None else round(s, 2)
                      for n, s in seconds.items()}))
        self.faults_run += 1
        time.sleep(self.args.settle)

    # -- the run -----------------------------------------------------------

    def run(self):
        args = self.args
        self.images_after = []
        self.say('starting the site (3 nodes, MariaDB, haproxy, etcd)')
        self.start()
        self.images = [self.make_image('soak-%d' % n, self.image_size + n)
                       for n in range(IMAGES)]
        # edge-1 and edge-2 read every image once: a peer holds each.
        for name in ('edge-1', 'edge-2'):
            for image in self.images:
                outcome, _ = read_data(self.url(name, image), image.data)
                if outcome != report.OK:
                    raise RuntimeError('warm-up read of %s at %s: %s' % (
                        image.name, name, outcome))
                self.wait_fills(image)
        fds_before = self.descriptors()
        counters_before = self.last_counters = self.counters()
        central_before = len(self.lab.central.access_entries())
        clients = [threading.Thread(target=self.client, args=(n,),
                                    daemon=True)
                   for n in range(args.clients)]
        soak_started = self.began = time.monotonic()
        for thread in clients:
            thread.start()
        try:
            time.sleep(args.settle)
            while True:
                for name, method in self.FAULTS:
                    self.fault(name, method)
                if time.monotonic() - soak_started >= args.duration:
                    break
        finally:
            self.stop_clients.set()
            for thread in clients:
                thread.join(READ_TIMEOUT + 30)
        soak_seconds = time.monotonic() - soak_started
        self.account(report.STEADY)
        self.say('faults done; checking')
        checks = [self.check_served(), self.check_records()]
        time.sleep(args.settle)
        fds_after = self.descriptors()
        counters_after = self.counters()
        central_files = [e for e in self.lab.central.access_entries()[
            central_before:] if e.method == 'GET' and
            e.path.endswith('/file') and e.status in ('200', '206')]
        central_mib = sum(int(e.sent) for e in central_files
                          if e.sent.isdigit()) / MiB
        descriptors = {
            name: (fds_before[name][0], fds_after[name][0],
                   fds_before[name][1] != fds_after[name][1])
            for name in fds_before}
        counters = {name: {key: counters_after[name][key] -
                           counters_before[name].get(key, 0)
                           for key in counters_after[name]}
                    for name in counters_after}
        header = [
            'Fault soak%s: 3 nodes on MariaDB behind haproxy, coordinated '
            'through etcd;' % (' (--quick)' if args.quick else ''),
            '%s\'s cache capped at %.1f images (%d MiB), the others at %d '
            'MiB; %d images of %d MiB;' % (
                report.CAPPED, args.cap_images, self.cap // MiB,
                self.lab.cache_max_size // MiB, IMAGES, args.image_mib),
            '%d clients (boots, ranges, image-shows) for %.0f s, %d faults '
            'one at a time (outage %.0f s each, %.0f s between);' % (
                args.clients, soak_seconds, self.faults_run, args.outage,
                args.settle),
            'central sent %.0f MiB in %d data reads to the site during the '
            'soak; load average %s on %d cores.' % (
                central_mib, len(central_files),
                '%.1f %.1f %.1f' % os.getloadavg(), os.cpu_count())]
        checks.insert(0, ('no wrong bytes, no wrong record', '%d of %d '
                          'answers' % (len(self.tally.wrong()),
                                       len(self.tally.results)),
                          not self.tally.wrong()))
        lines = report.table(self.tally, header, self.recoveries,
                             descriptors, counters, checks,
                             self.served_by(), self.bytes)
        lines += [''] + ['Note: ' + note for note in self.notes]
        reasons = report.verdict(self.tally, self.recoveries, checks)
        lines += ['', 'Verdict: %s' % ('passed' if not reasons else
                                       'FAILED: ' + '; '.join(reasons))]
        self.say('\n'.join(lines))
        if not args.no_write:
            self.write(lines, descriptors, counters, checks, reasons)
        return 1 if reasons else 0

    def check_served(self):
        """Every node reads every image whole afterwards."""
        failed = []
        images = self.images + self.images_after
        for node in self.lab.nodes:
            for image in images:
                outcome, _ = read_data(self.url(node.name, image), image.data)
                if outcome != report.OK:
                    failed.append('%s at %s: %s' % (image.name, node.name,
                                                    outcome))
        total = len(images) * len(self.lab.nodes)
        return ('every node serves every image after',
                '%d of %d reads%s' % (total - len(failed), total,
                                      ': ' + '; '.join(failed[:3])
                                      if failed else ''), not failed)

    def check_records(self):
        """Every linked image in the edge database: active, central's
        size and hashes, its location live.
        """
        bad = []
        for image in self.linked:
            rows = self.lab.edge_query(
                'SELECT status, size, checksum, os_hash_value, deleted '
                'FROM images WHERE id = %s', (image.edge_id,))
            locations = self.lab.edge_query(
                'SELECT value FROM image_locations WHERE image_id = %s AND '
                'deleted = 0', (image.edge_id,))
            if len(rows) != 1 or rows[0][4]:
                bad.append('%s: no live row' % image.name)
                continue
            status, size, checksum, os_hash_value, _ = rows[0]
            outcome = report.judge_record(
                {'status': status, 'size': size, 'checksum': checksum,
                 'os_hash_value': os_hash_value}, image.central)
            if outcome != report.OK:
                bad.append('%s: %s' % (image.name, outcome))
            if [v for (v,) in locations] != [
                    'remote-glance://central/%s' % image.central_id]:
                bad.append('%s: locations %s' % (image.name, locations))
        return ('records in the edge database', '%d of %d linked images%s'
                % (len(self.linked) - len(bad), len(self.linked),
                   ': ' + '; '.join(bad[:3]) if bad else ''), not bad)

    def served_by(self):
        """{phase: {node: n}} of the balancer's failures, by the node
        whose log names their request ID.
        """
        failed = [r for r in self.tally.results
                  if r.target == 'balancer' and r.outcome != report.OK]
        if not failed:
            return {}
        logs = {node.name: node.log_text() for node in self.lab.nodes}
        found = {}
        for result in failed:
            node = 'haproxy' if not result.request_id else next(
                (name for name, text in logs.items()
                 if result.request_id in text), 'unknown')
            found.setdefault(result.phase, {}).setdefault(node, 0)
            found[result.phase][node] += 1
        return found

    def write(self, lines, descriptors, counters, checks, reasons):
        os.makedirs(self.args.out_dir, exist_ok=True)
        with open(os.path.join(self.args.out_dir, 'soak.txt'), 'w') as f:
            f.write('\n'.join(lines).rstrip() + '\n')
        tally = self.tally
        data = {
            'args': dict(vars(self.args), out_dir=os.path.relpath(
                self.args.out_dir, ROOT)),
            'phases': {phase: {
                'by_target': {t: tally.cell(phase, t)
                              for t in report.TARGETS},
                'failures': tally.kinds(phase),
                'capped_while_peer_held': tally.capped_peer_held(phase)}
                for phase in tally.phases()},
            'recoveries': [r._asdict() for r in self.recoveries],
            'descriptors': descriptors, 'counters': counters,
            'bytes_per_phase': self.bytes,
            'checks': checks, 'notes': self.notes, 'failed': reasons,
            'failures': [dict(r._asdict(), started=r.started - self.began,
                              after=r.after and [
                                  r.after[0], r.started - r.after[1]])
                         for r in tally.results if r.outcome != report.OK]}
        with open(os.path.join(self.args.out_dir, 'soak.json'), 'w') as f:
            json.dump(data, f, indent=2, sort_keys=True)
        self.say('wrote %s/soak.txt and soak.json' % os.path.relpath(
            self.args.out_dir, ROOT))

    def cleanup(self):
        self.stop_clients.set()
        if self.lab is not None:
            # Thaw central first: a frozen process group ignores SIGTERM.
            if self.lab.central is not None:
                self.lab.central.thaw()
            self.lab.stop()


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='one round of the faults with short outages '
                             '(about 90 s of faults): the published run')
    parser.add_argument('--duration', type=float,
                        help='seconds of faults: rounds of every fault '
                             'repeat until it is spent (default 360; '
                             '--quick: one round)')
    parser.add_argument('--clients', type=int,
                        help='client threads (default 10; --quick: 6)')
    parser.add_argument('--image-mib', type=int,
                        help='size of each image (default 16; --quick: 8)')
    parser.add_argument('--cap-images', type=float, default=2.5,
                        help='the capped node\'s cache, in images')
    parser.add_argument('--outage', type=float,
                        help='seconds each fault lasts (default 10; '
                             '--quick: 3)')
    parser.add_argument('--settle', type=float,
                        help='seconds between two faults (default 5; '
                             '--quick: 3)')
    parser.add_argument('--seed', type=int, default=20)
    parser.add_argument('--out-dir', default=OUT)
    parser.add_argument('--no-write', action='store_true')
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    reason = site_module.unavailable_reason()
    if reason:
        print(reason)
        return 2
    soak = Soak(args)
    try:
        return soak.run()
    finally:
        soak.cleanup()


if __name__ == '__main__':
    sys.exit(main())
