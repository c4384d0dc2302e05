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

"""A picture of the shipped Grafana dashboard's main panels, drawn from a
lab's Prometheus (doc/source/admin/dashboard.png), without Grafana.

The lab is the monitoring tier's (tests/harness/prometheus.py): a
coordinated 3-node edge site (tests/harness/site.py), each node with a
capped cache and a ``glance-remote exporter``, one Prometheus scraping
them every second. For a few minutes, clients boot images (whole
downloads, checked against central's hash, at a random node), a few
images often and the others rarely; central is cut for a while in the
middle, when the clients also start asking for an image no node holds
yet (answered 503 until central is back). Then each drawn panel's
queries, as the dashboard writes them (etc/grafana/glance-remote.json;
Grafana's variables filled in as the tests do), run as range queries over
the run and are drawn with matplotlib, one plot per panel, with the
panel's title, legend format and unit.

Run it from an environment with the project, its test requirements and
matplotlib (tox's bench environment)::

    .tox/bench/bin/python -m tools.dashboard_picture [--minutes 3]
"""

import argparse
import concurrent.futures
import hashlib
import io
import json
import os
import random
import re
import threading
import time

from tests.harness import prometheus
from tests.harness import site as site_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(prometheus.DASHBOARDS_DIR, 'glance-remote.json')
OUT = os.path.join(ROOT, 'doc', 'source', 'admin', 'dashboard.png')
MiB = 1024 * 1024

# The panels drawn, by title, in the picture's order (two a row).
# Fill durations are left out: on loopback every fill takes under a
# second (the first bucket).
PANELS = ('Hit ratio', 'Reads by result', 'Bytes by source',
          'Fills per hour by outcome', 'Cache used and capacity',
          'Images a WAN cut would fail', 'Central', 'Site coordinator')
# How a Grafana unit is drawn: (divisor, axis label).
UNITS = {'percentunit': (0.01, '%'), 'bytes': (MiB, 'MiB'),
         'Bps': (MiB, 'MiB/s'), 'reqps': (1, 'reads/s'), 's': (1, 's'),
         'short': (1, '')}
STATES = ('state-timeline',)
CACHE_CAP = 96 * MiB          # each node's cache: the images do not all fit
IMAGE_SIZES = (4, 6, 8, 12, 16, 20, 24, 32)   # MiB
STEP = 2                      # seconds between the drawn points
RATE_INTERVAL = '30s'


def legend(format_, labels):
    """Grafana's legend format (``{{label}}``) filled from *labels*."""
    return re.sub(r'\{\{\s*(\w+)\s*\}\}',
                  lambda m: labels.get(m.group(1), ''), format_ or '') \
        or ','.join('%s=%s' % item for item in sorted(labels.items()))


class Run:
    """The lab, its traffic and the central cut."""

    def __init__(self, minutes, clients):
        self.seconds = minutes * 60
        self.clients = clients
        self.lab = site_module.EdgeSiteLab(
            nodes=3, coordination=True, on_demand=True,
            cache_max_size=CACHE_CAP, edge_flavor='trusted')
        self.exporters = []
        self.prometheus = None
        self.images = []
        # Asked for from the cut on.
        self.fresh = threading.Event()
        self.stop = threading.Event()
        self.cut = (None, None)

    def start(self):
        self.lab.start()
        root = os.path.join(self.lab.root, 'monitoring')
        for node in self.lab.nodes:
            self.exporters.append(prometheus.Exporter(
                os.path.join(root, 'exporter-' + node.name),
                node.config_file).start())
        # Nodes named as an operator's instances would be.
        self.prometheus = prometheus.Prometheus(
            os.path.join(root, 'prometheus'),
            {'glance-remote': [(exporter.address, {'instance': node.name})
                               for exporter, node in zip(self.exporters,
                                                         self.lab.nodes)]}
        ).start()
        self.prometheus.wait_targets_up()

    def close(self):
        for part in [self.prometheus] + self.exporters:
            if part is not None:
                part.stop()
        self.lab.stop()

    def make_images(self):
        central = self.lab.central.glance()
        edge = self.lab.nodes[0].glance()
        for index, size in enumerate(IMAGE_SIZES):
            data = os.urandom(size * MiB)
            image = central.images.create(
                name='image-%d' % index, disk_format='raw',
                container_format='bare', visibility='public')
            central.images.upload(image.id, io.BytesIO(data))
            # Known at the edge (on demand), not read yet.
            edge.images.get(image.id)
            self.images.append((image.id, hashlib.sha512(data).hexdigest()))

    def boot(self, rng):
        """One whole download at a random node, a popular image more
        often; a failure (central cut) is what the dashboard shows, not an
        error of the run.
        """
        images = self.images if self.fresh.is_set() else self.images[:-1]
        weights = [1 / (rank + 1) ** 1.2 for rank in range(len(images))]
        if self.fresh.is_set():
            weights[-1] = weights[0]
        image_id, digest = rng.choices(images, weights)[0]
        node = rng.choice(self.lab.nodes)
        session = node.session()
        try:
            response = session.get(
                '%s/v2/images/%s/file' % (node.url, image_id),
                stream=True, raise_exc=False, timeout=120)
            hasher = hashlib.sha512()
            for chunk in response.iter_content(1 << 20):
                hasher.update(chunk)
            if response.status_code == 200 and hasher.hexdigest() != digest:
                raise AssertionError('wrong bytes of %s from %s' % (
                    image_id, node.name))
            return response.status_code
        except OSError:
            return None
        finally:
            session.session.close()

    def client(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            self.boot(rng)
            self.stop.wait(rng.uniform(0.5, 2.0))

    def traffic(self):
        """Clients boot for the run's length; central is cut from 45% to
        65% of it. Returns (start, end) in epoch seconds.
        """
        start = time.time()
        with concurrent.futures.ThreadPoolExecutor(self.clients) as pool:
            running = [pool.submit(self.client, seed)
                       for seed in range(self.clients)]
            time.sleep(self.seconds * 0.45)
            cut = time.time()
            self.lab.central.stop()
            self.fresh.set()
            time.sleep(self.seconds * 0.2)
            self.lab.central.start()
            self.cut = (cut, time.time())
            time.sleep(self.seconds * 0.35)
            self.stop.set()
            for future in running:
                future.result()
        self.prometheus.wait_scraped()
        return start, time.time()


def series_of(prom, panel, start, end):
    """[(legend, [times], [values])] of the panel's queries over the run."""
    drawn = []
    for target in panel.get('targets', ()):
        expr = prometheus.grafana_query(
            target['expr'], {'$__rate_interval': RATE_INTERVAL,
                             '$__range': '%ds' % (end - start)})
        for series in prom.query_range(expr, start, end, STEP):
            times = [float(t) - start for t, _ in series['values']]
            values = [float(v) for _, v in series['values']]
            drawn.append((legend(target.get('legendFormat'),
                                 series['metric']), times, values))
    return sorted(drawn, key=lambda item: item[0])


def draw(prom, dashboard, start, end, cut, out):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    panels = {panel.get('title'): panel
              for panel in prometheus.dashboard_panels(dashboard)}
    rows = (len(PANELS) + 1) // 2
    figure, axes = pyplot.subplots(rows, 2, figsize=(13, 3.2 * rows),
                                   sharex=True)
    for ax, title in zip(axes.flat, PANELS):
        panel = panels[title]
        unit = panel.get('fieldConfig', {}).get('defaults', {}).get('unit')
        divisor, label = UNITS.get(unit, (1, ''))
        for name, times, values in series_of(prom, panel, start, end):
            values = [v / divisor for v in values]
            if panel.get('type') in STATES:
                ax.step(times, values, where='post', label=name)
            else:
                ax.plot(times, values, label=name, linewidth=1.2)
        if panel.get('type') in STATES:
            ax.set_yticks([0, 1])
            ax.set_ylim(-0.1, 1.1)
        ax.axvspan(cut[0] - start, cut[1] - start, color='tab:red',
                   alpha=0.08, label='central cut')
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc='best', ncol=2, framealpha=0.8)
    for ax in axes[-1]:
        ax.set_xlabel('seconds')
    figure.suptitle('glance-remote dashboard (etc/grafana/glance-remote.json)'
                    ' over a lab run: a coordinated 3-node edge site, '
                    'central cut in the shaded span', fontsize=11)
    figure.tight_layout()
    figure.savefig(out, dpi=90)
    pyplot.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=3.0,
                        help='length of the traffic (default 3)')
    parser.add_argument('--clients', type=int, default=3,
                        help='concurrent booting clients (default 3)')
    parser.add_argument('--out', default=OUT, help='the PNG written')
    args = parser.parse_args(argv)
    reason = prometheus.unavailable_reason() or \
        site_module.unavailable_reason()
    if reason:
        parser.error(reason)
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    run = Run(args.minutes, args.clients)
    try:
        run.start()
        run.make_images()
        start, end = run.traffic()
        draw(run.prometheus, dashboard, start, end, run.cut, args.out)
    finally:
        run.close()
    print('wrote %s' % args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
