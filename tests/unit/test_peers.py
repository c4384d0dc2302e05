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

"""Unit tests of peers.py: the signatures of requests and answers, the peer
filter on a real cache (served by a loopback wsgiref server, over TLS too,
for the client), the records and cache views, and the Peer client.
"""

import hashlib
import os
import socketserver
import ssl
import threading
import time
from unittest import mock
import wsgiref.simple_server

import fixtures
import testtools
import webob

from glance_store_remote import cache
from glance_store_remote import exceptions
from glance_store_remote import peers
from glance_store_remote import readthrough
from tests.unit import test_readthrough as rt

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
        self.filter = peers.PeerFilter(
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
        path = path or peers.peer_path('central', IMAGE)
        if secret is not None:
            headers[peers.AUTH_HEADER] = peers.auth_header(
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


class TestSignature(testtools.TestCase):

    PATH = peers.peer_path('central', IMAGE)
    NODE = 'http://node-1:9292'

    def check(self, header, method='GET', path=PATH, target=NODE,
              range_header=None, secret=SECRET, **kw):
        return peers.check_auth(secret, method, target, path, range_header,
                                header, **kw)

    def test_a_fresh_signature_is_accepted(self):
        header = peers.auth_header(SECRET, 'GET', self.PATH, self.NODE)
        self.assertTrue(self.check(header))
        # A trailing slash of the peer URL names the same node.
        self.assertTrue(self.check(header, target=self.NODE + '/'))

    def test_another_secret_method_or_path_is_refused(self):
        header = peers.auth_header(SECRET, 'GET', self.PATH, self.NODE)
        self.assertFalse(self.check(header, secret=SECRET + 'x'))
        self.assertFalse(self.check(header, method='HEAD'))
        self.assertFalse(self.check(header, path=self.PATH + 'x'))

    def test_a_signature_is_for_one_node_and_one_range(self):
        header = peers.auth_header(SECRET, 'GET', self.PATH, self.NODE,
                                   'bytes=0-99')
        self.assertTrue(self.check(header, range_header='bytes=0-99'))
        self.assertFalse(self.check(header, target='http://node-2:9292'))
        self.assertFalse(self.check(header, target='http://vip:9292'))
        self.assertFalse(self.check(header))
        self.assertFalse(self.check(header, range_header='bytes=0-'))

    def test_a_nonce_is_used_once(self):
        seen = peers.Nonces(None)
        header = peers.auth_header(SECRET, 'GET', self.PATH, self.NODE)
        self.assertTrue(self.check(header, first_use=seen.first_use))
        self.assertFalse(self.check(header, first_use=seen.first_use))
        # A forged header never reaches the nonces.
        forged = header[:-1] + ('0' if header[-1] != '0' else '1')
        self.assertFalse(self.check(forged, first_use=self.fail))

    def test_nonces_are_shared_by_the_processes_of_a_node(self):
        folder = self.useFixture(fixtures.TempDir()).path
        now = [1000.0]
        one = peers.Nonces(folder, clock=lambda: now[0])
        two = peers.Nonces(folder, clock=lambda: now[0])
        self.assertTrue(one.first_use('a' * 32, 1010))
        self.assertFalse(two.first_use('a' * 32, 1010))
        self.assertTrue(two.first_use('b' * 32, 1030))
        # Forgotten once expired (an expired request is refused anyway).
        now[0] = 1020.0
        self.assertTrue(one.first_use('c' * 32, 1040))
        self.assertEqual(['1030-' + 'b' * 32, '1040-' + 'c' * 32],
                         sorted(os.listdir(folder)))

    def test_expired_or_far_future_signatures_are_refused(self):
        self.assertLessEqual(peers.MAX_EXPIRY, 30)
        now = time.time()
        old = peers.auth_header(SECRET, 'GET', self.PATH, self.NODE,
                                now=now - peers.SIGNATURE_TTL - 5)
        self.assertFalse(self.check(old, now=now))
        far = int(now + peers.MAX_EXPIRY + 10)
        nonce = 'f' * 32
        header = '%d:%s:%s' % (far, nonce, peers.sign(
            SECRET, 'GET', self.NODE, self.PATH, None, far, nonce))
        self.assertFalse(self.check(header, now=now))
        self.assertTrue(self.check(header, now=far - 5))

    def test_malformed_headers_and_no_secret_are_refused(self):
        good = peers.auth_header(SECRET, 'GET', self.PATH, self.NODE)
        for header in (None, '', 'x', '12', 'abc:def', ':', '1:\u00e9',
                       '\u00b2:x', '\u00b2' + good[1:], good + 'x',
                       good.upper(), ' ' + good):
            self.assertFalse(self.check(header), header)
        self.assertFalse(self.check(good, secret=None))
        self.assertFalse(self.check(good, target=None))


class TestFilter(PeerTestCase):

    def test_other_paths_reach_glance(self):
        response = webob.Request.blank('/v2/images').get_response(
            self.filter)
        self.assertEqual(b'glance', response.body)

    def test_unsigned_or_wrongly_signed_requests_get_403(self):
        for secret in (None, 'another-secret-0123456789'):
            response = self.request(secret=secret)
            self.assertEqual(403, response.status_int)
            self.assertNotIn(b'glance', response.body)
        self.fill_complete()
        self.assertEqual(403, self.request(secret='wrong').status_int)
        # A backend without a secret serves no peer reads at all.
        self.filter._find_stores = lambda: {
            'central': FakeStore(self.cache, secret=None)}
        self.assertEqual(403, self.request().status_int)
        self.assertNotIn(SECRET, self.log.output)

    def test_other_methods_and_unknown_backends_get_403(self):
        self.fill_complete()
        self.assertEqual(403, self.request(method='DELETE').status_int)
        path = peers.peer_path('other', IMAGE)
        self.assertEqual(403, self.request(path=path).status_int)

    def test_a_complete_entry_is_served_whole_and_by_range(self):
        self.fill_complete()
        response = self.request()
        self.assertEqual((200, self.data),
                         (response.status_int, response.body))
        self.assertEqual('complete', response.headers[peers.STATE_HEADER])
        response = self.request(Range='bytes=1000-')
        self.assertEqual((206, self.data[1000:]),
                         (response.status_int, response.body))
        self.assertEqual('bytes 1000-%d/%d' % (self.SIZE - 1, self.SIZE),
                         response.headers['Content-Range'])
        response = self.request(Range='bytes=10-19')
        self.assertEqual(self.data[10:20], response.body)
        self.assertEqual(416, self.request(
            Range='bytes=%d-' % self.SIZE).status_int)
        head = self.request(method='HEAD')
        self.assertEqual((200, str(self.SIZE), 'complete'), (
            head.status_int, head.headers['Content-Length'],
            head.headers[peers.STATE_HEADER]))

    def test_a_range_of_a_complete_entry_carries_its_signed_digest(self):
        self.fill_complete()
        self.serve()
        peer = peers.Peer('central', self.peer_url, SECRET, 64 * KiB, 10)
        stream, digest = peer.open_verified_range(self.record, 1000, 5000)
        self.assertEqual(self.data[1000:6000], b''.join(stream))
        self.assertEqual(hashlib.sha256(self.data[1000:6000]).hexdigest(),
                         digest)

    def test_a_partial_file_gives_no_digest_and_no_range_for_it(self):
        lock = self.partial_fill(100 * KiB)
        response = self.request(Range='bytes=10-19',
                                **{peers.DIGEST_HEADER: 'sha256'})
        self.assertEqual(404, response.status_int)
        self.serve()
        peer = peers.Peer('central', self.peer_url, SECRET, 64 * KiB, 10)
        self.assertRaises(exceptions.UpstreamUnavailable,
                          peer.open_verified_range, self.record, 10, 10)
        lock.unlock()

    def test_a_digest_altered_in_the_middle_is_refused(self):
        self.fill_complete()
        honest = self.filter

        def alter(environ, start_response):
            answer = webob.Request(environ).get_response(honest)
            answer.headers[peers.DIGEST_HEADER] = '0' * 64
            return answer(environ, start_response)
        self.filter = alter
        peer = peers.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        self.assertRaises(exceptions.UpstreamUnavailable,
                          peer.open_verified_range, self.record, 10, 10)
        self.assertIn('not signed by the site', self.log.output)

    def test_asking_whether_an_entry_is_here_is_no_hit(self):
        self.fill_complete()
        hits = self.cache.counters()['hits']
        access = self.cache.entry(IMAGE).last_access
        self.assertEqual('complete', self.request(
            method='HEAD').headers[peers.STATE_HEADER])
        self.assertEqual(hits, self.cache.counters()['hits'])
        self.assertEqual(access, self.cache.entry(IMAGE).last_access)
        self.request()
        self.assertEqual(hits + 1, self.cache.counters()['hits'])

    def test_an_image_not_held_is_404(self):
        self.assertEqual(404, self.request().status_int)
        # A partial left by a dead fill is not offered.
        lock = self.partial_fill(1000)
        lock.unlock()
        self.assertEqual(404, self.request().status_int)

    def test_a_fill_in_progress_is_streamed_as_it_grows(self):
        lock = self.partial_fill(100 * KiB)
        self.assertEqual('filling', self.request(
            method='HEAD').headers[peers.STATE_HEADER])

        def grow():
            time.sleep(0.2)
            with open(self.cache.data_path(IMAGE, partial=True), 'ab') as f:
                f.write(self.data[100 * KiB:])
        threading.Thread(target=grow, daemon=True).start()
        response = self.request()
        self.assertEqual('filling', response.headers[peers.STATE_HEADER])
        self.assertEqual(self.data, response.body)
        lock.unlock()

    def test_a_fill_that_stops_ends_the_answer_short(self):
        lock = self.partial_fill(100 * KiB)

        def stop():
            time.sleep(0.2)
            lock.unlock()
        threading.Thread(target=stop, daemon=True).start()
        response = self.request()
        body = b''.join(response.app_iter)
        self.assertEqual(self.data[:100 * KiB], body)
        self.assertIn('ends short', self.log.output)

    def send(self, method, path, auth, **headers):
        headers[peers.AUTH_HEADER] = auth
        return webob.Request.blank(path, method=method,
                                   headers=headers).get_response(self.filter)

    def test_a_replayed_request_is_refused_by_every_worker_of_the_node(self):
        self.fill_complete()
        path = peers.peer_path('central', IMAGE)
        auth = peers.auth_header(SECRET, 'GET', path, self.peer_url)
        self.assertEqual(200, self.send('GET', path, auth).status_int)
        self.assertEqual(403, self.send('GET', path, auth).status_int)
        # Another worker process of the node: its own filter, the same
        # cache.
        self.filter = peers.PeerFilter(
            app, find_stores=lambda: {'central': FakeStore(self.cache)})
        self.assertEqual(403, self.send('GET', path, auth).status_int)
        self.assertEqual(200, self.request().status_int)

    def test_a_signature_for_another_node_or_range_is_refused(self):
        self.fill_complete()
        path = peers.peer_path('central', IMAGE)
        for auth, headers in (
                (peers.auth_header(SECRET, 'GET', path, 'http://other'), {}),
                (peers.auth_header(SECRET, 'GET', path, self.peer_url),
                 {'Range': 'bytes=0-9'}),
                (peers.auth_header(SECRET, 'GET', path, self.peer_url,
                                   'bytes=0-9'), {})):
            self.assertEqual(403, self.send('GET', path, auth,
                                            **headers).status_int)

    def test_a_request_through_a_balancer_or_to_another_host_is_refused(self):
        self.fill_complete()
        for header in peers.PROXY_HEADERS:
            response = self.request(**{header: '192.0.2.9'})
            self.assertEqual(403, response.status_int, header)
        # The site's VIP (another host name than the node's peer URL).
        self.assertEqual(403, self.request(Host='vip:80').status_int)
        self.assertEqual(403, self.request(Host='localhost:9292')
                         .status_int)
        self.assertEqual(200, self.request(Host='LOCALHOST').status_int)
        self.assertIn('came through a proxy or balancer', self.log.output)

    def test_a_digit_that_is_not_ascii_is_refused_not_a_500(self):
        self.fill_complete()
        path = peers.peer_path('central', IMAGE)
        for auth in ('\u00b2:x', '\u00b2' * 3 + ':' + 'a' * 32 + ':' +
                     'b' * 64):
            request = webob.Request.blank(path)
            request.environ['HTTP_' + peers.AUTH_HEADER.upper().replace(
                '-', '_')] = auth
            self.assertEqual(403, request.get_response(self.filter)
                             .status_int)

    def test_a_busy_cache_index_leaks_no_descriptor(self):
        self.partial_fill(10 * KiB)
        busy = exceptions.CacheError('database is locked')
        # The descriptors of this cache's files only: other tests' threads
        # in this worker open and close their own meanwhile.
        before = self.cache_fds()
        with mock.patch.object(self.cache, 'stored_record',
                               side_effect=busy):
            for _ in range(5):
                response = self.request()
                self.assertEqual(503, response.status_int)
        self.assertEqual(before, self.cache_fds())

    def cache_fds(self):
        root = os.path.realpath(self.cache.root) + os.sep
        count = 0
        for name in os.listdir('/proc/self/fd'):
            try:
                target = os.readlink(os.path.join('/proc/self/fd', name))
            except OSError:
                continue
            count += target.startswith(root)
        return count

    def test_refusals_are_logged_once_per_interval_with_their_count(self):
        clock = FakeClock()
        self.filter._refusals = peers._RefusalLog(interval=60, clock=clock)
        for _ in range(50):
            self.assertEqual(403, self.request(secret=None).status_int)
        self.assertEqual(1, self.log.output.count('peer request refused'))
        clock.now += 61
        self.request(secret=None)
        self.assertEqual(2, self.log.output.count('peer request refused'))
        self.assertIn('49 more refused in the last 60 s', self.log.output)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class TestRecordEndpoints(PeerTestCase):
    """``.../<id>/record`` (what this node holds) and
    ``.../<id>/central-record`` (central's record through this node).
    """

    def path(self, what):
        return peers.peer_path('central', IMAGE) + '/' + what

    def use_central(self, answer):
        central = RecordCentral(answer)
        self.filter._find_stores = lambda: {
            'central': FakeStore(self.cache, central=central)}
        return central

    def test_the_held_record_of_a_complete_image_or_a_running_fill(self):
        self.assertEqual(404, self.request(path=self.path('record'))
                         .status_int)
        lock = self.partial_fill(10 * KiB)
        response = self.request(path=self.path('record'))
        self.assertEqual((200, self.record.raw),
                         (response.status_int, response.json))
        # A partial file with no fill running is not offered.
        lock.unlock()
        self.assertEqual(404, self.request(path=self.path('record'))
                         .status_int)
        self.fill_complete()
        self.assertEqual(self.record.raw,
                         self.request(path=self.path('record')).json)

    def test_central_record_asks_this_node_central_without_relaying(self):
        central = self.use_central(self.record)
        response = self.request(path=self.path('central-record'))
        self.assertEqual((200, {'record': self.record.raw, 'age': 7.5}),
                         (response.status_int, response.json))
        self.assertEqual([(IMAGE, False)], central.asked)

    def test_central_record_errors(self):
        self.use_central(exceptions.UpstreamNotFound('central', 'gone'))
        response = self.request(path=self.path('central-record'))
        self.assertEqual((404, 'unknown'), (
            response.status_int, response.headers.get(peers.STATE_HEADER)))
        self.use_central(exceptions.UpstreamUnavailable(
            'central', 'down', detail='http://central.internal:9292'))
        response = self.request(path=self.path('central-record'))
        self.assertEqual(503, response.status_int)
        self.assertNotIn(b'central.internal', response.body)

    def test_answers_are_signed_and_a_forged_one_is_refused(self):
        self.use_central(self.record)
        self.fill_complete()
        path = self.path('record')
        auth = peers.auth_header(SECRET, 'GET', path, self.peer_url)
        response = webob.Request.blank(
            path, headers={peers.AUTH_HEADER: auth}).get_response(
                self.filter)
        self.assertEqual(peers.answer_mac(SECRET, auth, 200,
                                          response.headers, response.body),
                         response.headers[peers.ANSWER_HEADER])
        # A man in the middle changes the size and hash in the answer.
        honest = self.filter

        def app(environ, start_response):
            answer = webob.Request(environ).get_response(honest)
            if answer.status_int == 200:
                answer.body = answer.body.replace(
                    self.record.os_hash_value.encode(), b'0' * 128)
            return answer(environ, start_response)
        self.filter = app
        peer = peers.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        self.assertIsNone(peer.held_record(IMAGE))
        e = self.assertRaises(peers.PeerUnreachable, peer.central_record,
                              IMAGE)
        self.assertIn('not signed by the site', str(e))
        self.assertIn('not signed by the site', self.log.output)

    def test_a_relabelled_state_is_refused(self):
        # Central says "not active": a man in the middle makes it "unknown"
        # (which the reader would remember as central having no image).
        self.use_central(exceptions.UpstreamNotActive('central', 'queued'))
        honest = self.filter

        def relabel(environ, start_response):
            answer = webob.Request(environ).get_response(honest)
            if answer.headers.get(peers.STATE_HEADER) == 'not-active':
                answer.headers[peers.STATE_HEADER] = 'unknown'
            return answer(environ, start_response)
        self.filter = relabel
        peer = peers.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        e = self.assertRaises(peers.PeerUnreachable, peer.central_record,
                              IMAGE)
        self.assertIn('not signed by the site', str(e))

    def test_a_state_or_range_altered_in_the_middle_is_refused(self):
        self.fill_complete()
        honest = self.filter
        change = {}

        def alter(environ, start_response):
            answer = webob.Request(environ).get_response(honest)
            answer.headers.update(change)
            return answer(environ, start_response)
        self.filter = alter
        peer = peers.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        self.assertEqual('complete', peer.state(IMAGE))
        self.assertEqual(self.data[10:20], b''.join(
            peer.open_data(self.record, 10, 10)))
        change[peers.STATE_HEADER] = 'filling'
        self.assertIsNone(peer.state(IMAGE))
        change.clear()
        change['Content-Range'] = 'bytes 11-20/%d' % self.SIZE
        self.assertRaises(exceptions.UpstreamUnavailable, peer.open_data,
                          self.record, 10, 10)

    def test_records_and_views_are_get_only(self):
        self.fill_complete()
        for path in (self.path('record'), self.path('central-record'),
                     peers.cache_view_path('central'),
                     peers.cache_view_path('central', verify=True)):
            self.assertEqual(405, self.request('HEAD', path=path)
                             .status_int)

    def test_one_verify_at_a_time_on_a_node(self):
        self.fill_complete()
        busy = self.cache.lock('site-verify', 'lock')
        self.addCleanup(busy.close)
        self.assertTrue(busy.try_lock())
        path = peers.cache_view_path('central', verify=True)
        self.assertEqual(409, self.request(path=path).status_int)
        busy.unlock()
        self.assertEqual(200, self.request(path=path).status_int)

    def test_record_paths_need_the_signature_too(self):
        self.use_central(self.record)
        self.fill_complete()
        for what in ('record', 'central-record'):
            self.assertEqual(403, self.request(
                path=self.path(what), secret=None).status_int)
            self.assertEqual(403, self.request(
                path=self.path(what),
                secret='not-the-secret-01234').status_int)

    def test_the_client_side(self):
        central = self.use_central(self.record)
        peer = peers.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
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
        self.assertRaises(peers.PeerUnreachable, peer.central_record, IMAGE)
        gone = peers.Peer('central', 'http://127.0.0.1:9', SECRET, KiB, 10)
        self.assertRaises(peers.PeerUnreachable, gone.central_record, IMAGE)
        self.assertIsNone(gone.held_record(IMAGE))


class TestCacheView(PeerTestCase):
    """``.../<backend>/cache``: the node's entries and stats, for
    ``glance-remote cache list/stats --site``.
    """

    def test_entries_and_stats_signed_only(self):
        self.fill_complete()
        path = peers.cache_view_path('central')
        self.assertEqual(403, self.request(path=path, secret=None)
                         .status_int)
        view = self.request(path=path).json
        self.assertEqual([(IMAGE, 'complete', self.SIZE)], [
            (e['image_id'], e['state'], e['size']) for e in view['entries']])
        self.assertEqual(1, view['stats']['complete_entries'])
        peer = peers.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        self.assertEqual(view, peer.cache_view())
        wrong = peers.Peer('central', peer.url, 'another-secret-0123456',
                           64 * KiB, 10)
        e = self.assertRaises(peers.PeerUnreachable, wrong.cache_view)
        self.assertIn('HTTP 403', str(e))

    def test_verify_reports_without_removing(self):
        self.fill_complete()
        with open(self.cache.data_path(IMAGE), 'r+b') as f:
            f.write(b'\0' if self.data[0] else b'\1')
        peer = peers.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        report = peer.cache_view(verify=True)['report']
        self.assertEqual([IMAGE], [r['image_id'] for r in report
                                   if r['problem']])
        self.assertFalse(report[0]['unchecked'])
        self.assertTrue(os.path.exists(self.cache.data_path(IMAGE)))
        self.assertEqual(403, self.request(
            path=peers.cache_view_path('central', verify=True),
            secret=None).status_int)


class TestTLSPeers(PeerTestCase):
    """A peer URL over https is verified: against remote_glance_peer_ca_file
    when set, else the system's CAs (which do not know the lab's CA).
    """

    def serve_tls(self):
        from tests import lab
        folder = self.useFixture(fixtures.TempDir()).path
        ca_file, cert_file, key_file, other_ca = lab.make_tls(folder)
        server = wsgiref.simple_server.make_server(
            '127.0.0.1', 0, self.filter, server_class=_Server,
            handler_class=_Quiet)
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
        good = peers.Peer('central', url, SECRET, 64 * KiB, 10, ca_file)
        self.assertEqual('complete', good.state(IMAGE))
        self.assertEqual(self.data, b''.join(good.open_data(self.record)))
        for ca in (None, other_ca):
            peer = peers.Peer('central', url, SECRET, 64 * KiB, 10, ca)
            self.assertIsNone(peer.state(IMAGE))
            e = self.assertRaises(exceptions.UpstreamUnavailable,
                                  peer.open_data, self.record)
            self.assertIn('CERTIFICATE_VERIFY_FAILED', str(e))


class TestPeerClient(PeerTestCase):

    def peer(self, url, secret=SECRET):
        return peers.Peer('central', url, secret, chunk_size=64 * KiB,
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
