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

"""The site's WAN limits against REAL parts: three edge glance-api nodes
behind haproxy on one MariaDB, coordinated through a real etcd, with
``remote_glance_max_fills = 1`` and a bandwidth cap.

What is proved here: while one node reads an image from central, a read of
another image from central on ANOTHER node waits for the site's one slot
and, when it does not come free in time, is answered 503 with a message
that says why (nothing is kept); once the first read ends, the second image
is served whole. Reads of what the site holds never wait. A client that
stops reading a range does not hold the site's slot: another node's read
is served meanwhile, and the first client, reading on, gets every byte.
"""

import concurrent.futures
import hashlib
import os
import time

from testtools import content

from tests.functional import test_edge_site as edge_site
from tests.harness import lab as lab_module

MiB = 1024 * 1024
# 32 MiB at 4 MiB/s: the first read holds the site's slot for 8 s or more
# (the pacing never lets it go faster), the second waits 1 s for it.
BANDWIDTH = 4 * MiB
BIG = 32 * MiB + 5
# What glance_store_remote.wan logs when an unread stream gives its slot
# back.
GIVEN_BACK = 'its reader is idle; its WAN slot is given back'


class TestSiteWanLimits(edge_site.SiteTestCase):

    LAB = {'coordination': True,
           'edge_options': {'central': {
               'remote_glance_max_fills': 1,
               'remote_glance_max_bandwidth': BANDWIDTH,
               'remote_glance_fill_slot_wait': 1}}}

    def linked(self, size):
        central, data = self.central_image(size=size)
        return central, self.link_with_patch(central.id), data

    def node_fetch(self, node, image_id):
        response, received, error = self.fetch(image_id, server=node)
        return response.status_code, received, error

    def wait_partial(self, index, image_id, timeout=60):
        path = '%s/partial/%s.data' % (self.lab.cache_dir(index), image_id)
        deadline = time.monotonic() + timeout
        while not (os.path.exists(path) and os.path.getsize(path)):
            self.assertLess(time.monotonic(), deadline, path)
            time.sleep(0.01)

    def test_one_read_from_central_at_a_time_for_the_whole_site(self):
        big, big_edge, big_data = self.linked(BIG)
        small, small_edge, small_data = self.linked(64 * 1024 + 3)
        edge1, edge2, _ = self.lab.nodes
        pool = concurrent.futures.ThreadPoolExecutor(1)
        self.addCleanup(pool.shutdown)
        first = pool.submit(self.node_fetch, edge1, big_edge.id)
        self.wait_partial(0, big.id)
        # edge-2 has slots of its own, but the cap is the site's.
        status, received, error = self.node_fetch(edge2, small_edge.id)
        text = received.decode('utf-8', 'replace')
        self.addDetail('refused', content.text_content(text))
        self.assertEqual(503, status)
        self.assertIn('reads 1 images from central at once; try again '
                      'later', text)
        self.assertNotIn(self.lab.central.url, text)
        self.assertFalse(os.path.exists('%s/entries/%s.data' % (
            self.lab.cache_dir(1), small.id)))
        status, received, error = first.result(timeout=120)
        self.assertEqual((200, None), (status, error))
        self.assertEqual(hashlib.sha512(big_data).hexdigest(),
                         hashlib.sha512(received).hexdigest())
        self.wait_fills_done(cache_dir=self.lab.cache_dir(0))
        # The slot is free again: the small image is served whole.
        status, received, error = self.node_fetch(edge2, small_edge.id)
        self.assertEqual((200, small_data, None), (status, received, error))
        # What the site holds is served by a peer, not limited by the WAN
        # slot: edge-3 reads the big image while edge-1 reads another one
        # from central.
        self.wait_fills_done(cache_dir=self.lab.cache_dir(1))
        other, other_edge, other_data = self.linked(BIG)
        busy = pool.submit(self.node_fetch, edge1, other_edge.id)
        self.wait_partial(0, other.id)
        status, received, error = self.node_fetch(self.lab.nodes[2],
                                                  big_edge.id)
        self.assertEqual((200, None), (status, error))
        self.assertEqual(big_data, received)
        self.assertEqual(200, busy.result(timeout=120)[0])

    def test_an_unread_range_does_not_hold_the_sites_slot(self):
        big, big_edge, big_data = self.linked(BIG)
        small, small_edge, small_data = self.linked(64 * 1024 + 3)
        edge1, edge2, _ = self.lab.nodes
        given_back = edge1.log_text().count(GIVEN_BACK)
        session = edge1.session(lab_module.ADMIN)
        self.addCleanup(session.session.close)
        # A range of an image nobody holds: central's own bytes, read under
        # the site's one slot (the background fill that would warm the
        # cache finds no second slot and does not start).
        response = session.get(
            '%s/v2/images/%s/file' % (edge1.url, big_edge.id),
            headers={'Range': 'bytes=1-%d' % (BIG - 1)}, stream=True,
            raise_exc=False, timeout=120)
        self.addCleanup(response.close)
        self.assertEqual(206, response.status_code)
        head = response.raw.read(64 * 1024)
        self.assertEqual(big_data[1:1 + len(head)], head)
        # The client stops reading: the node fills the sockets' buffers,
        # then its worker waits to write. Give it the time to notice
        # (SLOT_IDLE) without asking it; before the fix nothing comes and
        # the slot stays held.
        deadline = time.monotonic() + 30
        while (edge1.log_text().count(GIVEN_BACK) == given_back and
               time.monotonic() < deadline):
            time.sleep(0.2)
        # Another user's read of another image on another node is served,
        # not answered 503 after remote_glance_fill_slot_wait.
        started = time.monotonic()
        status, received, error = self.node_fetch(edge2, small_edge.id)
        self.addDetail('second-read', content.text_content(
            '%s in %.1f s: %r' % (status, time.monotonic() - started,
                                  received[:300])))
        self.assertEqual((200, None), (status, error))
        self.assertEqual(small_data, received)
        self.wait_fills_done(cache_dir=self.lab.cache_dir(1))
        # The first client reads on: its stream takes a slot again and
        # every byte of the range is central's.
        rest, error = b'', None
        try:
            rest = response.raw.read()
        except Exception as e:
            error = e
        self.assertIsNone(error)
        self.assertEqual(hashlib.sha512(big_data[1:]).hexdigest(),
                         hashlib.sha512(head + rest).hexdigest())
        self.assertGreater(edge1.log_text().count(GIVEN_BACK), given_back)
