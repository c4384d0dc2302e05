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

"""A coordinated site whose nodes' caches are too small for what they are
asked, with central stopped: every read that would go to central asks the
site first (REAL Glance nodes on MariaDB, haproxy, etcd;
tests/harness/site.py).
"""

import hashlib
import os

from glance_store_remote import cache as cache_module
from tests.functional import test_edge_site as edge_site

MiB = 1024 * 1024


class TestCacheUnderPressureCentralStopped(edge_site.SiteTestCase):

    # Room for one image of IMAGE per node.
    LAB = {'coordination': True, 'cache_max_size': 3 * MiB}
    IMAGE = 2 * MiB + 7

    def node_cache(self, node):
        return cache_module.Cache(
            self.lab.cache_dir(self.lab.nodes.index(node)), 1)

    def wait_site_fills_done(self):
        for index in range(len(self.lab.nodes)):
            self.wait_fills_done(cache_dir=self.lab.cache_dir(index))

    def fetch_at(self, server, image_id, **headers):
        response, received, error = self.fetch(image_id, server=server,
                                               **headers)
        return response.status_code, received, error

    def test_a_node_that_cannot_cache_serves_what_a_peer_holds(self):
        edge1, edge2 = self.lab.node('edge-1'), self.lab.node('edge-2')
        held_central, held_data = self.central_image(size=self.IMAGE)
        held = self.link_with_patch(held_central.id)
        full_central, full_data = self.central_image(size=self.IMAGE)
        full = self.link_with_patch(full_central.id)
        # edge-2 holds one image, edge-1 another, pinned: edge-1 has no
        # room for the first.
        self.assertEqual(200, self.fetch_at(edge2, held.id)[0])
        self.assertEqual(200, self.fetch_at(edge1, full.id)[0])
        self.wait_site_fills_done()
        self.assertTrue(self.node_cache(edge1).set_pinned(full_central.id,
                                                          True))
        self.assertIsNotNone(self.node_cache(edge2).entry(held_central.id))
        self.lab.central.stop()
        self.addCleanup(self.start_central)
        digest = hashlib.sha512(held_data).hexdigest()
        # A whole read, with no room: from edge-2, verified.
        status, received, error = self.fetch_at(edge1, held.id)
        self.assertEqual((200, None, digest),
                         (status, error, hashlib.sha512(received).hexdigest()))
        # Ranges of an image edge-1 does not hold: from edge-2, checked
        # against the hash edge-2 signed; also through the balancer.
        for server in (edge1, self.lab.balancer):
            status, received, _ = self.fetch_at(
                server, held.id, Range='bytes=1000-1999')
            self.assertEqual((206, held_data[1000:2000]), (status, received))
        self.wait_site_fills_done()
        counters = self.node_cache(edge1).counters()
        self.assertGreaterEqual(counters['bytes_from_peers'],
                                self.IMAGE + 1000)
        self.assertIsNone(self.node_cache(edge1).entry(held_central.id))
        self.assertTrue(os.path.exists(os.path.join(
            self.lab.cache_dir(0), 'entries', full_central.id + '.data')))
