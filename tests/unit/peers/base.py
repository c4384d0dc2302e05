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

"""What the peer tests share: a store of this node, a filter on a real
cache, a loopback wsgiref server to read it from, a fill complete or in
progress.
"""

import os
import socketserver
import threading
from unittest import mock
import wsgiref.simple_server

import fixtures
import testtools
import webob

from glance_store_remote import cache
from glance_store_remote.peers import server
from glance_store_remote.peers import signing
from glance_store_remote import readthrough
from tests.unit import read_fakes as rt

SECRET = 'a-site-secret-0123456789'
IMAGE = rt.IMAGE
KiB = 1024


class FakeStore:
    # This node's peer URL (PeerTestCase sets the served one).
    peer_url = 'http://localhost'

    def __init__(self, cache_, secret=SECRET, central=None):
        self.cache = cache_
        self.central = central
        self.backend_group = 'central'
        group = mock.Mock(remote_glance_peer_secret=secret,
                          remote_glance_peer_url=self.peer_url)
        self.conf = {'central': group}


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _Server(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'glance']


class PeerTestCase(testtools.TestCase):

    SIZE = 300 * KiB

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        self.log = self.useFixture(fixtures.FakeLogger(level='DEBUG'))
        self.data = os.urandom(self.SIZE)
        self.record = rt.record_of(self.data)
        self.cache = cache.Cache(self.useFixture(fixtures.TempDir()).path,
                                 4 * 1024 * KiB)
        self.peer_url = 'http://localhost'
        self.filter = server.PeerFilter(
            app, find_stores=lambda: {'central': FakeStore(self.cache)},
            chunk_size=64 * KiB)

    def fill_complete(self):
        reader = readthrough.ReadThrough(self.cache, rt.FakeCentral(
            self.data), chunk_size=64 * KiB, stall_timeout=5)
        self.assertEqual(self.data, b''.join(reader.read(
            self.record, 0, self.SIZE)))
        reader.wait_for_fills(10)
        self.assertTrue(os.path.exists(self.cache.data_path(IMAGE)))

    @property
    def peer_url(self):
        return FakeStore.peer_url

    @peer_url.setter
    def peer_url(self, url):
        """This node's peer URL (the stores made from now on have it)."""
        self.addCleanup(setattr, FakeStore, 'peer_url', FakeStore.peer_url)
        FakeStore.peer_url = url

    def request(self, method='GET', secret=SECRET, path=None, target=None,
                **headers):
        path = path or signing.peer_path('central', IMAGE)
        if secret is not None:
            headers[signing.AUTH_HEADER] = signing.auth_header(
                secret, method, path, target or self.peer_url,
                headers.get('Range'))
        request = webob.Request.blank(path, method=method, headers=headers)
        return request.get_response(self.filter)

    def serve(self):
        server = wsgiref.simple_server.make_server(
            '127.0.0.1', 0, self.filter, server_class=_Server,
            handler_class=_Quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        self.peer_url = 'http://127.0.0.1:%d' % server.server_port
        return self.peer_url

    def use_central(self, answer):
        """The stores from now on have a central answering *answer*."""
        central = RecordCentral(answer)
        self.filter._find_stores = lambda: {
            'central': FakeStore(self.cache, central=central)}
        return central

    def partial_fill(self, upto):
        """A fill in progress: the fill lock held, *upto* bytes written."""
        lock = self.cache.lock(IMAGE, 'fill')
        self.assertTrue(lock.try_lock())
        self.addCleanup(lock.close)
        expected = cache.expected_from_record(self.record.raw)
        self.assertTrue(self.cache.reserve(expected, self.record.raw))
        with open(self.cache.data_path(IMAGE, partial=True), 'wb') as f:
            f.write(self.data[:upto])
        return lock


class RecordCentral:
    """upstream.Central's record(): *answer* is an ImageRecord or an
    exception to raise; remembers how it was asked.
    """

    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def record(self, image_id, relay=True):
        self.asked.append((image_id, relay))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def record_age(self, image_id):
        return 7.5
