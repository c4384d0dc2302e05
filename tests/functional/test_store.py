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

"""Functional tests of the remote-glance driver itself, without a cache:
every read goes to central. A REAL central and edge Glance on loopback
(tests.harness.lab), driven with python-glanceclient, openstacksdk and
keystoneauth1 sessions as nova and operators drive them. The cache tier is
tested in test_readthrough.py.
"""

import concurrent.futures

from glanceclient import exc as glance_exc
import requests

from tests.functional import base

HOSTILE_LOCATIONS = (
    'remote-glance://other/%(id)s',                   # another backend
    'remote-glance://central/not-a-uuid',
    'remote-glance://central/%(upper)s',              # not canonical
    'remote-glance://central/%(id)s/extra',
    'remote-glance://central/../%(id)s',
    'remote-glance://central/%(id)s/..',
    'remote-glance://user:secret@central/%(id)s',
    'remote-glance://central:9292/%(id)s',
    'remote-glance://central/%(id)s?x=1',
    'remote-glance://central/%(id)s#frag',
    'remote-glance://central/%(id)s%%2F..',
    'remote-glance:///%(id)s',
    'remote-glance://central/',
)


class TestLocationAdd(base.LabTestCase):

    LAB = {'cache_max_size': None}

    def test_patch_location_goes_active_with_central_size(self):
        central, data = self.make_central_image()
        edge = self.link_with_patch(central.id)
        self.assertEqual('active', edge.status)
        self.assertEqual(central.size, edge.size)
        self.assertEqual([{'url': self.location_of(central.id),
                           'metadata': {'store': 'central'}}],
                         edge.locations)
        self.assertEqual(data, self.download(edge.id, central))

    def test_post_location_hashes_through_the_driver(self):
        central, data = self.make_central_image()
        edge = self.link_with_post(central.id)
        self.assertEqual(central.size, edge.size)
        self.assertEqual(central.os_hash_algo, edge.os_hash_algo)
        self.assertEqual(central.os_hash_value, edge.os_hash_value)
        self.assertEqual(central.checksum, edge.checksum)
        self.assertEqual(data, self.download(edge.id, central))

    def test_openstacksdk_sees_and_downloads_the_linked_image(self):
        central, data = self.make_central_image()
        edge = self.link_with_post(central.id)
        sdk = self.lab.edge.sdk(base.lab_module.ADMIN)
        self.assertEqual(central.size, sdk.image.get_image(edge.id).size)
        response = sdk.image.download_image(edge.id, stream=True)
        self.assertEqual(data, b''.join(response.iter_content(1 << 20)))

    def test_missing_central_image_is_refused_with_400(self):
        image = self.make_edge_image()
        self.assertRaises(
            glance_exc.HTTPBadRequest, self.edge_glance().images.add_location,
            image.id,
            self.location_of('00000000-0000-4000-8000-000000000000'), {})
        self.assertEqual('queued', self.edge_glance().images.get(
            image.id).status)

    def test_hostile_locations_are_400_and_never_reach_central(self):
        central, _ = self.make_central_image(size=4096)
        image = self.make_edge_image()
        before = len(self.central_requests())
        for template in HOSTILE_LOCATIONS:
            uri = template % {'id': central.id, 'upper': central.id.upper()}
            self.assertRaises(
                glance_exc.HTTPBadRequest,
                self.edge_glance().images.add_location, image.id, uri, {})
        self.assertEqual(before, len(self.central_requests()))

    def test_upload_to_the_remote_backend_is_410(self):
        image = self.make_edge_image()
        response = self.edge_session().put(
            self.lab.edge.url + '/v2/images/%s/file' % image.id, data=b'x',
            headers={'Content-Type': 'application/octet-stream',
                     'X-Image-Meta-Store': 'central'}, raise_exc=False)
        self.assertEqual(410, response.status_code)


class TestDownload(base.LabTestCase):

    LAB = {'cache_max_size': None}

    def _get(self, image_id, **headers):
        return self.edge_session().get(
            self.lab.edge.url + '/v2/images/%s/file' % image_id,
            headers=headers, raise_exc=False, timeout=60)

    def test_range_downloads_equal_central_bytes(self):
        central, data = self.make_central_image()
        edge = self.link_with_patch(central.id)
        size = len(data)
        for spec, expected, first, last in (
                ('bytes=1000-1999', data[1000:2000], 1000, 1999),
                ('bytes=%d-' % (size - 5000), data[-5000:], size - 5000,
                 size - 1),
                ('bytes=-100', data[-100:], size - 100, size - 1),
                ('bytes=0-0', data[:1], 0, 0)):
            response = self._get(edge.id, Range=spec)
            self.assertEqual(206, response.status_code, spec)
            self.assertEqual('bytes %d-%d/%d' % (first, last, size),
                             response.headers['Content-Range'])
            self.assertEqual(expected, response.content, spec)
        ranged = [e for e in self.central_requests('GET', '/file')
                  if e.range != '-']
        self.assertEqual(4, len(ranged))

    def test_multi_chunk_image_with_odd_tail_is_exact(self):
        central, data = self.make_central_image(size=9 * 1024 * 1024 + 3)
        edge = self.link_with_patch(central.id)
        response = self.edge_session().get(
            self.lab.edge.url + '/v2/images/%s/file' % edge.id, stream=True)
        received = b''.join(response.iter_content(1 << 20))
        self.assertEqual(data, received)

    def test_deleting_the_edge_image_leaves_central_intact(self):
        central, data = self.make_central_image()
        edge = self.link_with_patch(central.id)
        self.edge_glance().images.delete(edge.id)
        still = self.central_glance.images.get(central.id)
        self.assertEqual('active', still.status)
        self.assertEqual(data, b''.join(
            self.central_glance.images.data(central.id)))
        self.assertEqual([], [e for e in self.central_requests()
                              if e.method not in ('GET', 'HEAD') and
                              'glance-store-remote' in e.agent])

    def test_central_stopped_gives_503_not_a_hang(self):
        central, _ = self.make_central_image()
        edge = self.link_with_patch(central.id)
        self.lab.central.stop()
        # The client allows far more than the edge's 5 s timeout: a hang
        # shows up as a requests timeout, an answer as 503.
        self.assertEqual(503, self._get(edge.id).status_code)

    def test_central_frozen_gives_503_after_the_configured_timeout(self):
        central, _ = self.make_central_image()
        edge = self.link_with_patch(central.id)
        self.lab.central.freeze()
        try:
            self.assertEqual(503, self._get(edge.id).status_code)
        finally:
            self.lab.central.thaw()

    def test_central_dying_mid_stream_gives_a_short_body(self):
        central, data = self.make_central_image(size=64 * 1024 * 1024)
        edge = self.link_with_patch(central.id)
        response = self.edge_session().get(
            self.lab.edge.url + '/v2/images/%s/file' % edge.id, stream=True)
        self.assertEqual(str(len(data)), response.headers['Content-Length'])
        received = 0
        error = None
        try:
            for chunk in response.iter_content(1 << 20):
                if received == 0:
                    self.lab.central.stop()
                received += len(chunk)
        except requests.RequestException as e:
            error = e
        # Either requests notices the short body, or the count shows it:
        # never a complete-looking image.
        self.assertTrue(error is not None or received < len(data))
        self.assertLess(received, len(data))


class TestWriteNothingToCentral(base.LabTestCase):

    LAB = {'cache_max_size': None}

    def test_edge_sends_only_get_requests_to_central(self):
        central, _ = self.make_central_image()
        edge = self.link_with_post(central.id)
        self.download(edge.id, central)
        self.edge_glance().images.delete(edge.id)
        from_edge = [e for e in self.central_requests()
                     if 'glance-store-remote' in e.agent]
        self.assertNotEqual([], from_edge)
        self.assertEqual({'GET'}, {e.method for e in from_edge})


class TestSeveralEdgeWorkers(base.LabTestCase):

    LAB = {'edge_workers': 3, 'cache_max_size': None}

    def test_concurrent_downloads_across_workers_are_exact(self):
        central, data = self.make_central_image(size=8 * 1024 * 1024 + 5)
        edge = self.link_with_patch(central.id)
        self.assertEqual(3, len(self.lab.edge.worker_pids()))
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(
                lambda _: self.download(edge.id, central), range(6)))
        self.assertEqual([data] * 6, results)
