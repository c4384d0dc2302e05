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

"""Unit tests of peers/server.py: the peer filter on a real cache, its
records and cache views, and the signatures of its answers.
"""

import hashlib
import os
import threading
import time
from unittest import mock

import webob

from glance_store_remote import cache_index
from glance_store_remote import exceptions
from glance_store_remote.peers import client
from glance_store_remote.peers import server
from glance_store_remote.peers import signing
from tests.unit.peers import base

SECRET = base.SECRET
IMAGE = base.IMAGE
KiB = base.KiB


class TestFilter(base.PeerTestCase):

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
            'central': base.FakeStore(self.cache, secret=None)}
        self.assertEqual(403, self.request().status_int)
        self.assertNotIn(SECRET, self.log.output)

    def test_other_methods_and_unknown_backends_get_403(self):
        self.fill_complete()
        self.assertEqual(403, self.request(method='DELETE').status_int)
        path = signing.peer_path('other', IMAGE)
        self.assertEqual(403, self.request(path=path).status_int)

    def test_a_complete_entry_is_served_whole_and_by_range(self):
        self.fill_complete()
        response = self.request()
        self.assertEqual((200, self.data),
                         (response.status_int, response.body))
        self.assertEqual('complete', response.headers[signing.STATE_HEADER])
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
            head.headers[signing.STATE_HEADER]))

    def test_a_range_of_a_complete_entry_carries_its_signed_digest(self):
        self.fill_complete()
        self.serve()
        peer = client.Peer('central', self.peer_url, SECRET, 64 * KiB, 10)
        stream, digest = peer.open_verified_range(self.record, 1000, 5000)
        self.assertEqual(self.data[1000:6000], b''.join(stream))
        self.assertEqual(hashlib.sha256(self.data[1000:6000]).hexdigest(),
                         digest)

    def test_a_partial_file_gives_no_digest_and_no_range_for_it(self):
        lock = self.partial_fill(100 * KiB)
        response = self.request(Range='bytes=10-19',
                                **{signing.DIGEST_HEADER: 'sha256'})
        self.assertEqual(404, response.status_int)
        self.serve()
        peer = client.Peer('central', self.peer_url, SECRET, 64 * KiB, 10)
        self.assertRaises(exceptions.UpstreamUnavailable,
                          peer.open_verified_range, self.record, 10, 10)
        lock.unlock()

    def test_a_digest_altered_in_the_middle_is_refused(self):
        self.fill_complete()
        honest = self.filter

        def alter(environ, start_response):
            answer = webob.Request(environ).get_response(honest)
            answer.headers[signing.DIGEST_HEADER] = '0' * 64
            return answer(environ, start_response)
        self.filter = alter
        peer = client.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        self.assertRaises(exceptions.UpstreamUnavailable,
                          peer.open_verified_range, self.record, 10, 10)
        self.assertIn('not signed by the site', self.log.output)

    def test_asking_whether_an_entry_is_here_is_no_hit(self):
        self.fill_complete()
        hits = self.cache.counters()['hits']
        access = self.cache.entry(IMAGE).last_access
        self.assertEqual('complete', self.request(
            method='HEAD').headers[signing.STATE_HEADER])
        self.assertEqual(hits, self.cache.counters()['hits'])
        self.assertEqual(access, self.cache.entry(IMAGE).last_access)

    def test_serving_a_peer_refreshes_the_entry_and_counts_no_read(self):
        # The asking node counts the read (a miss or a peer read): the
        # site's requests sum to its clients' reads.
        self.fill_complete()
        before = self.cache.counters()
        access = self.cache.entry(IMAGE).last_access
        time.sleep(0.01)
        self.assertEqual(self.data, self.request().body)
        after = self.cache.counters()
        self.assertEqual(
            {name: before[name] for name in cache_index.REQUEST_COUNTERS},
            {name: after[name] for name in cache_index.REQUEST_COUNTERS})
        self.assertGreater(self.cache.entry(IMAGE).last_access, access)

    def test_an_image_not_held_is_404(self):
        self.assertEqual(404, self.request().status_int)
        # A partial left by a dead fill is not offered.
        lock = self.partial_fill(1000)
        lock.unlock()
        self.assertEqual(404, self.request().status_int)

    def test_a_fill_in_progress_is_streamed_as_it_grows(self):
        lock = self.partial_fill(100 * KiB)
        self.assertEqual('filling', self.request(
            method='HEAD').headers[signing.STATE_HEADER])

        def grow():
            time.sleep(0.2)
            with open(self.cache.data_path(IMAGE, partial=True), 'ab') as f:
                f.write(self.data[100 * KiB:])
        threading.Thread(target=grow, daemon=True).start()
        response = self.request()
        self.assertEqual('filling', response.headers[signing.STATE_HEADER])
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
        headers[signing.AUTH_HEADER] = auth
        return webob.Request.blank(path, method=method,
                                   headers=headers).get_response(self.filter)

    def test_a_replayed_request_is_refused_by_every_worker_of_the_node(self):
        self.fill_complete()
        path = signing.peer_path('central', IMAGE)
        auth = signing.auth_header(SECRET, 'GET', path, self.peer_url)
        self.assertEqual(200, self.send('GET', path, auth).status_int)
        self.assertEqual(403, self.send('GET', path, auth).status_int)
        # Another worker process of the node: its own filter, the same
        # cache.
        self.filter = server.PeerFilter(
            base.app,
            find_stores=lambda: {'central': base.FakeStore(self.cache)})
        self.assertEqual(403, self.send('GET', path, auth).status_int)
        self.assertEqual(200, self.request().status_int)

    def test_a_signature_for_another_node_or_range_is_refused(self):
        self.fill_complete()
        path = signing.peer_path('central', IMAGE)
        for auth, headers in (
                (signing.auth_header(SECRET, 'GET', path, 'http://other'), {}),
                (signing.auth_header(SECRET, 'GET', path, self.peer_url),
                 {'Range': 'bytes=0-9'}),
                (signing.auth_header(SECRET, 'GET', path, self.peer_url,
                                     'bytes=0-9'), {})):
            self.assertEqual(403, self.send('GET', path, auth,
                                            **headers).status_int)

    def test_a_request_through_a_balancer_or_to_another_host_is_refused(self):
        self.fill_complete()
        for header in server.PROXY_HEADERS:
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
        path = signing.peer_path('central', IMAGE)
        for auth in ('\u00b2:x', '\u00b2' * 3 + ':' + 'a' * 32 + ':' +
                     'b' * 64):
            request = webob.Request.blank(path)
            request.environ['HTTP_' + signing.AUTH_HEADER.upper().replace(
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
        self.filter._refusals = server._RefusalLog(interval=60, clock=clock)
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


class TestRecordEndpoints(base.PeerTestCase):
    """``.../<id>/record`` (what this node holds) and
    ``.../<id>/central-record`` (central's record through this node).
    """

    def path(self, what):
        return signing.peer_path('central', IMAGE) + '/' + what

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
            response.status_int, response.headers.get(signing.STATE_HEADER)))
        self.use_central(exceptions.UpstreamUnavailable(
            'central', 'down', detail='http://central.internal:9292'))
        response = self.request(path=self.path('central-record'))
        self.assertEqual(503, response.status_int)
        self.assertNotIn(b'central.internal', response.body)

    def test_answers_are_signed_and_a_forged_one_is_refused(self):
        self.use_central(self.record)
        self.fill_complete()
        path = self.path('record')
        auth = signing.auth_header(SECRET, 'GET', path, self.peer_url)
        response = webob.Request.blank(
            path, headers={signing.AUTH_HEADER: auth}).get_response(
                self.filter)
        self.assertEqual(signing.answer_mac(SECRET, auth, 200,
                                            response.headers, response.body),
                         response.headers[signing.ANSWER_HEADER])
        # A man in the middle changes the size and hash in the answer.
        honest = self.filter

        def app(environ, start_response):
            answer = webob.Request(environ).get_response(honest)
            if answer.status_int == 200:
                answer.body = answer.body.replace(
                    self.record.os_hash_value.encode(), b'0' * 128)
            return answer(environ, start_response)
        self.filter = app
        peer = client.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        self.assertIsNone(peer.held_record(IMAGE))
        e = self.assertRaises(client.PeerUnreachable, peer.central_record,
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
            if answer.headers.get(signing.STATE_HEADER) == 'not-active':
                answer.headers[signing.STATE_HEADER] = 'unknown'
            return answer(environ, start_response)
        self.filter = relabel
        peer = client.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        e = self.assertRaises(client.PeerUnreachable, peer.central_record,
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
        peer = client.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        self.assertEqual('complete', peer.state(IMAGE))
        self.assertEqual(self.data[10:20], b''.join(
            peer.open_data(self.record, 10, 10)))
        change[signing.STATE_HEADER] = 'filling'
        self.assertIsNone(peer.state(IMAGE))
        change.clear()
        change['Content-Range'] = 'bytes 11-20/%d' % self.SIZE
        self.assertRaises(exceptions.UpstreamUnavailable, peer.open_data,
                          self.record, 10, 10)

    def test_records_and_views_are_get_only(self):
        self.fill_complete()
        for path in (self.path('record'), self.path('central-record'),
                     signing.cache_view_path('central'),
                     signing.cache_view_path('central', verify=True)):
            self.assertEqual(405, self.request('HEAD', path=path)
                             .status_int)

    def test_one_verify_at_a_time_on_a_node(self):
        self.fill_complete()
        busy = self.cache.lock('site-verify', 'lock')
        self.addCleanup(busy.close)
        self.assertTrue(busy.try_lock())
        path = signing.cache_view_path('central', verify=True)
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


class TestCacheView(base.PeerTestCase):
    """``.../<backend>/cache``: the node's entries and stats, for
    ``glance-remote cache list/stats --site``.
    """

    def test_entries_and_stats_signed_only(self):
        self.fill_complete()
        path = signing.cache_view_path('central')
        self.assertEqual(403, self.request(path=path, secret=None)
                         .status_int)
        view = self.request(path=path).json
        self.assertEqual([(IMAGE, 'complete', self.SIZE)], [
            (e['image_id'], e['state'], e['size']) for e in view['entries']])
        self.assertEqual(1, view['stats']['complete_entries'])
        peer = client.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        self.assertEqual(view, peer.cache_view())
        wrong = client.Peer('central', peer.url, 'another-secret-0123456',
                            64 * KiB, 10)
        e = self.assertRaises(client.PeerUnreachable, wrong.cache_view)
        self.assertIn('HTTP 403', str(e))

    def test_verify_reports_without_removing(self):
        self.fill_complete()
        with open(self.cache.data_path(IMAGE), 'r+b') as f:
            f.write(b'\0' if self.data[0] else b'\1')
        peer = client.Peer('central', self.serve(), SECRET, 64 * KiB, 10)
        report = peer.cache_view(verify=True)['report']
        self.assertEqual([IMAGE], [r['image_id'] for r in report
                                   if r['problem']])
        self.assertFalse(report[0]['unchecked'])
        self.assertTrue(os.path.exists(self.cache.data_path(IMAGE)))
        self.assertEqual(403, self.request(
            path=signing.cache_view_path('central', verify=True),
            secret=None).status_int)
