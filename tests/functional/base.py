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

"""Shared pieces of the functional tests: REAL Glance servers
(tests.harness.lab), real clients (python-glanceclient, openstacksdk,
keystoneauth1), loopback only.

One lab (central + edge) is started per test class and shared by its tests;
each test restores what it breaks (a stopped central is started again in
setUp), so classes only need a lab of their own when they need a different
configuration.
"""

import concurrent.futures
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import fixtures
import requests
import testtools
from testtools import content

from tests.harness import lab as lab_module

MiB = 1024 * 1024
TEST_TIMEOUT = 180  # seconds; a hung server fails the test, not the run


class LabTestCase(testtools.TestCase):
    """A test against a shared central + edge lab."""

    LAB = {}  # keyword arguments of LAB_CLASS for this class
    LAB_CLASS = lab_module.Lab

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lab = cls.LAB_CLASS(**cls.LAB).start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.assert_edge_only_read_central()
        finally:
            cls.lab.stop()
        super().tearDownClass()

    @classmethod
    def assert_edge_only_read_central(cls):
        """The edge never writes to central: over the whole class, central
        (and, in a chain, every edge read by another) saw only GET and HEAD
        requests from the driver and the CLI.
        """
        for server in cls.lab.upstreams():
            written = cls.driver_writes(server)
            if written:
                raise AssertionError('%s received %s' % (server.name,
                                                         written))

    @staticmethod
    def driver_writes(server):
        """Requests other than GET and HEAD that *server* received from the
        driver or the CLI of the level below it.
        """
        return [e for e in server.access_entries()
                if 'glance-store-remote' in e.agent and
                e.method not in ('GET', 'HEAD')]

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(TEST_TIMEOUT, gentle=True))
        central = self.lab.central
        central.thaw()
        if not central.running:
            central.start()
        self.close_breakers()
        self.addOnException(self._attach_logs)

    def start_central(self):
        """Start central again after a test stopped it, and close the
        edges' circuit breakers (see close_breakers).
        """
        self.lab.central.start()
        self.close_breakers()

    def close_breakers(self):
        """Close the circuit breaker of every cache of the lab, as the
        first successful probe would.

        A test that cut central may have opened it (three consecutive
        failures: a cut stream, a takeover refused, a record GET); its state
        lives in the cache index and outlives the test, so the next request
        would fail fast for remote_glance_breaker_reset seconds although
        central is back.
        """
        from glance_store_remote import breaker
        from glance_store_remote import cache as cache_module
        for folder, backend in self.lab.caches():
            if os.path.exists(os.path.join(folder, 'index.sqlite')):
                cache_module.Cache(folder, 1).save_breaker(
                    backend, breaker.CLOSED, 0, 0.0)

    def _attach_logs(self, exc_info):
        for server in (self.lab.central, self.lab.edge):
            self.addDetail('%s-log' % server.name,
                           content.text_content(server.log_tail(60)))

    # -- clients -----------------------------------------------------------

    @property
    def central_glance(self):
        return self.lab.central.glance()

    def edge_glance(self, identity=lab_module.ADMIN):
        return self.lab.edge.glance(identity)

    def edge_session(self, identity=lab_module.ADMIN):
        return self.lab.edge.session(identity)

    # -- images ------------------------------------------------------------

    def make_central_image(self, size=3 * 1024 * 1024 + 17, **properties):
        """Upload random bytes to central; return (image record, data)."""
        data = os.urandom(size)
        properties.setdefault('name', 'central-%s' % uuid.uuid4().hex[:8])
        image = self.central_glance.images.create(
            disk_format='raw', container_format='bare', **properties)
        self.central_glance.images.upload(image.id, io.BytesIO(data))
        return self.central_glance.images.get(image.id), data

    def location_of(self, central_id, backend='central'):
        return 'remote-glance://%s/%s' % (backend, central_id)

    def make_edge_image(self, identity=lab_module.ADMIN, **properties):
        properties.setdefault('name', 'edge-%s' % uuid.uuid4().hex[:8])
        return self.edge_glance(identity).images.create(
            disk_format='raw', container_format='bare', **properties)

    def link_with_patch(self, central_id, identity=lab_module.ADMIN):
        """PATCH add /locations (``glance location-add``)."""
        image = self.make_edge_image(identity)
        self.edge_glance(identity).images.add_location(
            image.id, self.location_of(central_id), {})
        return self.edge_glance(identity).images.get(image.id)

    def link_with_post(self, central_id, identity=lab_module.ADMIN,
                       timeout=60):
        """POST /v2/images/{id}/locations (``glance add-location``), then
        wait for Glance's background task to hash the data.
        """
        image = self.make_edge_image(identity)
        client = self.edge_glance(identity)
        client.images.add_image_location(
            image.id, self.location_of(central_id))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            image = client.images.get(image.id)
            if image.status == 'active' and image.os_hash_value:
                self.wait_for_record_copy(image.id)
                return client.images.get(image.id)
            time.sleep(0.2)
        self.fail('edge image %s still %s after %ss'
                  % (image.id, image.status, timeout))

    def wait_for_record_copy(self, edge_id, timeout=20):
        """Wait (bounded, never failing) until the edge logs that central's
        record was copied into *edge_id*, or was there already. The copy of
        a ``POST /locations`` link follows Glance's task in a thread of the
        edge; on the lab's SQLite database a write at the same moment as
        the next test's request can make Glance answer that request 500
        ("database is locked"), which production databases do not.
        """
        marks = ('into edge image %s' % edge_id,
                 'edge image %s already has' % edge_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.lab.edge.log_text()
            if any(mark in log for mark in marks):
                return
            time.sleep(0.2)

    def download(self, image_id, central_image, identity=lab_module.ADMIN):
        """Download at the edge the way nova does (glanceclient checks the
        edge record's os_hash_value or md5 when it has one) and check the
        bytes against central's os_hash_value.
        """
        body = self.edge_glance(identity).images.data(image_id)
        data = b''.join(body)
        self.assertEqual(central_image.size, len(data))
        self.assertEqual(
            central_image.os_hash_value,
            hashlib.new(central_image.os_hash_algo, data).hexdigest())
        return data

    def fetch(self, image_id, identity=lab_module.ADMIN, server=None,
              **headers):
        """GET the image data at the edge (or *server*), streaming; a
        failure part way is returned, not raised: (response, bytes
        received, error or None).
        """
        server = server or self.lab.edge
        session = server.session(identity)
        response = session.get(
            '%s/v2/images/%s/file' % (server.url, image_id),
            headers=headers, stream=True, raise_exc=False, timeout=120)
        chunks = []
        error = None
        try:
            for chunk in response.iter_content(1 << 20):
                chunks.append(chunk)
        except requests.RequestException as e:
            error = e
        finally:
            response.close()
            session.session.close()
        return response, b''.join(chunks), error

    def cli(self, *args):
        """Run glance-remote with the edge's glance-api.conf."""
        return subprocess.run(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             self.lab.edge.config_file] + list(args),
            capture_output=True, text=True, timeout=120)

    def cache_stats(self):
        result = self.cli('--json', 'cache', 'stats')
        self.assertEqual(0, result.returncode, result.stderr)
        return json.loads(result.stdout)

    def wait_fills_done(self, timeout=60, cache_dir=None):
        """Wait until no fill runs in the edge cache (or *cache_dir*): a
        whole-image client gets its last byte once the data is verified,
        and the commit (fsync, rename) follows; a test that inspects the
        cache waits for it.
        """
        folder = os.path.join(cache_dir or self.lab.cache_dir, 'locks')
        deadline = time.monotonic() + timeout
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            if not name.endswith('.fill'):
                continue
            with open(os.path.join(folder, name)) as lock:
                while True:
                    try:
                        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            self.fail('a fill still runs: %s' % name)
                        time.sleep(0.02)

    def cache_files(self, kind='entries'):
        """Names in the edge cache's ``entries`` or ``partial`` folder."""
        return sorted(os.listdir(os.path.join(self.lab.cache_dir, kind)))

    def central_requests(self, method=None, path_part=None, settle=0.3,
                         server=None):
        """Central's (or *server*'s) access log entries, once the log has
        stopped growing for *settle* seconds: a server logs a request after
        sending its last byte, which can be after the level below has
        answered its own client.
        """
        server = server or self.lab.central
        entries = server.access_entries()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(settle)
            latest = server.access_entries()
            if latest == entries:
                break
            entries = latest
        return [entry for entry in entries
                if (method is None or entry.method == method) and
                (path_part is None or path_part in entry.path)]


class CephTestMixin:
    """Starts a single-node Ceph (tests.harness.ceph) before the class's lab
    and stops it after; skips, naming what is missing, only where Ceph is not
    installed. A class says what its lab gets with lab_options().
    """

    CEPH_POOLS = ('images',)

    @classmethod
    def lab_options(cls, cluster):
        """Keyword arguments merged into LAB once *cluster* runs."""
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        from tests.harness import ceph
        reason = ceph.unavailable_reason()
        if reason:
            raise cls.skipException(reason)
        ceph.link_bindings(sys.executable)
        cls.ceph_root = tempfile.mkdtemp(prefix='gsr-ceph-')
        cls.cluster = ceph.CephCluster(os.path.join(cls.ceph_root, 'ceph'),
                                       pools=cls.CEPH_POOLS)
        try:
            cls.cluster.start()
            cls.LAB = dict(cls.LAB, **cls.lab_options(cls.cluster))
            super().setUpClass()
        except BaseException:
            cls._stop_ceph()
            raise

    @classmethod
    def _stop_ceph(cls):
        try:
            cls.cluster.stop()
        finally:
            shutil.rmtree(cls.ceph_root, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls._stop_ceph()


class CacheTestCase(LabTestCase):

    LAB = {'proxy': True}

    def setUp(self):
        super().setUp()
        self.lab.proxy.faults.reset()

    def download(self, image_id, central_image, **kw):
        data = super().download(image_id, central_image, **kw)
        self.wait_fills_done()
        return data

    def fetch(self, image_id, **kw):
        result = super().fetch(image_id, **kw)
        self.wait_fills_done()
        return result

    def linked_image(self, size=24 * MiB):
        central, data = self.make_central_image(size=size)
        return central, data, self.link_with_patch(central.id)

    def cached(self, central_id, kind='entries'):
        """The image's files in the cache's ``entries`` or ``partial``."""
        return [name for name in self.cache_files(kind)
                if name.startswith(central_id)]

    def wait_for_partial(self, central_id, size, timeout=60):
        """Wait until the edge has written *size* bytes of a fill."""
        path = os.path.join(self.lab.cache_dir, 'partial',
                            central_id + '.data')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path) and os.path.getsize(path) >= size:
                return
            time.sleep(0.02)
        self.fail('the fill of %s never reached %d bytes' % (central_id,
                                                             size))

    def break_fill_at(self, central_id, edge_id, offset, action,
                      abort=False):
        """Download *edge_id*, stall central's stream at *offset*, run
        *action* once the edge has written that much, then let the stream
        go on (or, with *abort*, cut it there), and return what the client
        in flight got: (response, bytes, error).
        """
        faults = self.lab.proxy.arm(stall_at=offset)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(self.fetch, edge_id)
            self.assertTrue(faults.stalled.wait(60))
            self.wait_for_partial(central_id, offset)
            action()
            faults.abort() if abort else faults.release()
            return in_flight.result()

    def image_gets(self, central_id):
        return [rng for path, rng in self.lab.proxy.image_gets()
                if central_id in path]

    def assert_failed_visibly(self, data, received, error):
        """A failure the client can see: an error, or fewer bytes."""
        self.assertTrue(error is not None or len(received) < len(data))
        self.assertNotEqual(data, received)


class TmpfsCacheTestCase(CacheTestCase):
    """A CacheTestCase whose edge cache is a tmpfs of TMPFS_SIZE of its own
    (skipped where this machine cannot mount one).
    """

    TMPFS_SIZE = '64m'

    @classmethod
    def setUpClass(cls):
        cls.mount = tempfile.mkdtemp(prefix='gsr-tmpfs-')
        mounted = subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', 'size=%s' % cls.TMPFS_SIZE,
             'tmpfs', cls.mount], capture_output=True)
        if mounted.returncode:
            os.rmdir(cls.mount)
            raise cls.skipException('cannot mount a tmpfs here: %s'
                                    % mounted.stderr.decode().strip())
        cls.LAB = dict(CacheTestCase.LAB, cache_dir=cls.mount)
        try:
            super().setUpClass()
        except BaseException:
            cls._unmount()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls._unmount()

    @classmethod
    def _unmount(cls):
        subprocess.run(['umount', '--lazy', cls.mount], capture_output=True)
        os.rmdir(cls.mount)
