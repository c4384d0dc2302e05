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

"""An edge site with its own Ceph (the DCN shape), on a REAL single-node Ceph
(tests/harness/ceph.py): the edge's glance-api has ``enabled_backends =
local:file, ceph:rbd, central:remote-glance``; central keeps the lab's file
store.

Glance's own copy-image import moves an image it reads through remote-glance
into the edge's RBD pool, where it is cloned the way nova's rbd image
backend clones (nova/virt/libvirt/storage/rbd_utils.py RBDDriver.clone) into
a ``vms`` pool; with central cut, downloads and clones still work. Then the
CLI's ``--store`` and the ``remote_glance_copy_to_store`` option.

Skipped, loudly, only where the Ceph packages are not installed (.ci/run
installs them on CI).
"""

import concurrent.futures
import hashlib
import http.server
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time

import requests

from glance_store_remote import store_copy
from tests.functional import base
from tests.harness import ceph
from tests.harness import lab as lab_module

MiB = base.MiB
COPY_TIMEOUT = 120   # seconds for one copy-image of a few MiB
TARGET = 'ceph'
USER = lab_module.Identity('project-b', 'bob', ('member', 'reader'))


def edge_backends(cluster, weight=None, central=None):
    """The edge's extra config: an rbd backend ``ceph`` on pool ``images``
    beside local:file and central:remote-glance (more options of the
    latter in *central*), the rbd backend's *weight*.
    """
    options = ceph.rbd_backend_options(cluster, TARGET, default=False)
    options['DEFAULT']['enabled_backends'] = (
        'local:file, %s:rbd, central:remote-glance' % TARGET)
    if weight is not None:
        options[TARGET]['weight'] = weight
    if central:
        options['central'] = central
    return options


def qcow2_bytes(size=2 * MiB, virtual_size=64 * MiB):
    """A minimal valid qcow2 (version 2) file of *size* bytes, which
    Glance's format inspector accepts as qcow2.
    """
    header = struct.pack('>4sIQIIQIIQQIIQ', b'QFI\xfb', 2, 0, 0, 16,
                         virtual_size, 0, 1, 3 * 65536, 65536, 1, 0, 0)
    data = bytearray(os.urandom(size))
    data[:65536 * 4] = bytes(65536 * 4)
    data[:len(header)] = header
    return bytes(data)


class CephEdge(base.CephTestMixin):
    """The cluster has pools ``images`` and ``vms``; the edge gets an rbd
    backend on ``images`` (edge_backends).
    """

    CEPH_POOLS = ('images', 'vms')
    WEIGHT = None
    BACKEND_OPTIONS = None

    @classmethod
    def lab_options(cls, cluster):
        return {'edge_options': edge_backends(cluster, cls.WEIGHT,
                                              cls.BACKEND_OPTIONS)}

    # -- Ceph as nova sees it ------------------------------------------------

    def rados(self):
        import rados
        client = rados.Rados(conffile=self.cluster.conf_file,
                             rados_id=self.cluster.glance_user)
        client.connect(timeout=30)
        self.addCleanup(client.shutdown)
        return client

    def rbd_location(self, image):
        urls = [loc['url'] for loc in image.get('locations') or ()
                if loc['metadata'].get('store') == TARGET]
        self.assertEqual(1, len(urls), image.get('locations'))
        return urls[0]

    def clone_like_nova(self, url, size, dest_pool='vms'):
        """nova's RBDDriver.is_cloneable checks, then RBDDriver.clone: a
        copy-on-write clone of the location's snapshot into *dest_pool*
        with the cluster's default features; returns the clone's bytes.
        """
        import rbd
        fsid, pool, name, snapshot = url[len('rbd://'):].split('/')
        client = self.rados()
        self.assertEqual(client.get_fsid(), fsid)
        source = client.open_ioctx(pool)
        self.addCleanup(source.close)
        dest = client.open_ioctx(dest_pool)
        self.addCleanup(dest.close)
        features = int(client.conf_get('rbd_default_features') or 0) or \
            rbd.RBD_FEATURE_LAYERING
        clone = 'instance-%s_disk' % name[:8] + os.urandom(2).hex()
        rbd.RBD().clone(source, name, snapshot, dest, clone,
                        features=features)
        self.addCleanup(rbd.RBD().remove, dest, clone)
        with rbd.Image(dest, clone, read_only=True) as disk:
            self.assertEqual((pool, name, snapshot),
                             disk.parent_info())
            return disk.read(0, size)

    def rbd_images(self, pool='images'):
        return self.cluster.rbd('ls', pool).split()

    # -- copies --------------------------------------------------------------

    def wait_for_copy(self, image_id, client=None, timeout=COPY_TIMEOUT):
        """Wait until the edge image lists the Ceph store (or its copy
        failed: then fail); return the record.
        """
        client = client or self.edge_glance()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            image = client.images.get(image_id)
            if TARGET in (image.get('stores') or '').split(','):
                return image
            if TARGET in (image.get('os_glance_failed_import') or ''):
                self.fail('copy of %s into %s failed: %s' % (
                    image_id, TARGET, dict(image)))
            time.sleep(0.2)
        self.fail('copy of %s into %s did not end in %ss'
                  % (image_id, TARGET, timeout))

    def wait_for_failed_copy(self, image_id, timeout=COPY_TIMEOUT):
        """Wait until Glance's import of the image ended (its lock is
        dropped) without a Ceph location; return the record.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            image = self.edge_glance().images.get(image_id)
            if not image.get('os_glance_import_task'):
                self.assertEqual(store_copy.FAILED_STATE,
                                 store_copy.copy_state(image, TARGET))
                return image
            time.sleep(0.2)
        self.fail('copy of %s did not fail in %ss' % (image_id, timeout))

    def copy_image(self, image_id):
        """Glance's copy-image into the Ceph store, as a client asks it."""
        self.edge_glance().images.image_import(image_id, method='copy-image',
                                               stores=[TARGET])

    def central_file_gets(self, central_id):
        return [e for e in self.central_requests('GET', '/file')
                if central_id in e.path]

    def cached_ids(self):
        return {entry['image_id'] for entry in json.loads(
            self.cli('--json', 'cache', 'list').stdout)}

    def wait_released(self, central_id, timeout=60):
        deadline = time.monotonic() + timeout
        while central_id in self.cached_ids():
            if time.monotonic() > deadline:
                self.fail('cache entry of %s never released' % central_id)
            time.sleep(0.2)

    def assert_is_central_image(self, central, data):
        self.assertEqual(central.os_hash_value, hashlib.new(
            central.os_hash_algo, data).hexdigest())


class _IdentityProxy(http.server.ThreadingHTTPServer):
    """Forwards requests to the edge adding the ``headerauth`` identity
    headers of an admin of a project: what keystonemiddleware would derive
    from an operator's project-scoped token. It lets the CLI, which speaks
    to the edge with openstacksdk and a clouds.yaml, be tested against the
    edge's default policy. Small bodies only (API calls, no image data).
    """

    daemon_threads = True

    def __init__(self, upstream, identity):
        self.upstream = upstream
        self.identity = identity
        super().__init__((lab_module.HOST, lab_module.free_port()),
                         _IdentityHandler)
        self.url = 'http://%s:%d' % self.server_address
        self.thread = threading.Thread(target=self.serve_forever,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()


class _IdentityHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'

    def log_message(self, *args):
        pass

    def _forward(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ('host', 'connection',
                                        'content-length')}
        identity = self.server.identity
        headers.update({'X-Identity-Status': 'Confirmed',
                        'X-Project-Id': identity.project_id,
                        'X-User-Id': identity.user_id,
                        'X-Roles': ','.join(identity.roles)})
        answer = requests.request(
            self.command, self.server.upstream + self.path, data=body,
            headers=headers, timeout=60, allow_redirects=False)
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in ('connection', 'transfer-encoding',
                                   'content-encoding', 'content-length'):
                value = value.replace(self.server.upstream, self.server.url)
                self.send_header(key, value)
        content = answer.content.replace(self.server.upstream.encode(),
                                         self.server.url.encode())
        self.send_header('Content-Length', str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward


class CliOverIdentityProxy:
    """Runs ``glance-remote`` as an operator with a clouds.yaml whose
    endpoint is an _IdentityProxy in front of the edge.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.proxy_identity = _IdentityProxy(cls.lab.edge.url,
                                                lab_module.ADMIN)
            cls.cloud_dir = tempfile.mkdtemp(prefix='gsr-cloud-')
            with open(os.path.join(cls.cloud_dir, 'clouds.yaml'), 'w') as f:
                f.write('clouds:\n  edge:\n    auth_type: none\n    auth:\n'
                        '      endpoint: %s\n' % cls.proxy_identity.url)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if getattr(cls, 'proxy_identity', None) is not None:
                cls.proxy_identity.stop()
            if getattr(cls, 'cloud_dir', None):
                shutil.rmtree(cls.cloud_dir, ignore_errors=True)
        finally:
            super().tearDownClass()

    def edge_cli(self, *args):
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=os.path.join(
            self.cloud_dir, 'clouds.yaml'), OS_CLOUD='edge')
        return subprocess.run(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             self.lab.edge.config_file] + list(args),
            capture_output=True, text=True, timeout=300, env=env)


class TestCopyImageIntoEdgeCeph(CliOverIdentityProxy, CephEdge,
                                base.CacheTestCase):
    """Glance's copy-image, asked by a client of the edge's API (the lab's
    ``headerauth`` identity, Glance's default policy: copy_image is
    admin-only), with ``[ceph] weight = 100`` so that downloads read Ceph
    first.
    """

    LAB = {'proxy': True}
    WEIGHT = 100
    # Central's stream is held for a while in the single-flight test.
    BACKEND_OPTIONS = {'timeout': 60}

    def copied(self, size=3 * MiB + 5, **properties):
        central, data = self.make_central_image(size=size, **properties)
        image = self.link_with_patch(central.id)
        self.copy_image(image.id)
        return central, data, self.wait_for_copy(image.id)

    def test_copy_image_reads_one_fill_shared_with_concurrent_downloads(self):
        central, data = self.make_central_image(size=6 * MiB + 11)
        image = self.link_with_patch(central.id)
        coalesced = self.cache_stats()['coalesced']
        # At a chunk boundary (remote_glance_chunk_size, 4 MiB): the fill
        # writes what it read before central stalls.
        faults = self.lab.proxy.arm(stall_at=4 * MiB)
        began = time.monotonic()
        self.copy_image(image.id)
        self.assertTrue(faults.stalled.wait(60))
        self.wait_for_partial(central.id, 4 * MiB)
        # Two clients download while the copy's read is held mid-stream;
        # both join the copy's fill.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            downloads = [pool.submit(self.fetch, image.id) for _ in range(2)]
            deadline = time.monotonic() + 60
            while self.cache_stats()['coalesced'] < coalesced + 2:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.1)
            faults.release()
            for future in downloads:
                response, received, error = future.result()
                self.assertEqual((200, None), (response.status_code, error))
                self.assertEqual(data, received)
        copied = self.wait_for_copy(image.id)
        self.addDetail('copy-image-seconds', base.content.text_content(
            '%.2f' % (time.monotonic() - began)))
        self.assertEqual(1, len(self.image_gets(central.id)))
        self.assertEqual(1, len(self.central_file_gets(central.id)))
        self.assertEqual(
            'rbd://%s/images/%s/snap' % (self.cluster.fsid, image.id),
            self.rbd_location(copied))
        # Glance verified the copy against the edge record: central's.
        for field in ('size', 'checksum', 'os_hash_value'):
            self.assertEqual(central[field], copied[field])
        self.assertIn(image.id, self.rbd_images())

    def test_the_rbd_snapshot_clones_the_way_nova_clones_it(self):
        central, data, image = self.copied()
        began = time.monotonic()
        disk = self.clone_like_nova(self.rbd_location(image), len(data))
        self.addDetail('clone-seconds', base.content.text_content(
            '%.3f' % (time.monotonic() - began)))
        self.assertEqual(data, disk)
        self.assert_is_central_image(central, disk)

    def test_with_central_cut_downloads_and_clones_come_from_ceph(self):
        central, data, image = self.copied()
        self.lab.central.stop()
        self.assertEqual(data, self.download(image.id, central))
        self.assertEqual(data, self.clone_like_nova(self.rbd_location(image),
                                                    len(data)))

    def test_downloads_read_ceph_first_with_its_weight(self):
        central, data, image = self.copied()
        self.assertEqual(['ceph', 'central'], [
            loc['metadata']['store'] for loc in
            self.edge_glance().images.get(image.id)['locations']])
        before = self.cache_stats()['bytes_from_cache']
        gets = len(self.image_gets(central.id))
        self.assertEqual(data, self.download(image.id, central))
        # Neither the cache nor central served it: RBD did.
        self.assertEqual(before, self.cache_stats()['bytes_from_cache'])
        self.assertEqual(gets, len(self.image_gets(central.id)))

    def test_a_range_falls_back_to_the_remote_glance_location(self):
        # RBD cannot read from an offset: Glance tries the next location.
        central, data, image = self.copied()
        response, received, error = self.fetch(image.id,
                                               Range='bytes=1000-1999')
        self.assertEqual((206, None), (response.status_code, error))
        self.assertEqual(data[1000:2000], received)

    def test_a_copy_of_wrong_bytes_adds_no_location(self):
        central, data = self.make_central_image(size=3 * MiB)
        image = self.link_with_patch(central.id)
        self.lab.proxy.arm(flip_at=MiB + 7)
        self.copy_image(image.id)
        failed = self.wait_for_failed_copy(image.id)
        # Glance 33 leaves the store listed as importing when the copy
        # fails before writing to it.
        self.assertEqual(TARGET, failed['os_glance_importing_to_stores'])
        self.assertEqual('central', failed['stores'])
        self.assertEqual('active', failed['status'])
        self.assertNotIn(image.id, self.rbd_images())
        self.assertEqual([], self.cached(central.id))
        # The next copy reads central again and succeeds.
        self.copy_image(image.id)
        self.assertEqual(central.os_hash_value,
                         self.wait_for_copy(image.id)['os_hash_value'])

    def test_a_qcow2_image_is_copied_as_qcow2_bytes(self):
        data = qcow2_bytes()
        central = self.central_glance.images.create(
            name='qcow2-%s' % os.urandom(3).hex(), disk_format='qcow2',
            container_format='bare')
        self.central_glance.images.upload(central.id, io.BytesIO(data))
        central = self.central_glance.images.get(central.id)
        image = self.edge_glance().images.create(
            name='edge-qcow2', disk_format='qcow2', container_format='bare')
        self.edge_glance().images.add_location(
            image.id, self.location_of(central.id), {})
        self.copy_image(image.id)
        copied = self.wait_for_copy(image.id)
        self.assertEqual('qcow2', copied['disk_format'])
        # What nova's is_cloneable refuses (disk_format is not raw): a clone
        # would hand the guest a qcow2 container as its raw disk.
        disk = self.clone_like_nova(self.rbd_location(copied), len(data))
        self.assertEqual(b'QFI\xfb', disk[:4])
        self.assertEqual(data, disk)

    # -- the CLI: --store -----------------------------------------------------

    def test_import_prefetch_store_copies_and_releases_the_cache(self):
        central, data = self.make_central_image(size=4 * MiB + 1)
        result = self.edge_cli('--json', 'import', '--prefetch', '--store',
                               TARGET, central.id)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        [row] = json.loads(result.stdout)
        self.assertEqual('cached', row['prefetch']['result'])
        self.assertEqual('copied', row['copy']['result'],
                         row['copy']['details'])
        url = 'rbd://%s/images/%s/snap' % (self.cluster.fsid, central.id)
        self.assertIn(url, row['copy']['details'])
        self.assertIn('cache entry evicted', row['copy']['details'])
        self.assertNotIn(central.id, self.cached_ids())
        # One read of central: the CLI's fill; the copy read the cache.
        self.assertEqual(1, len(self.central_file_gets(central.id)))
        self.assertEqual(data, self.clone_like_nova(url, len(data)))

    def test_prefetch_store_of_an_image_held_already_says_so(self):
        central, data = self.make_central_image(size=MiB)
        self.assertEqual(0, self.edge_cli('import', '--prefetch', '--store',
                                          TARGET, central.id).returncode)
        result = self.edge_cli('prefetch', '--store', TARGET, central.id)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('%s store %s: held: %s holds it' % (
            central.id, TARGET, TARGET), result.stdout)

    def test_prefetch_store_without_an_edge_image_fails_and_says_why(self):
        central, _ = self.make_central_image(size=MiB)
        result = self.edge_cli('prefetch', '--store', TARGET, central.id)
        self.assertEqual(1, result.returncode, result.stdout)
        self.assertIn('no edge image %s: import it first' % central.id,
                      result.stdout)
        # It was prefetched; nothing was copied.
        self.assertIn(central.id, self.cached_ids())

    def test_import_store_without_prefetch_is_a_usage_error(self):
        result = self.edge_cli('import', '--store', TARGET,
                               '00000000-0000-4000-8000-000000000000')
        self.assertEqual(2, result.returncode)
        self.assertIn('--store needs --prefetch', result.stderr)


class TestCopyToStoreOption(CephEdge, base.LabTestCase):
    """``remote_glance_copy_to_store = ceph`` in the backend group; no
    weight on the Ceph store here (both stores weigh 0).
    """

    BACKEND_OPTIONS = {'remote_glance_copy_to_store': TARGET}

    def import_like_the_operator(self, central_id):
        """The edge image under central's ID and owned by central's owner
        (what ``glance-remote import`` and the on-demand import make): the
        one image the option copies.
        """
        owner = self.central_glance.images.get(central_id).owner
        self.make_edge_image(id=central_id, owner=owner)
        self.edge_glance().images.add_location(
            central_id, self.location_of(central_id), {})
        return self.edge_glance().images.get(central_id)

    def test_the_option_copies_after_the_first_verified_fill(self):
        central, data = self.make_central_image(size=5 * MiB + 3)
        image = self.import_like_the_operator(central.id)
        self.assertEqual(data, self.download(image.id, central))
        copied = self.wait_for_copy(image.id)
        self.assertEqual(
            'rbd://%s/images/%s/snap' % (self.cluster.fsid, image.id),
            self.rbd_location(copied))
        self.wait_released(central.id)
        self.assertEqual(1, len(self.central_file_gets(central.id)))
        self.assertIn('is now held in store %s' % TARGET,
                      self.lab.edge.log_text())

    def test_without_a_weight_reads_try_remote_glance_first(self):
        central, data = self.make_central_image(size=2 * MiB)
        image = self.import_like_the_operator(central.id)
        self.download(image.id, central)
        self.wait_for_copy(image.id)
        self.wait_released(central.id)
        self.assertEqual(['central', 'ceph'], [
            loc['metadata']['store'] for loc in
            self.edge_glance().images.get(image.id)['locations']])
        # Central cut and nothing cached: remote-glance fails at once and
        # Glance falls back to the Ceph location.
        self.lab.central.stop()
        self.assertEqual(data, self.download(image.id, central))

    def test_a_users_links_are_not_copied_the_operators_import_once(self):
        # One member's three links of a central image, each read whole:
        # the copy runs as admin outside every quota, so it is made once,
        # for the image under central's ID, and never for the links.
        central, data = self.make_central_image(size=MiB + 5)
        imported = self.import_like_the_operator(central.id)
        links = [self.link_with_patch(central.id, USER).id
                 for _ in range(3)]
        for link in links:
            self.assertEqual(data, self.download(link, central,
                                                 identity=USER))
        self.wait_for_copy(imported.id)
        # The copier's verdict on the links: the cache entry stays for
        # them (before the fix: each link was copied and the entry went).
        deadline = time.monotonic() + COPY_TIMEOUT
        while ('cache: keeping image %s' % central.id
               not in self.lab.edge.log_text() and
               time.monotonic() < deadline):
            time.sleep(0.5)
        for link in links:
            image = self.edge_glance(USER).images.get(link)
            self.assertEqual('central', image['stores'])
            self.assertNotIn(link, self.rbd_images())
        self.assertEqual([central.id], [
            name for name in self.rbd_images()
            if name in [central.id] + links])
        self.assertIn(central.id, self.cached_ids())
        self.assertIn('3 edge image(s) link central image %s under an ID '
                      'of their own' % central.id, self.lab.edge.log_text())
