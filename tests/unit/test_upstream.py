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

"""Unit tests of upstream.py: the protocol checks against a central that
lies or breaks. requests-mock plays central, except where a real closed
loopback port is the better witness."""

import gc
import io
import json
import socket
import threading
import time

import fixtures
from glance_store import exceptions as gs_exceptions
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session
import requests
import testtools

from glance_store_remote import exceptions
from glance_store_remote import upstream
from tests.unit import base

IMAGE = '0b8e5d4c-7b7a-4a4e-8b51-1f6a2d3c4e5f'


class CentralTestCase(base.StoreTestCase):

    @property
    def client(self):
        return self.store._central

    def serve_raw_record(self, text):
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         text=text)

    def serve_image(self, data, **fields):
        body = self.serve_record(image_id=IMAGE, size=len(data), **fields)
        return upstream.ImageRecord(body)


class TestRecord(CentralTestCase):

    def test_not_json_is_a_protocol_error(self):
        self.serve_raw_record('<html>proxy error</html>')
        self.assertRaises(exceptions.UpstreamProtocolError,
                          self.client.fetch_record, IMAGE)

    def test_record_of_another_image_is_a_protocol_error(self):
        self.serve_raw_record(json.dumps(base.record()))
        self.assertRaises(exceptions.UpstreamProtocolError,
                          self.client.fetch_record, IMAGE)

    def test_json_that_is_not_an_object_is_a_protocol_error(self):
        self.serve_raw_record('[1, 2]')
        self.assertRaises(exceptions.UpstreamProtocolError,
                          self.client.fetch_record, IMAGE)

    def test_record_read_failure_keeps_the_transport_text_for_the_log(self):
        class Failing(io.RawIOBase):
            def readinto(self, buffer):
                raise OSError('connection to https://central.invalid:9292 '
                              'reset')

        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         body=Failing())
        error = self.assertRaises(exceptions.UpstreamUnavailable,
                                  self.client.fetch_record, IMAGE)
        self.assertEqual("remote-glance backend 'central': reading about "
                         "image %s failed" % IMAGE, error.public)
        self.assertIn('central.invalid', str(error))

    def test_bad_sizes_are_protocol_errors(self):
        for size in (-1, None, '1024', 1.5, True, False):
            self.serve_record(image_id=IMAGE, size=size)
            self.assertRaises(exceptions.UpstreamProtocolError,
                              self.client.fetch_record, IMAGE)

    def test_a_zero_byte_active_image_is_a_record(self):
        self.serve_record(image_id=IMAGE, size=0)
        self.assertEqual(0, self.client.fetch_record(IMAGE).size)

    def test_image_without_data_is_not_found(self):
        for status in ('queued', 'deactivated', 'importing', 'killed'):
            self.serve_record(image_id=IMAGE, status=status, size=None)
            error = self.assertRaises(exceptions.UpstreamNotFound,
                                      self.client.fetch_record, IMAGE)
            self.assertIn(status, str(error))

    def test_oversized_record_is_refused_without_reading_it_all(self):
        huge = base.record(image_id=IMAGE, padding='x' * (
            upstream.MAX_RECORD_BYTES + 10))
        self.serve_raw_record(json.dumps(huge))
        error = self.assertRaises(exceptions.UpstreamProtocolError,
                                  self.client.fetch_record, IMAGE)
        self.assertIn('larger than', str(error))

    def test_memo_is_bounded(self):
        self.patch(upstream, 'RECORD_MEMO_SIZE', 2)
        ids = []
        for n in range(3):
            body = self.serve_record()
            ids.append(body['id'])
            self.client.record(body['id'])
        self.assertEqual(ids[1:], list(self.client._memo))


class TestRecordSingleFlight(CentralTestCase):
    """Central is asked about an image once per ttl, however many threads
    ask at once, an unknown ID included; a coordinated site asks through
    its relay.
    """

    def slow_record(self, status=200):
        body = base.record(image_id=IMAGE, size=10)
        started = threading.Event()

        def answer(request, context):
            started.set()
            time.sleep(0.3)
            context.status_code = status
            return json.dumps(body)
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         text=answer)
        return started

    def ask_together(self, count=5):
        results = []

        def ask():
            try:
                results.append(self.client.record(IMAGE).id)
            except exceptions.UpstreamError as e:
                results.append(type(e))
        threads = [threading.Thread(target=ask) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        return results

    def test_concurrent_misses_ask_central_once(self):
        self.slow_record()
        self.assertEqual([IMAGE] * 5, self.ask_together())
        self.assertEqual(1, self.central.call_count)

    def test_an_unknown_id_is_remembered_for_the_ttl(self):
        self.slow_record(status=404)
        self.assertEqual([exceptions.UpstreamNotFound] * 5,
                         self.ask_together())
        self.assertRaises(exceptions.UpstreamNotFound, self.client.record,
                          IMAGE)
        self.assertEqual(1, self.central.call_count)
        self.client.forget(IMAGE)
        self.assertRaises(exceptions.UpstreamNotFound, self.client.record,
                          IMAGE)
        self.assertEqual(2, self.central.call_count)

    def test_a_failure_is_shared_by_those_asking_then_not_remembered(self):
        self.slow_record(status=503)
        results = self.ask_together(4)
        self.assertEqual([exceptions.UpstreamUnavailable] * 4, results)
        self.assertEqual(1, self.central.call_count)
        self.slow_record()
        self.assertEqual(IMAGE, self.client.record(IMAGE).id)
        self.assertEqual(2, self.central.call_count)

    def test_with_no_ttl_those_asking_together_still_share_one_answer(self):
        self.client._record_ttl = 0
        self.slow_record()
        self.assertEqual([IMAGE] * 5, self.ask_together())
        self.assertEqual(1, self.central.call_count)
        # And nothing is reused afterwards.
        self.client.record(IMAGE)
        self.assertEqual(2, self.central.call_count)

    def test_an_image_not_active_is_not_remembered(self):
        body = base.record(image_id=IMAGE, size=10, status='queued')
        self.serve_record(body)
        for _ in range(2):
            self.assertRaises(exceptions.UpstreamNotActive,
                              self.client.record, IMAGE)
        self.assertEqual(2, self.central.call_count)

    def test_each_raise_is_a_fresh_exception_without_old_frames(self):
        self.serve_record(http_status=404, image_id=IMAGE, size=10)
        raised = []
        for _ in range(2):
            try:
                self.client.record(IMAGE)
            except exceptions.UpstreamNotFound as e:
                raised.append(e)
        self.assertIsNot(raised[0], raised[1])
        self.assertEqual(str(raised[0]), str(raised[1]))
        stored = self.client._memo[IMAGE][1]
        self.assertIsNone(stored.__traceback__)

    def test_the_relay_answers_unless_told_not_to(self):
        self.serve_record(image_id=IMAGE, size=10)
        asked = []

        def relay(image_id, fetch):
            asked.append(image_id)
            return fetch(image_id), 0.0
        client = upstream.Central.from_conf(self.conf, base.BACKEND,
                                            record_relay=relay)
        self.assertEqual(IMAGE, client.record(IMAGE).id)
        self.assertEqual([IMAGE], asked)
        client.forget(IMAGE)
        self.assertEqual(IMAGE, client.record(IMAGE, relay=False).id)
        self.assertEqual([IMAGE], asked)
        self.assertEqual(2, self.central.call_count)


class TestData(CentralTestCase):

    def test_content_length_that_disagrees_is_refused_before_any_byte(self):
        record = self.serve_image(b'a' * 100)
        self.serve_data(IMAGE, b'a' * 100, headers={'Content-Length': '99'})
        self.assertRaises(exceptions.UpstreamProtocolError,
                          self.client.open_data, record)

    def test_wrong_content_range_is_refused(self):
        record = self.serve_image(b'a' * 100)
        self.serve_data(IMAGE, b'a' * 20, status=206, headers={
            'Content-Range': 'bytes 0-19/100'})
        self.assertRaises(exceptions.UpstreamProtocolError,
                          self.client.open_data, record, 10, 20)

    def file_requests(self):
        return [r for r in self.central.request_history
                if r.path.endswith('/file')]

    def test_negative_offset_or_length_is_a_caller_error(self):
        record = self.serve_image(b'a' * 100)
        for offset, length in ((-1, 5), (5, -1)):
            self.assertRaises(ValueError, self.client.open_data, record,
                              offset, length)
        self.assertEqual([], self.file_requests())

    def test_range_past_centrals_size_is_refused_before_any_request(self):
        record = self.serve_image(b'a' * 100)
        for offset, length in ((0, 101), (100, 1), (90, 20)):
            error = self.assertRaises(exceptions.UpstreamProtocolError,
                                      self.client.open_data, record,
                                      offset, length)
            self.assertIn('central\'s image has 100 bytes', str(error))
        self.assertEqual([], self.file_requests())

    def test_store_answers_a_size_mismatch_as_unavailable_not_500(self):
        # Glance computes the range from the edge's record, larger here.
        body = self.serve_record(size=100)
        error = self.assertRaises(
            gs_exceptions.RemoteServiceUnavailable, self.store.get,
            self.location(body['id']), offset=50, chunk_size=80)
        self.assertIn('central\'s image has 100 bytes', str(error))
        self.assertEqual([], self.file_requests())

    def test_a_zero_byte_image_reads_empty_without_asking_for_data(self):
        record = self.serve_image(b'')
        self.assertEqual(b'', b''.join(self.client.open_data(record)))
        body = self.serve_record(size=0)
        chunks, size = self.store.get(self.location(body['id']))
        self.assertEqual((b'', 0), (b''.join(chunks), size))
        self.assertEqual([], self.file_requests())

    def capture_responses(self):
        responses = []
        get = self.client._get

        def capturing(*args, **kwargs):
            responses.append(get(*args, **kwargs))
            return responses[-1]
        self.patch(self.client, '_get', capturing)
        return responses

    def test_an_unstarted_stream_closed_or_dropped_closes_its_response(self):
        record = self.serve_image(b'a' * 100)
        self.serve_data(IMAGE, b'a' * 100)
        responses = self.capture_responses()
        self.client.open_data(record).close()
        self.client.open_data(record)
        gc.collect()
        self.assertEqual([True, True], [r.raw.closed for r in responses])

    def test_a_finished_stream_closes_its_response(self):
        record = self.serve_image(b'a' * 100)
        self.serve_data(IMAGE, b'a' * 100)
        responses = self.capture_responses()
        chunks = self.client.open_data(record)
        self.assertEqual(b'a' * 100, b''.join(chunks))
        self.assertTrue(responses[0].raw.closed)

    def test_stream_ending_early_raises_after_the_bytes_it_had(self):
        record = self.serve_image(b'a' * 100)
        self.serve_data(IMAGE, io.BytesIO(b'a' * 40))
        chunks = self.client.open_data(record)
        received = []
        error = self.assertRaises(exceptions.UpstreamStreamError,
                                  lambda: received.extend(chunks))
        self.assertEqual(40, sum(map(len, received)))
        self.assertIn('after 40 of 100 bytes', str(error))

    def test_stream_read_error_is_an_ioerror(self):
        class Broken(io.RawIOBase):
            def readable(self):
                return True

            def readinto(self, buffer):
                raise ConnectionResetError('reset by peer')

        record = self.serve_image(b'a' * 100)
        self.serve_data(IMAGE, io.BufferedReader(Broken()),
                        headers={'Content-Length': '100'})
        error = self.assertRaises(IOError, list,
                                  self.client.open_data(record))
        self.assertIsInstance(error, exceptions.UpstreamStreamError)

    def test_any_failure_to_read_the_body_is_an_ioerror(self):
        class Closed(io.RawIOBase):
            def readable(self):
                return True

            def readinto(self, buffer):
                raise ValueError('I/O operation on closed file')

        record = self.serve_image(b'a' * 100)
        self.serve_data(IMAGE, io.BufferedReader(Closed()),
                        headers={'Content-Length': '100'})
        error = self.assertRaises(IOError, list,
                                  self.client.open_data(record))
        self.assertIsInstance(error, exceptions.UpstreamStreamError)

    def test_chunks_never_exceed_chunk_size(self):
        self.client.chunk_size = 64 * 1024
        data = bytes(range(256)) * 1000
        record = self.serve_image(data)
        self.serve_data(IMAGE, data)
        chunks = list(self.client.open_data(record))
        self.assertEqual(data, b''.join(chunks))
        self.assertEqual(64 * 1024, max(map(len, chunks)))


class TestBreaker(CentralTestCase):
    """The breaker counts failures to reach central (threshold 3 here)."""

    def test_429_answers_unavailable_without_opening_the_breaker(self):
        # A flood of requests (unknown IDs, say) makes central throttle us.
        self.serve_record(body=base.record(image_id=IMAGE), http_status=429)
        for _ in range(10):
            self.assertRaises(exceptions.UpstreamUnavailable,
                              self.client.fetch_record, IMAGE)
        self.assertEqual('closed', self.client.breaker.state()[0])
        self.serve_record(image_id=IMAGE)
        self.assertEqual(IMAGE, self.client.fetch_record(IMAGE).id)

    def test_5xx_opens_it(self):
        self.serve_record(body=base.record(image_id=IMAGE), http_status=503)
        for _ in range(3):
            self.assertRaises(exceptions.UpstreamUnavailable,
                              self.client.fetch_record, IMAGE)
        self.assertEqual('open', self.client.breaker.state()[0])
        self.serve_record(image_id=IMAGE)
        error = self.assertRaises(exceptions.UpstreamUnavailable,
                                  self.client.fetch_record, IMAGE)
        self.assertIn('circuit breaker', str(error))

    def open_breaker(self):
        self.serve_record(body=base.record(image_id=IMAGE), http_status=503)
        for _ in range(3):
            self.assertRaises(exceptions.UpstreamUnavailable,
                              self.client.fetch_record, IMAGE)
        self.assertEqual('open', self.client.breaker.state()[0])

    def test_central_back_closes_it_at_the_next_request(self):
        # The reset window is 30 s; a cheap question (no credentials)
        # shows central answers again, and the request goes through.
        self.open_breaker()
        versions = self.central.get('%s/versions' % base.CENTRAL,
                                    json={'versions': []})
        self.serve_record(image_id=IMAGE)
        self.assertEqual(IMAGE, self.client.fetch_record(IMAGE).id)
        self.assertEqual('closed', self.client.breaker.state()[0])
        self.assertEqual(1, versions.call_count)
        self.assertNotIn('X-Auth-Token', versions.last_request.headers)
        self.assertIn('answers again', self.log.output)

    def test_an_api_that_answers_over_a_broken_data_path_costs_one_trial(
            self):
        # The versions document answers, the image records do not: one
        # request tries central per probe, and its failure opens the
        # breaker again at once (not after three more).
        self.open_breaker()
        self.serve_record(body=base.record(image_id=IMAGE), http_status=503)
        self.central.get('%s/versions' % base.CENTRAL, json={'versions': []})
        for _ in range(5):
            self.assertRaises(exceptions.UpstreamUnavailable,
                              self.client.fetch_record, IMAGE)
        gets = [r for r in self.central.request_history
                if r.path.endswith('/v2/images/%s' % IMAGE.lower())]
        self.assertEqual(3 + 1, len(gets))
        self.assertEqual('open', self.client.breaker.state()[0])

    def test_no_probe_before_central_ever_answered(self):
        # Its URL comes from its answers: before the first, no catalog or
        # Keystone request is made to find it.
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         exc=requests.exceptions.ConnectionError('refused'))
        versions = self.central.get('%s/versions' % base.CENTRAL,
                                    json={'versions': []})
        for _ in range(5):
            self.assertRaises(exceptions.UpstreamUnavailable,
                              self.client.fetch_record, IMAGE)
        self.assertEqual(0, versions.call_count)

    def test_central_still_down_is_asked_once_per_interval(self):
        self.open_breaker()
        versions = self.central.get('%s/versions' % base.CENTRAL,
                                    status_code=503)
        for _ in range(5):
            self.assertRaises(exceptions.UpstreamUnavailable,
                              self.client.fetch_record, IMAGE)
        self.assertEqual(1, versions.call_count)
        self.assertEqual('open', self.client.breaker.state()[0])

    def test_no_probe_when_disabled(self):
        self.config_fixture.config(
            group=base.BACKEND, remote_glance_breaker_probe_interval=0)
        client = upstream.Central.from_conf(self.conf, base.BACKEND)
        versions = self.central.get('%s/versions' % base.CENTRAL,
                                    json={'versions': []})
        self.serve_record(body=base.record(image_id=IMAGE), http_status=503)
        for _ in range(4):
            self.assertRaises(exceptions.UpstreamUnavailable,
                              client.fetch_record, IMAGE)
        self.assertEqual(0, versions.call_count)


class TestRedirects(CentralTestCase):

    def test_same_origin_redirect_is_followed(self):
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         status_code=302,
                         headers={'Location': '/v2/moved/%s' % IMAGE})
        self.central.get('%s/v2/moved/%s' % (base.CENTRAL, IMAGE),
                         text=json.dumps(base.record(image_id=IMAGE)))
        self.assertEqual(IMAGE, self.client.fetch_record(IMAGE).id)

    def test_redirect_to_another_origin_is_refused_unfollowed(self):
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         status_code=302, headers={
                             'Location': 'https://evil.invalid/x'})
        error = self.assertRaises(exceptions.UpstreamProtocolError,
                                  self.client.fetch_record, IMAGE)
        self.assertIn('another origin', str(error))
        self.assertEqual(1, self.central.call_count)

    def test_redirect_loop_gives_up(self):
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         status_code=307, headers={
                             'Location': '/v2/images/%s' % IMAGE})
        self.assertRaises(exceptions.UpstreamProtocolError,
                          self.client.fetch_record, IMAGE)
        self.assertEqual(upstream.MAX_REDIRECTS + 1, self.central.call_count)


class TestUnreachable(testtools.TestCase):
    """A real connection to a closed loopback port: no mock."""

    def test_connection_refused_is_unavailable_without_userinfo(self):
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        endpoint = 'http://operator:s3cret@127.0.0.1:%d' % port
        session = ks_session.Session(auth=noauth.NoAuth(endpoint=endpoint),
                                     timeout=5)
        central = upstream.Central(
            'central', ks_adapter.Adapter(session, service_type='image'),
            chunk_size=1 << 20, record_ttl=60)
        error = self.assertRaises(exceptions.UpstreamUnavailable,
                                  central.fetch_record, IMAGE)
        self.assertIn("'central'", str(error))
        self.assertNotIn('s3cret', str(error))


class TestRedact(testtools.TestCase):

    def test_removes_userinfo_from_every_url(self):
        self.assertEqual(
            'see http://***@a:1/x and https://***@b/y',
            upstream.redact('see http://u:p@a:1/x and https://tok@b/y'))


class TestCentralWithoutRanges(CentralTestCase):
    """A central whose store cannot read from an offset (Glance on rbd,
    swift, s3 or http answers a Range with 400), or a proxy that ignores
    Range (200): read from byte 0, drop the bytes before the offset, learn
    it once.
    """

    DATA = bytes(range(256)) * 4

    def setUp(self):
        super().setUp()
        self.record = self.serve_image(self.DATA)
        self.now = 1000.0
        self.client._clock = lambda: self.now

    def serve(self, range_status):
        """Central's answer: *range_status* to a Range, the image to a
        whole read.
        """
        def answer(request, context):
            if 'Range' in request.headers:
                context.status_code = range_status
                if range_status == 400:
                    return b'400 Bad Request: Getting images randomly ' \
                        b'from this store is not supported.'
            context.status_code = 200
            context.headers['Content-Length'] = str(len(self.DATA))
            return self.DATA
        self.central.get('%s/v2/images/%s/file' % (base.CENTRAL, IMAGE),
                         content=answer)

    def file_requests(self):
        return [r.headers.get('Range') for r in self.central.request_history
                if r.path.endswith('/file')]

    def test_a_refused_range_reads_from_byte_0_and_skips(self):
        self.serve(400)
        skipped = []
        data = self.client.open_data(self.record, 300, 500,
                                     on_skip=skipped.append)
        self.assertEqual(self.DATA[300:800], b''.join(data))
        self.assertEqual(300, sum(skipped))
        self.assertEqual(['bytes=300-799', None], self.file_requests())
        self.assertFalse(self.client.serves_ranges)
        self.assertIn('answered HTTP 400 to a Range request', self.log.output)
        self.assertIn('serves whole images only', self.log.output)

    def test_an_ignored_range_uses_that_very_answer(self):
        self.serve(200)
        data = self.client.open_data(self.record, 1000, 24)
        self.assertEqual(self.DATA[1000:], b''.join(data))
        self.assertEqual(['bytes=1000-1023'], self.file_requests())
        self.assertFalse(self.client.serves_ranges)

    def test_learned_once_then_asked_again_after_the_recheck(self):
        self.serve(400)
        for offset in (10, 20):
            b''.join(self.client.open_data(self.record, offset, 5))
        self.assertEqual(['bytes=10-14', None, None], self.file_requests())
        self.assertEqual(1, self.log.output.count('a Range request'))
        self.now += self.client._range_recheck
        self.assertTrue(self.client.serves_ranges)
        b''.join(self.client.open_data(self.record, 30, 5))
        self.assertEqual(['bytes=30-34', None], self.file_requests()[-2:])

    def test_a_range_from_byte_0_stops_reading_at_its_end(self):
        self.serve(400)
        self.assertEqual(self.DATA[:7],
                         b''.join(self.client.open_data(self.record, 0, 7)))

    def test_a_stream_cut_while_skipping_is_an_ioerror_that_says_so(self):
        self.serve_data(IMAGE, io.BytesIO(self.DATA[:200]), status=200,
                        headers={'Content-Length': str(len(self.DATA))})
        self.client._ranges_refused_at = self.now
        data = self.client.open_data(self.record, 300, 10)
        error = self.assertRaises(IOError, b''.join, data)
        self.assertIn('skip the first 300', str(error))

    def test_a_whole_image_read_is_unchanged(self):
        self.serve(400)
        self.assertEqual(self.DATA, b''.join(self.client.open_data(
            self.record)))
        self.assertEqual([None], self.file_requests())
        self.assertTrue(self.client.serves_ranges)

    def test_without_skip_to_offset_a_refused_range_returns_none(self):
        self.serve(400)
        self.assertIsNone(self.client.open_data(self.record, 10, 5,
                                                skip_to_offset=False))
        self.assertIsNone(self.client.open_data(self.record, 20, 5,
                                                skip_to_offset=False))
        # Learned from the first: the second asked nothing.
        self.assertEqual(['bytes=10-14'], self.file_requests())

    def test_an_ignored_range_with_a_wrong_length_teaches_nothing(self):
        self.central.get('%s/v2/images/%s/file' % (base.CENTRAL, IMAGE),
                         content=self.DATA, headers={'Content-Length': '5'})
        self.assertRaises(exceptions.UpstreamProtocolError,
                          self.client.open_data, self.record, 10, 5)
        self.assertTrue(self.client.serves_ranges)

    def test_an_ignored_range_without_skip_to_offset_is_closed(self):
        self.serve(200)
        closed = []
        self.useFixture(fixtures.MockPatch(
            'requests.Response.close', lambda resp: closed.append(resp)))
        self.assertIsNone(self.client.open_data(self.record, 10, 5,
                                                skip_to_offset=False))
        self.assertEqual(1, len(closed))

    def test_the_warning_is_rate_limited_even_without_a_recheck(self):
        self.client._range_recheck = 0
        self.serve(400)
        for offset in (10, 20, 30):
            b''.join(self.client.open_data(self.record, offset, 5))
        self.assertEqual(['bytes=10-14', None, 'bytes=20-24', None,
                          'bytes=30-34', None], self.file_requests())
        self.assertEqual(1, self.log.output.count('serves whole images'))
        self.now += upstream.RANGE_WARNING_INTERVAL
        b''.join(self.client.open_data(self.record, 40, 5))
        self.assertEqual(2, self.log.output.count('serves whole images'))


class TestCentralSeen(CentralTestCase):
    """Each request to central records its outcome (through the breaker)
    in the cache index, for the node's metrics.
    """

    def setUp(self):
        super().setUp()
        # The breaker's state is the cache's index (backend.py).
        self.store = self.make_cached_store()

    def seen(self):
        return self.store.cache.load_central(base.BACKEND)

    def test_an_answer_is_up_a_5xx_or_a_cut_is_down(self):
        self.assertIsNone(self.seen())
        self.serve_record(image_id=IMAGE)
        self.client.fetch_record(IMAGE)
        self.assertTrue(self.seen().up)
        self.assertIsNone(self.seen().last_failure)
        self.serve_record(body=base.record(image_id=IMAGE), http_status=503)
        self.assertRaises(exceptions.UpstreamUnavailable,
                          self.client.fetch_record, IMAGE)
        self.assertFalse(self.seen().up)
        self.assertIsNotNone(self.seen().last_success)
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         exc=requests.exceptions.ConnectionError('cut'))
        self.assertRaises(exceptions.UpstreamUnavailable,
                          self.client.fetch_record, IMAGE)
        self.assertFalse(self.seen().up)

    def test_a_throttling_central_changes_nothing(self):
        self.serve_record(image_id=IMAGE)
        self.client.fetch_record(IMAGE)
        self.serve_record(body=base.record(image_id=IMAGE), http_status=429)
        self.assertRaises(exceptions.UpstreamUnavailable,
                          self.client.fetch_record, IMAGE)
        self.assertTrue(self.seen().up)

    def test_a_stream_that_breaks_is_down(self):
        class Broken(io.RawIOBase):
            def readable(self):
                return True

            def readinto(self, buffer):
                raise OSError('connection reset')
        record = self.serve_image(b'x' * 100)
        self.serve_data(IMAGE, io.BufferedReader(Broken()),
                        headers={'Content-Length': '100'})
        stream = self.client.open_data(record)
        self.assertTrue(self.seen().up)
        self.assertRaises(IOError, list, stream)
        self.assertFalse(self.seen().up)
