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

"""A central whose store serves no byte ranges: Glance on rbd (see
test_ceph_central.py), swift, s3 or http answers a Range with 400. Here
central keeps its images on glance_store's ``http`` store (the data on a
plain web server, tests.harness.web_server); the behaviours are shared with the
RBD tier through RangelessCentralTests.

What is proven, against REAL servers: links by PATCH and POST, downloads
verified, one read from central per image (single flight across workers),
a Range at the edge for an image not held yet, central killed mid-stream
and restarted (the next read completes from byte 0 and verifies; the bytes
central sent again are counted), offline serving, and a chain of edges.
"""

import concurrent.futures
import os
import shutil
import tempfile
import uuid

from testtools import content

from tests.functional import base
from tests.harness import lab as lab_module
from tests.harness import web_server

MiB = base.MiB


class RangelessCentralTests:
    """Tests of an edge whose central serves whole images only; a class
    using them provides make_central_image on such a central.
    """

    def whole_reads(self, central_id):
        """Central's answered reads of the image's data: (status, Range)."""
        return [(e.status, e.range) for e in self.central_requests(
            'GET', central_id) if e.path.endswith('/file')]

    def test_range_at_central_is_refused(self):
        # The premise: this central's store cannot read from an offset.
        central, data = self.make_central_image(size=MiB)
        response = self.lab.central.session().get(
            '%s/v2/images/%s/file' % (self.lab.central.url, central.id),
            headers={'Range': 'bytes=10-19'}, raise_exc=False)
        self.assertEqual(400, response.status_code)

    def test_patch_link_download_verifies_then_hits(self):
        central, data, edge = self.linked_image(size=12 * MiB)
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual([('200', '-')], self.whole_reads(central.id))
        self.assertEqual([central.id + '.data'], self.cached(central.id)[:1])

    def test_post_link_download_verifies(self):
        central, data = self.make_central_image(size=6 * MiB)
        edge = self.link_with_post(central.id)
        self.assertEqual(central.os_hash_value, edge.os_hash_value)
        self.assertEqual(data, self.download(edge.id, central))

    def test_range_of_an_image_not_held_is_served_from_its_fill(self):
        central, data, edge = self.linked_image(size=12 * MiB)
        resent = self.cache_stats()['bytes_resent']
        response, received, error = self.fetch(
            edge.id, Range='bytes=%d-%d' % (5 * MiB, 7 * MiB - 1))
        self.assertIsNone(error)
        self.assertEqual(206, response.status_code)
        self.assertEqual(data[5 * MiB:7 * MiB], received)
        self.wait_fills_done()
        # One whole read filled the cache; no byte was read twice.
        self.assertEqual(['200'], [status for status, _ in
                                   self.whole_reads(central.id)
                                   if status != '400'])
        self.assertEqual(resent, self.cache_stats()['bytes_resent'])
        self.assertEqual([central.id + '.data'], self.cached(central.id)[:1])
        self.assertEqual(data, self.download(edge.id, central))

    def test_concurrent_first_reads_make_one_read_from_central(self):
        central, data, edge = self.linked_image(size=16 * MiB)
        self.lab.proxy.arm(rate=32 * MiB)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: self.fetch(edge.id),
                                    range(8)))
        for response, received, error in results:
            self.assertIsNone(error)
            self.assertEqual(data, received)
        self.assertEqual([('200', '-')], self.whole_reads(central.id))

    def test_central_killed_mid_stream_then_restarted(self):
        central, data, edge = self.linked_image(size=32 * MiB)
        before = self.cache_stats()
        cut = 12 * MiB
        _, received, error = self.break_fill_at(
            central.id, edge.id, cut, self.lab.central.stop, abort=True)
        self.assert_failed_visibly(data, received, error)
        self.start_central()
        self.assertEqual(data, self.download(edge.id, central))
        after = self.cache_stats()
        resent = after['bytes_resent'] - before['bytes_resent']
        # The kept prefix was read again from byte 0 and dropped; the rest
        # was written after it, and the whole image verified.
        self.assertGreaterEqual(resent, cut)
        self.assertLess(resent, len(data))
        self.assertEqual(1, after['resumes'] - before['resumes'])
        # The proxy saw both whole reads (central's log may lack the one it
        # was killed in); every ranged one was refused.
        self.assertEqual(2, self.image_gets(central.id).count(None))
        self.assertEqual([], [(s, r) for s, r in self.whole_reads(central.id)
                              if r != '-' and s != '400'])
        self.addDetail('bytes-resent', content.text_content(
            '%d of %d' % (resent, len(data))))

    def test_offline_after_one_read(self):
        central, data, edge = self.linked_image(size=8 * MiB)
        self.assertEqual(data, self.download(edge.id, central))
        self.lab.central.stop()
        self.assertEqual(data, self.download(edge.id, central))
        response, received, error = self.fetch(edge.id,
                                               Range='bytes=100-199')
        self.assertEqual((206, data[100:200]), (response.status_code,
                                                received))


class ChainThroughRangelessCentral:
    """far edge -> edge -> a central without ranges, importing on demand:
    the middle edge serves the ranges its central cannot (from its fill).
    """

    READER = lab_module.Identity('project-a', 'user-a', ('member', 'reader'))

    def test_far_edge_reads_through_the_chain(self):
        central, data = self.make_central_image(
            size=8 * MiB, visibility='public', owner='project-c')
        session = self.lab.far.session(self.READER)
        url = '%s/v2/images/%s/file' % (self.lab.far.url, central.id)
        response = session.get(url, headers={
            'Range': 'bytes=%d-%d' % (MiB, 2 * MiB - 1)})
        self.assertEqual((206, data[MiB:2 * MiB]),
                         (response.status_code, response.content))
        far = self.lab.far.glance(self.READER)
        self.assertEqual(data, b''.join(far.images.data(central.id)))
        reads = [e.status for e in self.central_requests('GET', central.id)
                 if e.path.endswith('/file') and e.status != '400']
        self.assertEqual(['200'], reads)
        self.lab.central.stop()
        self.assertEqual(data, b''.join(far.images.data(central.id)))


class HttpStoreCentral:
    """Central on glance_store's http store: make_central_image puts the
    data on a web server and gives central its URL and validation data.

    Glance 33 fetches http locations only from hosts and ports that
    ``[import_filtering_opts]`` allows (never loopback by default): the
    web server's are allowed explicitly.
    """

    @classmethod
    def setUpClass(cls):
        cls.web = web_server.ImageWebServer(os.path.join(
            tempfile.mkdtemp(prefix='gsr-web-'), 'files')).start()
        cls.LAB = dict(cls.LAB, central_options={
            'DEFAULT': {'enabled_backends': 'local:file, web:http'},
            'import_filtering_opts': {
                'allowed_hosts': '[%s]' % lab_module.HOST,
                'allowed_ports': '[%d]' % cls.web.port}})
        try:
            super().setUpClass()
        except BaseException:
            cls.web.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.web.stop()
            shutil.rmtree(os.path.dirname(cls.web.root), ignore_errors=True)

    def make_central_image(self, size=3 * MiB + 17, **properties):
        data = os.urandom(size)
        url, validation = self.web.publish(data)
        properties.setdefault('name', 'web-%s' % uuid.uuid4().hex[:8])
        client = self.central_glance
        image = client.images.create(disk_format='raw',
                                     container_format='bare', **properties)
        client.images.add_location(image.id, url, {},
                                   validation_data=validation)
        return client.images.get(image.id), data


class TestHttpStoreCentral(HttpStoreCentral, RangelessCentralTests,
                           base.CacheTestCase):

    LAB = {'proxy': True, 'edge_workers': 2}


class TestHttpStoreCentralChain(HttpStoreCentral,
                                ChainThroughRangelessCentral,
                                base.LabTestCase):

    LAB_CLASS = lab_module.ChainLab
