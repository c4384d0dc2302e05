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

"""The Ceph rows of tools/bench.py: a central whose images live in a REAL
single-node Ceph (tests/harness/ceph.py), read by the same edge as the other
rows through a backend of its own (``rbd-central``), behind a proxy that can
cut the stream.

Rows, side by side in the same run as the rest of the benchmark:

* a download straight from the RBD central, and a miss through the edge
  (ratio to it);
* a miss cut half way by the link: the follower takes the fill over, and
  since a central on RBD serves no ranges, central sends the image again
  from byte 0; the bytes it re-sent and the time against a clean miss;
* the edge's own Ceph (the DCN shape): Glance's copy-image of a linked
  image into the edge's rbd backend (``edge-rbd``, same cluster, its own
  pool), against a direct download of the same image and against the same
  bytes put into the same pool by Glance's own upload into that store and
  by ``rbd import`` (the trials interleaved), and a copy-on-write clone of
  its snapshot into a ``vms`` pool, as nova's rbd image backend clones.

Run alone (``--only ceph``) it writes results-ceph.txt and merges its
numbers into results.json.

Skipped, with the reason in the results, where Ceph is not installed.
"""

import os
import statistics
import sys
import time

import requests

from glance_store_remote import cache as cache_module
from tests.harness import ceph
from tests.harness import faults
from tests.harness import lab as lab_module
from tools import bench_data
from tools import bench_results

MiB = 1024 * 1024
BACKEND = 'rbd-central'
EDGE_STORE = 'edge-rbd'
COPY_TIMEOUT = 1800  # seconds for one copy-image
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'doc', 'source', 'benchmarks')
TEXT_FILE = 'results-ceph.txt'


class CephRows:
    """Owns the cluster, the RBD central and its proxy; ``bench`` is the
    running tools.bench.Bench.
    """

    def __init__(self, bench):
        self.bench = bench
        self.cluster = self.central = self.proxy = None
        self.skipped = ceph.unavailable_reason()

    def start(self, root):
        """Start Ceph and the RBD central; return the edge's backend
        options for it (merged before the edge restarts), or {}.
        """
        if self.skipped:
            return {}
        ceph.link_bindings(sys.executable)
        self.cluster = ceph.CephCluster(
            os.path.join(root, 'ceph'), pools=('images', 'edge', 'vms'),
            memstore_bytes=4 * self.bench.size + 512 * MiB).start()
        self.central = lab_module.GlanceServer(
            'central-rbd', os.path.join(root, 'central-rbd'), threads=32,
            policy=lab_module.ADMIN_EVERYONE,
            options=ceph.rbd_backend_options(self.cluster))
        lab_module.db_sync(self.central)
        self.central.start()
        self.proxy = faults.FaultyCentral(self.central.url).start()
        self.cache_dir = os.path.join(root, 'rbd-cache')
        edge_store = ceph.rbd_backend_options(self.cluster, EDGE_STORE,
                                              pool='edge', default=False)
        return {BACKEND: {
            'auth_type': 'none', 'endpoint_override': self.proxy.url,
            'timeout': 60, 'remote_glance_cache_dir': self.cache_dir,
            'remote_glance_cache_max_size': 64 * 1024 * MiB},
            EDGE_STORE: edge_store[EDGE_STORE]}

    @staticmethod
    def backends(options):
        """enabled_backends entries for the options start() returned."""
        return ['%s:%s' % (name, 'rbd' if name == EDGE_STORE
                           else 'remote-glance') for name in options]

    def stop(self):
        for part in (self.proxy, self.central, self.cluster):
            if part is not None:
                part.stop()

    def run(self, headers, timed):
        """Measure and add the rows; *timed(url, headers)* is the bench's
        timed whole download.
        """
        bench = self.bench
        first_line = len(bench.lines)
        bench.say('\ncentral on Ceph RBD (a single-node cluster, memstore '
                  'OSD), %d MiB image' % bench.args.size_mib)
        if self.skipped:
            bench.say('  skipped: %s' % self.skipped)
            bench.results['ceph'] = {'skipped': self.skipped}
            return
        store = cache_module.Cache(self.cache_dir, 64 * 1024 * MiB)
        image = bench.central_image(bench.size, 'bench-rbd',
                                    server=self.central)
        edge_id = bench.link(image.id, backend=BACKEND)
        edge_url = bench.url(bench.lab.edge, edge_id)

        def miss():
            bench.evict(image.id, store)
            return timed(edge_url, headers)

        direct = bench.throughput('rbd central, direct', lambda: timed(
            bench.url(self.central, image.id)))
        ours = bench.throughput('rbd central, remote-glance miss', miss)
        cut_seconds, resent = [], []
        for _ in range(bench.args.trials):
            bench.evict(image.id, store)
            before = store.counters()['bytes_resent']
            self.proxy.arm(cut_at=bench.size // 2)
            cut_seconds.append(timed(edge_url, headers))
            wait_for_fill(store, image.id)
            resent.append(store.counters()['bytes_resent'] - before)
        clean = bench.size / MiB / ours
        cut = statistics.median(cut_seconds)
        bench.row('direct from an RBD central', direct, 'MiB/s')
        bench.row('remote-glance miss from it (vs direct)', ours, 'MiB/s',
                  ours / direct)
        bench.row('miss cut at 50%, taken over (vs clean miss)', cut, 's',
                  cut / clean, 'the client never notices')
        bench.row('  bytes central re-sent for that resume',
                  statistics.median(resent) // MiB, 'MiB', None,
                  'central serves no ranges: the kept prefix, again')
        bench.results['ceph'] = {
            'direct_mib_s': direct, 'miss_mib_s': ours,
            'miss_vs_direct': ours / direct, 'cut_seconds': cut_seconds,
            'clean_miss_seconds': clean, 'resent_bytes': resent}
        self.copy_rows(headers, timed)
        if bench.args.only == 'ceph':
            self.write(bench.lines[first_line:])

    def write(self, lines):
        """--only ceph: write results-ceph.txt and merge the rows into
        results.json (the other sections' numbers stay as they are).
        """
        bench = self.bench
        bench.results['ceph'].update(
            size_mib=bench.args.size_mib, trials=bench.args.trials,
            rows=[{'name': n, 'value': v, 'unit': u, 'ratio': r,
                   'note': note} for n, v, u, r, note in bench.rows])
        path = bench_results.merge(OUT, 'ceph', bench.results['ceph'])
        text = os.path.join(OUT, TEXT_FILE)
        with open(text, 'w') as f:
            f.write('\n'.join(lines).lstrip('\n') + '\n')
        bench.say('wrote %s and %s' % (os.path.relpath(path, ROOT),
                                       os.path.relpath(text, ROOT)))

    def copy_rows(self, headers, timed):
        """copy-image into the edge's rbd store, a clone of it, and the
        baselines of the same bytes into the same pool: Glance's own upload
        into that store and ``rbd import``; the trials interleaved.
        """
        bench = self.bench
        source = bench_data.random_file(
            os.path.join(bench.tmp, 'copy-source.raw'), bench.size)
        client = bench.lab.central.glance()
        image = client.images.create(name='bench-copy', disk_format='raw',
                                     container_format='bare')
        with open(source, 'rb') as f:
            client.images.upload(image.id, f)
        direct = statistics.median(
            timed(bench.url(bench.lab.central, image.id))
            for _ in range(bench.args.trials))
        copies, clones, uploads, imports = [], [], [], []
        for trial in range(bench.args.trials):
            edge_id = bench.link(image.id)
            bench.evict(image.id)
            copies.append(self.copy_image(edge_id, headers))
            clones.append(self.clone(edge_id))
            self.drop_copy(edge_id, headers)
            uploads.append(self.upload(source, headers))
            imports.append(self.rbd_import(source, trial))
        os.unlink(source)
        copy = statistics.median(copies)
        upload = statistics.median(uploads)
        imported = statistics.median(imports)
        mib = bench.size / MiB
        bench.row('copy-image into the edge\'s RBD (vs direct download)',
                  copy, 's', copy / direct,
                  'through the cache: one read from central; %s'
                  % spread(copies))
        bench.row('  Glance\'s own upload into that store', upload, 's',
                  None, '%.0f MiB/s; %s' % (mib / upload, spread(uploads)))
        bench.row('  rbd import into the same pool', imported, 's', None,
                  '%.0f MiB/s; %s' % (mib / imported, spread(imports)))
        bench.row('  copy-image vs Glance\'s own upload', copy / upload,
                  'x', None, 'goal <= 1.2x; copy vs rbd import %.1fx'
                  % (copy / imported))
        bench.row('  copy-on-write clone of its snapshot, as nova does',
                  statistics.median(clones) * 1000, 'ms')
        bench.results['ceph'].update(
            direct_download_seconds=direct, copy_seconds=copies,
            clone_seconds=clones, upload_seconds=uploads,
            rbd_import_seconds=imports, copy_vs_upload=copy / upload,
            copy_vs_rbd_import=copy / imported)

    def drop_copy(self, edge_id, headers):
        """Delete the image's copy in the edge's rbd store (the OSD holds
        its data in memory): DELETE /v2/stores/<store>/<id>.
        """
        answer = requests.delete('%s/v2/stores/%s/%s' % (
            self.bench.lab.edge.url, EDGE_STORE, edge_id), headers=headers,
            timeout=60)
        if answer.status_code != 204:
            self.bench.say('  (the copy of %s stays in %s: %s)' % (
                edge_id, EDGE_STORE, answer.status_code))

    def upload(self, path, headers):
        """Seconds of Glance's own upload of the file into the edge's rbd
        store (PUT /v2/images/<id>/file with X-Image-Meta-Store, Content-
        Length set), from the request to the image active; image deleted.
        """
        edge = self.bench.lab.edge
        image = edge.glance(lab_module.ADMIN).images.create(
            name='bench-upload', disk_format='raw', container_format='bare')
        url = '%s/v2/images/%s' % (edge.url, image.id)
        started = time.perf_counter()
        with open(path, 'rb') as f:
            answer = requests.put(url + '/file', data=f, timeout=COPY_TIMEOUT,
                                  headers=dict(headers, **{
                                      'Content-Type':
                                      'application/octet-stream',
                                      'X-Image-Meta-Store': EDGE_STORE}))
        if answer.status_code != 204:
            raise RuntimeError('upload: %s %s' % (answer.status_code,
                                                  answer.text[:300]))
        record = requests.get(url, headers=headers, timeout=60).json()
        seconds = time.perf_counter() - started
        if record.get('status') != 'active' or \
                record.get('stores') != EDGE_STORE:
            raise RuntimeError('upload: %s in %s' % (record.get('status'),
                                                     record.get('stores')))
        requests.delete(url, headers=headers, timeout=60)
        return seconds

    def rbd_import(self, path, trial):
        """Seconds of ``rbd import`` of the file into the edge pool, with
        the object size of Glance's rbd store (rbd_store_chunk_size 8);
        the image removed.
        """
        name = 'edge/bench-import-%d' % trial
        started = time.perf_counter()
        self.cluster.rbd('import', '--object-size', '8M', path, name,
                         timeout=COPY_TIMEOUT)
        seconds = time.perf_counter() - started
        self.cluster.rbd('rm', '--no-progress', name, timeout=COPY_TIMEOUT)
        return seconds

    def copy_image(self, edge_id, headers):
        """Seconds from Glance's copy-image request to the store listed."""
        edge = self.bench.lab.edge
        url = '%s/v2/images/%s' % (edge.url, edge_id)
        started = time.perf_counter()
        answer = requests.post(url + '/import', headers=headers, json={
            'method': {'name': 'copy-image'}, 'stores': [EDGE_STORE]},
            timeout=60)
        if answer.status_code != 202:
            raise RuntimeError('copy-image: %s %s' % (answer.status_code,
                                                      answer.text[:300]))
        deadline = time.monotonic() + COPY_TIMEOUT
        while time.monotonic() < deadline:
            record = requests.get(url, headers=headers, timeout=60).json()
            if EDGE_STORE in (record.get('stores') or '').split(','):
                return time.perf_counter() - started
            if EDGE_STORE in (record.get('os_glance_failed_import') or ''):
                raise RuntimeError('copy-image of %s failed' % edge_id)
            time.sleep(0.05)
        raise RuntimeError('copy-image of %s: no copy after %d s'
                           % (edge_id, COPY_TIMEOUT))

    def clone(self, edge_id):
        """Seconds of a copy-on-write clone of the image's snapshot in the
        edge pool into ``vms`` (nova's RBDDriver.clone), clone removed.
        """
        import rados
        import rbd
        client = rados.Rados(conffile=self.cluster.conf_file,
                             rados_id='admin',
                             conf={'keyring': self.cluster.admin_keyring})
        client.connect(timeout=30)
        try:
            with client.open_ioctx('edge') as source, \
                    client.open_ioctx('vms') as target:
                name = 'bench-clone-%s' % edge_id
                started = time.perf_counter()
                rbd.RBD().clone(source, edge_id, 'snap', target, name,
                                features=rbd.RBD_FEATURE_LAYERING)
                seconds = time.perf_counter() - started
                rbd.RBD().remove(target, name)
                return seconds
        finally:
            client.shutdown()


def spread(seconds):
    """'min A, max B s of N' for the trials' seconds."""
    return 'min %.1f, max %.1f s of %d' % (min(seconds), max(seconds),
                                           len(seconds))


def wait_for_fill(store, image_id, timeout=60):
    """Wait until no fill of the image runs (its counters are written when
    it ends, after the client's last byte).
    """
    lock = store.lock(image_id, 'fill')
    try:
        deadline = time.monotonic() + timeout
        while not lock.try_lock():
            if time.monotonic() > deadline:
                raise RuntimeError('the fill of %s still runs' % image_id)
            time.sleep(0.05)
        lock.unlock()
    finally:
        lock.close()
