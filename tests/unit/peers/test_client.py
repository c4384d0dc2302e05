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

"""Unit tests of peers/client.py: the Peer client against a real filter,
over TLS too, and the site's views asked at once (cache_views).
"""

import ssl
import threading
import types
import wsgiref.simple_server

import fixtures

from glance_store_remote import exceptions
from glance_store_remote.peers import client
from tests.unit.peers import base
from tests.unit import read_fakes as rt

SECRET = base.SECRET
IMAGE = base.IMAGE
KiB = base.KiB


class TestRecords(base.PeerTestCase):
    """held_record and central_record, asked of a real filter."""

    def test_the_client_side(self):
        central = self.use_central(self.record)
        peer = client.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        self.assertIsNone(peer.held_record(IMAGE))
        record, age = peer.central_record(IMAGE)
        self.assertEqual((self.record.raw, 7.5), (record.raw, age))
        self.fill_complete()
        self.assertEqual(self.record.raw, peer.held_record(IMAGE).raw)
        central.answer = exceptions.UpstreamNotFound('central', 'gone')
        self.assertRaises(exceptions.UpstreamNotFound, peer.central_record,
                          IMAGE)
        central.answer = exceptions.UpstreamNotActive('central', 'queued')
        self.assertRaises(exceptions.UpstreamNotActive,
                          peer.central_record, IMAGE)
        # The peer cannot ask central: this node asks itself.
        central.answer = exceptions.UpstreamUnavailable('central', 'down')
        self.assertRaises(client.PeerUnreachable, peer.central_record, IMAGE)
        gone = client.Peer('central', 'http://127.0.0.1:9', SECRET, KiB, 10)
        self.assertRaises(client.PeerUnreachable, gone.central_record, IMAGE)
        self.assertIsNone(gone.held_record(IMAGE))


class TestTLSPeers(base.PeerTestCase):
    """A peer URL over https is verified: against remote_glance_peer_ca_file
    when set, else the system's CAs (which do not know the lab's CA).
    """

    def serve_tls(self):
        from tests.harness import lab
        folder = self.useFixture(fixtures.TempDir()).path
        ca_file, cert_file, key_file, other_ca = lab.make_tls(folder)
        server = wsgiref.simple_server.make_server(
            '127.0.0.1', 0, self.filter, server_class=base._Server,
            handler_class=base._Quiet)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        self.peer_url = 'https://127.0.0.1:%d' % server.server_port
        return self.peer_url, ca_file, other_ca

    def test_verified_against_the_ca_file_or_refused(self):
        self.fill_complete()
        url, ca_file, other_ca = self.serve_tls()
        good = client.Peer('central', url, SECRET, 64 * KiB, 10, ca_file)
        self.assertEqual('complete', good.state(IMAGE))
        self.assertEqual(self.data, b''.join(good.open_data(self.record)))
        for ca in (None, other_ca):
            peer = client.Peer('central', url, SECRET, 64 * KiB, 10, ca)
            self.assertIsNone(peer.state(IMAGE))
            e = self.assertRaises(exceptions.UpstreamUnavailable,
                                  peer.open_data, self.record)
            self.assertIn('CERTIFICATE_VERIFY_FAILED', str(e))


class TestPeerClient(base.PeerTestCase):

    def peer(self, url, secret=SECRET):
        return client.Peer('central', url, secret, chunk_size=64 * KiB,
                           timeout=10)

    def test_reads_the_whole_image_and_ranges(self):
        self.fill_complete()
        peer = self.peer(self.serve())
        self.assertEqual('complete', peer.state(IMAGE))
        self.assertEqual(self.data, b''.join(peer.open_data(self.record)))
        self.assertEqual(self.data[5000:9000], b''.join(
            peer.open_data(self.record, 5000, 4000)))

    def test_a_wrong_secret_or_an_image_not_held_is_unavailable(self):
        url = self.serve()
        self.assertIsNone(self.peer(url).state(IMAGE))
        self.assertRaises(exceptions.UpstreamUnavailable,
                          self.peer(url).open_data, self.record)
        self.fill_complete()
        wrong = self.peer(url, secret='another-secret-0123456')
        self.assertIsNone(wrong.state(IMAGE))
        e = self.assertRaises(exceptions.UpstreamUnavailable,
                              wrong.open_data, self.record)
        self.assertIn('HTTP 403', str(e))
        self.assertNotIn('another-secret', str(e) + self.log.output)

    def test_a_peer_that_stops_part_way_raises_an_ioerror(self):
        lock = self.partial_fill(100 * KiB)
        peer = self.peer(self.serve())
        data = peer.open_data(self.record)
        got = next(data)
        lock.unlock()
        received, error = rt.drain(data)
        self.assertIsInstance(error, IOError)
        # What came is the file's prefix; the rest never looks complete.
        self.assertTrue(self.data[:100 * KiB].startswith(got + received))

    def test_an_unreachable_peer_is_unavailable(self):
        peer = self.peer('http://127.0.0.1:9')
        self.assertIsNone(peer.state(IMAGE))
        self.assertRaises(exceptions.UpstreamUnavailable, peer.open_data,
                          self.record)


class TestCacheViews(base.PeerTestCase):
    """cache_views: every node's view at once, None for a node that could
    not be asked.
    """

    def group(self, secret=SECRET):
        return types.SimpleNamespace(
            remote_glance_peer_secret=secret,
            remote_glance_chunk_size=64 * KiB, timeout=10,
            remote_glance_peer_ca_file=None)

    def test_a_view_per_node_and_none_for_one_not_reachable(self):
        self.fill_complete()
        url = self.serve()
        gone = 'http://127.0.0.1:9'
        unreachable = []
        views = client.cache_views(
            self.group(), 'central', {url: set(), gone: set()},
            on_unreachable=lambda *args: unreachable.append(args))
        self.assertEqual({url, gone}, set(views))
        self.assertIsNone(views[gone])
        self.assertEqual([(IMAGE, 'complete')], [
            (e['image_id'], e['state']) for e in views[url]['entries']])
        self.assertEqual([gone], [u for u, _ in unreachable])
        self.assertIsInstance(unreachable[0][1], client.PeerUnreachable)
        # Without a callback, a node not asked is only None.
        self.assertEqual({gone: None}, client.cache_views(
            self.group(), 'central', [gone]))

    def test_a_node_refusing_the_signature_is_none(self):
        url = self.serve()
        unreachable = []
        views = client.cache_views(
            self.group('another-secret-0123456'), 'central', [url],
            on_unreachable=lambda *args: unreachable.append(args))
        self.assertEqual({url: None}, views)
        self.assertIn('HTTP 403', str(unreachable[0][1]))

    def test_verify_asks_each_node_for_its_report(self):
        self.fill_complete()
        url = self.serve()
        views = client.cache_views(self.group(), 'central', [url],
                                   verify=True)
        self.assertEqual([IMAGE], [r['image_id']
                                   for r in views[url]['report']])

    def test_the_nodes_are_asked_at_once(self):
        # Each answer waits until every node has been asked: asked one
        # after the other, the barrier would break.
        urls = ['https://n%d' % n for n in range(3)]
        barrier = threading.Barrier(len(urls), timeout=10)

        def cache_view(peer, verify=False):
            barrier.wait()
            return {'entries': [], 'stats': {}, 'url': peer.url}
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.peers.client.Peer.cache_view', cache_view))
        views = client.cache_views(self.group(), 'central', urls)
        self.assertEqual({url: url for url in urls},
                         {url: view['url'] for url, view in views.items()})

    def test_no_node_no_view(self):
        self.assertEqual({}, client.cache_views(self.group(), 'central', []))
