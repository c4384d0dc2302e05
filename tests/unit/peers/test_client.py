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
over TLS too.
"""

import ssl
import threading
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
