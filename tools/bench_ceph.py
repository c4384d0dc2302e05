"""The Ceph rows of tools/bench.py: a central whose images live in a REAL
single-node Ceph (tests/ceph.py), read by the same edge as the other rows
through a backend of its own (``rbd-central``), behind a proxy that can cut
the stream.

Rows, side by side in the same run as the rest of the benchmark:

* a download straight from the RBD central, and a miss through the edge
  (ratio to it);
* a miss cut half way by the link: the follower takes the fill over, and
  since a central on RBD serves no ranges, central sends the image again
  from byte 0; the bytes it re-sent and the time against a clean miss.

Skipped, with the reason in the results, where Ceph is not installed.
"""

import os
import statistics
import sys
import time

from glance_store_remote import cache as cache_module
from tests import ceph
from tests import faults
from tests import lab as lab_module

MiB = 1024 * 1024
BACKEND = 'rbd-central'


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
            os.path.join(root, 'ceph'),
            memstore_bytes=3 * self.bench.size + 512 * MiB).start()
        self.central = lab_module.GlanceServer(
            'central-rbd', os.path.join(root, 'central-rbd'), threads=32,
            policy=lab_module.ADMIN_EVERYONE,
            options=ceph.rbd_backend_options(self.cluster))
        lab_module.db_sync(self.central)
        self.central.start()
        self.proxy = faults.FaultyCentral(self.central.url).start()
        self.cache_dir = os.path.join(root, 'rbd-cache')
        return {BACKEND: {
            'auth_type': 'none', 'endpoint_override': self.proxy.url,
            'timeout': 60, 'remote_glance_cache_dir': self.cache_dir,
            'remote_glance_cache_max_size': 64 * 1024 * MiB}}

    def stop(self):
        for part in (self.proxy, self.central, self.cluster):
            if part is not None:
                part.stop()

    def run(self, headers, timed):
        """Measure and add the rows; *timed(url, headers)* is the bench's
        timed whole download.
        """
        bench = self.bench
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
