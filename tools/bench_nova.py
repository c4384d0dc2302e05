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

"""The nova rows of tools/bench.py (``tox -e bench -- --only nova``): time
from ``server create`` to ACTIVE with a REAL nova 34 at the edge
(tests/harness/nova.py), for the same bytes served three ways:

* **miss**: a linked image the edge has never read (central sends it
  through the edge's cache);
* **hit**: the same image again, nova's own ``_base`` copy removed first,
  so the edge serves it from its cache;
* **local file store**: the same bytes uploaded into the edge's own
  ``local`` (file) store, nova's ``_base`` empty too;

plus nova's own cache (``_base`` kept) as the floor. Each row is the median
of ``--trials`` boots (a miss needs a new image per trial). Printed, not
written; nothing asserts. Skipped, with the reason, where the nova tier
cannot run.
"""

import hashlib
import io
import os
import statistics
import time
import uuid

from tests.harness import nova

MiB = 1024 * 1024
IMAGE_MIB = 256          # a raw image: nova keeps raw images as they are
BOOT_TIMEOUT = 600
USER = 'alice'
OPERATOR = 'operator'
MICROVERSION = '2.95'


class NovaRows:

    def __init__(self, trials, say=print):
        self.trials = trials
        self.say = say
        self.lab = None
        self.data = os.urandom(IMAGE_MIB * MiB)

    def start(self):
        self.say('starting Keystone, central, the edge and nova (1-3 min)')
        self.lab = nova.NovaLab().start()
        self.say('lab ready in %.1f s' % self.lab.setup_time)
        answer = self.lab.compute(OPERATOR).post('/flavors', json={
            'flavor': {'name': 'bench', 'ram': 128, 'vcpus': 1,
                       'disk': 1}}, microversion=MICROVERSION).json()
        self.flavor = answer['flavor']['id']

    def stop(self):
        if self.lab is not None:
            self.lab.stop()

    # -- images ------------------------------------------------------------

    def _create(self, glance, **extra):
        return glance.images.create(
            name='bench-%s' % uuid.uuid4().hex[:6], disk_format='raw',
            container_format='bare', visibility='public', **extra)

    def linked(self):
        """A new central image, linked at the edge: the edge image's ID."""
        central = self.lab.glance(OPERATOR, self.lab.central)
        image = self._create(central)
        central.images.upload(image.id, io.BytesIO(self.data))
        edge = self.lab.glance(OPERATOR, self.lab.edge)
        linked = self._create(edge)
        edge.images.add_location(
            linked.id, 'remote-glance://central/%s' % image.id, {})
        return linked.id

    def local(self):
        """The same bytes in the edge's own file store."""
        edge = self.lab.glance(OPERATOR, self.lab.edge)
        image = self._create(edge)
        edge.images.upload(image.id, io.BytesIO(self.data))
        return image.id

    def drop_base(self, image_id):
        path = os.path.join(self.lab.base_dir, hashlib.sha1(
            image_id.encode()).hexdigest())
        if os.path.exists(path):
            os.remove(path)

    # -- boots -------------------------------------------------------------

    def boot(self, image_id):
        """Seconds from the create request to ACTIVE; the server is then
        deleted (and waited for).
        """
        user = self.lab.compute(USER)
        began = time.monotonic()
        server = user.post('/servers', json={'server': {
            'name': 'bench', 'imageRef': image_id, 'flavorRef': self.flavor,
            'networks': 'none'}}, microversion=MICROVERSION).json()['server']
        try:
            while True:
                shown = user.get('/servers/%s' % server['id'],
                                 microversion=MICROVERSION).json()['server']
                if shown['status'] == 'ACTIVE':
                    return time.monotonic() - began
                if shown['status'] == 'ERROR' or \
                        time.monotonic() - began > BOOT_TIMEOUT:
                    raise RuntimeError('server %s: %s %s' % (
                        server['id'], shown['status'], shown.get('fault')))
                time.sleep(0.1)
        finally:
            admin = self.lab.compute(OPERATOR)
            admin.delete('/servers/%s' % server['id'], raise_exc=False)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and admin.get(
                    '/servers/%s' % server['id'],
                    raise_exc=False).status_code != 404:
                time.sleep(0.5)

    def run(self):
        reason = nova.unavailable_reason()
        if reason:
            self.say(reason)
            return {}
        self.start()
        rows = {'miss': [], 'hit': [], 'local file store': [],
                "nova's _base": []}
        local = self.local()
        for trial in range(self.trials):
            image = self.linked()
            rows['miss'].append(self.boot(image))
            rows["nova's _base"].append(self.boot(image))
            self.drop_base(image)
            rows['hit'].append(self.boot(image))
            self.drop_base(local)
            rows['local file store'].append(self.boot(local))
            self.say('trial %d: %s' % (trial + 1, ', '.join(
                '%s %.1f s' % (name, times[-1])
                for name, times in rows.items())))
        self.say('server create to ACTIVE, %d MiB raw image, median of %d:'
                 % (IMAGE_MIB, self.trials))
        for name, times in rows.items():
            self.say('  %-18s %6.1f s  (min %.1f, max %.1f)' % (
                name, statistics.median(times), min(times), max(times)))
        return rows


def run(args, say=print):
    """--only nova of tools/bench.py."""
    rows = NovaRows(args.trials, say)
    try:
        return rows.run()
    finally:
        rows.stop()
