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

"""Unit tests of readthrough.py, the read path's decision table, on a real
cache directory and the fake central of read_fakes.py. The fill and its
followers have their own tests (test_fill.py, test_following.py). The same
behaviours are proven against real Glance servers in
tests/functional/test_readthrough.py.
"""

import concurrent.futures
import errno
import hashlib
import os
import threading
import time

import fixtures

from glance_store_remote import cache_index
from glance_store_remote import exceptions
from glance_store_remote import fill
from glance_store_remote import readthrough
from tests.unit import read_fakes as rt

KiB = rt.KiB
IMAGE = rt.IMAGE
ReadThroughTestCase = rt.ReadThroughTestCase
record_of = rt.record_of
open_fds = rt.open_fds
drain = rt.drain


class TestMissAndHit(ReadThroughTestCase):

    def test_miss_commits_and_a_hit_never_calls_central(self):
        self.assertEqual(self.data, self.read_all())
        self.assertTrue(self.wait_committed())
        self.assertEqual(self.data, self.read_all())
        self.assertEqual([(0, self.SIZE)], self.central.calls)
        counters = self.cache.counters()
        self.assertEqual((1, 1), (counters['misses'], counters['hits']))
        self.assertEqual(self.SIZE, counters['bytes_from_central'])
        self.assertEqual(self.SIZE, counters['bytes_from_cache'])

    def test_ranges_of_a_complete_entry_come_from_disk(self):
        self.read_all()
        self.wait_committed()
        self.assertEqual(self.data[5:105], self.read_all(offset=5,
                                                         length=100))
        self.assertEqual(1, len(self.central.calls))

    def test_concurrent_readers_share_one_fetch(self):
        self.central.gate = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            readers = [pool.submit(self.read_all) for _ in range(8)]
            time.sleep(0.2)
            self.central.gate.set()
            results = [r.result() for r in readers]
        self.assertEqual([self.data] * 8, results)
        self.assertEqual(1, len(self.central.calls))

    def test_the_fill_outlives_a_client_that_leaves(self):
        self.central.gate = threading.Event()
        chunks = self.read()
        self.central.gate.set()
        next(chunks)
        chunks.close()
        self.assertTrue(self.wait_committed())


class TestRanges(ReadThroughTestCase):

    def test_a_range_inside_an_unverified_prefix_is_never_served_from_it(
            self):
        # The prefix an interrupted fill kept is nobody's verified bytes
        # (a peer may have written it): a range inside it comes from
        # central, or not at all.
        self.central.fail_at = 100 * KiB
        self.first_call_only()
        self.assertRaises(exceptions.UpstreamError, self.read_all)
        self.assertEqual(100 * KiB, self.cache.resumable_length(IMAGE))
        self.central.down = True
        self.assertRaises(exceptions.UpstreamUnavailable, self.read,
                          offset=10, length=10)
        del self.central.open_data
        self.central.down = False
        with open(self.cache.data_path(IMAGE, partial=True), 'r+b') as f:
            f.write(b'planted!!!')
        self.assertEqual(self.data[10:20], self.read_all(offset=10,
                                                         length=10))
        self.assertIn((10, 10), self.central.calls)

    def test_range_beyond_the_prefix_goes_to_central_and_warms(self):
        self.assertEqual(self.data[-10:], self.read_all(
            offset=self.SIZE - 10, length=10))
        self.assertIn((self.SIZE - 10, 10), self.central.calls)
        self.assertTrue(self.wait_committed())

    def test_range_beyond_the_prefix_with_central_down_raises(self):
        self.central.down = True
        self.assertRaises(exceptions.UpstreamUnavailable, self.read,
                          offset=10, length=10)


class TestCentralWithoutRanges(ReadThroughTestCase):
    """Central's store cannot read from an offset: every read it serves
    starts at byte 0 (upstream.Central drops the bytes before the offset).
    """

    def setUp(self):
        super().setUp()
        self.central.serves_ranges = False

    def test_a_resume_rereads_the_prefix_and_still_verifies(self):
        self.central.fail_at = 120 * KiB
        self.first_call_only()
        self.assertRaises(exceptions.UpstreamError, self.read_all)
        del self.central.open_data
        self.central.fail_at = None
        self.assertEqual(self.data, self.read_all())
        self.assertTrue(self.wait_committed())
        counters = self.cache.counters()
        self.assertEqual(120 * KiB, self.central.skipped)
        self.assertEqual((1, 120 * KiB, self.SIZE),
                         (counters['resumes'], counters['bytes_resent'],
                          counters['bytes_from_central']))

    def test_a_range_of_an_image_not_held_is_served_by_its_fill(self):
        self.assertEqual(self.data[150 * KiB:160 * KiB], self.read_all(
            offset=150 * KiB, length=10 * KiB))
        self.assertTrue(self.wait_committed())
        self.assertEqual([(0, self.SIZE)], self.central.calls)
        self.assertEqual(0, self.central.skipped)

    def test_a_range_that_teaches_it_follows_the_fill_instead(self):
        # The first Range asked is refused (Glance's 400), which teaches it.
        self.central.serves_ranges = True
        open_data = self.central.open_data
        refused = []

        def refuse_ranges(record, offset=0, length=None, **kw):
            if offset and self.central.serves_ranges:
                refused.append((offset, length))
                self.central.serves_ranges = False
            return open_data(record, offset, length, **kw)
        self.central.open_data = refuse_ranges
        self.assertEqual(self.data[-10:], self.read_all(
            offset=self.SIZE - 10, length=10))
        self.assertTrue(self.wait_committed())
        self.assertEqual([(self.SIZE - 10, 10)], refused)
        self.assertEqual([(0, self.SIZE)], self.central.calls)
        self.assertEqual(0, self.central.skipped)

    def test_a_range_up_to_the_last_byte_waits_for_verification(self):
        lying = record_of(self.data, os_hash_value='0' * 128)
        received = []
        self.assertRaises(
            exceptions.CacheIntegrityError,
            lambda: received.extend(self.read(record=lying,
                                              offset=self.SIZE - 10)))
        self.assertLess(sum(map(len, received)), 10)

    def test_followers_wait_while_a_resume_skips_a_long_prefix(self):
        # Dropping the prefix again takes longer than the stall timeout;
        # touching the file keeps followers from giving up.
        self.reader.stall_timeout = 0.3
        self.patch(fill, 'TOUCH_INTERVAL', 0.05)
        self.central.fail_at = 120 * KiB
        self.first_call_only()
        self.assertRaises(exceptions.UpstreamError, self.read_all)
        del self.central.open_data
        self.central.fail_at = None
        self.central.skip_delay = 0.05  # 15 chunks: 0.75 s
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            readers = [pool.submit(self.read_all) for _ in range(3)]
            self.assertEqual([self.data] * 3, [r.result() for r in readers])
        self.assertEqual(120 * KiB, self.central.skipped)


class TestPassThrough(ReadThroughTestCase):

    MAX_SIZE = 100 * KiB

    def test_an_image_that_cannot_fit_streams_uncached(self):
        self.assertEqual(self.data, self.read_all())
        self.assertIsNone(self.cache.entry(IMAGE))
        self.assertEqual(1, self.cache.counters()['passthrough'])

    def test_central_down_before_the_first_byte_raises_at_once(self):
        self.central.down = True
        self.assertRaises(exceptions.UpstreamUnavailable, self.read)


class TestEveryMidStreamErrorIsAnIOError(ReadThroughTestCase):
    """Glance's location import retries only IOErrors, and a client sees a
    short body only if the stream raises: each way a stream already handed
    to Glance can fail.
    """

    def assertEndsWith(self, error_class, chunks):
        received, error = drain(chunks)
        self.assertIsInstance(error, error_class)
        self.assertIsInstance(error, IOError)
        self.assertLess(len(received), self.SIZE)
        return received

    def test_hit_whose_file_shrank(self):
        self.read_all()
        self.assertTrue(self.wait_committed())
        chunks = self.read()
        os.truncate(self.cache.data_path(IMAGE), 1000)
        self.assertEndsWith(exceptions.CacheIntegrityError, chunks)

    def test_hit_whose_disk_fails(self):
        self.read_all()
        self.assertTrue(self.wait_committed())
        chunks = self.read()
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.delivery.os.pread',
            lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, 'EIO'))))
        self.assertEndsWith(OSError, chunks)

    def test_pass_through_stream_failing(self):
        self.central.fail_at = 100 * KiB
        odd = record_of(self.data, os_hash_algo='no-such-hash')
        self.assertEndsWith(exceptions.UpstreamStreamError,
                            self.read(record=odd))

    def test_fill_failing_verification(self):
        lying = record_of(self.data, os_hash_value='0' * 128)
        self.assertEndsWith(exceptions.CacheIntegrityError,
                            self.read(record=lying))

    def test_takeover_refused_by_central(self):
        self.central.fail_at = 64 * KiB
        self.first_call_only()
        self.assertEndsWith(exceptions.UpstreamStreamError, self.read())

    def test_takeovers_exhausted(self):
        self.central.fail_at = 64 * KiB
        self.assertEndsWith(exceptions.UpstreamStreamError, self.read())

    def test_fill_that_stalls(self):
        self.reader.stall_timeout = 0.3
        self.central.gate = threading.Event()
        try:
            self.assertEndsWith(exceptions.UpstreamStreamError, self.read())
        finally:
            self.central.gate.set()

    def test_central_refusing_the_rest_after_the_disk_refused(self):
        # The first write fails: nothing was sent, the reader turns to
        # central, which is down by then.
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.fill.os.write',
            lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, 'full'))))
        self.first_call_only()
        self.assertEqual(b'', self.assertEndsWith(
            exceptions.UpstreamStreamError, self.read()))

    def test_central_failing_in_the_verified_rest(self):
        self.central.hold_at = 64 * KiB
        chunks = self.read()
        next(chunks)
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.fill.os.write',
            lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, 'full'))))
        self.central.fail_at = 150 * KiB
        self.central.resume.set()
        self.assertEndsWith(exceptions.UpstreamStreamError, chunks)


class TestUnstartedIterators(ReadThroughTestCase):
    """Glance closes or drops an image iterator before its first chunk on
    error paths: what the read opened is released all the same.
    """

    N = 1000

    def close_and_drop(self, open_one):
        for _ in range(self.N):
            open_one().close()
        for _ in range(self.N):
            open_one()

    def assertFlat(self, before):
        # A leak is one or two descriptors per iterator: thousands here.
        # Two of slack for threads of other tests.
        self.assertLessEqual(open_fds(), before + 2)

    def test_hits_release_their_file_and_read_lock(self):
        self.read_all()
        self.assertTrue(self.wait_committed())
        before = open_fds()
        self.close_and_drop(self.read)
        self.assertFlat(before)
        self.assertEqual('evicted', self.cache.evict(IMAGE))

    def test_central_ranges_release_their_stream(self):
        self.close_and_drop(lambda: self.read(offset=10, length=10))
        self.reader.wait_for_fills(10)
        self.assertEqual(0, self.central.open_streams)

    def test_pass_through_closes_its_central_stream(self):
        odd = record_of(self.data, os_hash_algo='no-such-hash')
        self.close_and_drop(lambda: self.read(record=odd))
        self.assertEqual(0, self.central.open_streams)


class TestZeroByteImage(ReadThroughTestCase):

    def test_reads_empty_without_central_or_the_cache(self):
        empty = record_of(b'')
        self.assertEqual(b'', b''.join(self.read(record=empty)))
        self.reader.wait_for_fills(10)
        self.assertEqual([], self.central.calls)
        self.assertIsNone(self.cache.entry(IMAGE))
        self.central.down = True
        self.assertEqual(b'', b''.join(self.read(record=empty)))


class TestRangePastCentralsSize(ReadThroughTestCase):
    """Glance computes the range from the EDGE record, which may say the
    image is larger than central's.
    """

    def test_refused_before_any_byte_on_a_miss(self):
        error = self.assertRaises(exceptions.UpstreamProtocolError,
                                  self.read, offset=0, length=self.SIZE + 10)
        self.assertIn('%d bytes' % self.SIZE, str(error))
        self.assertEqual([], self.central.calls)

    def test_refused_before_any_byte_on_a_hit(self):
        self.read_all()
        self.assertTrue(self.wait_committed())
        self.assertRaises(exceptions.UpstreamProtocolError, self.read,
                          offset=self.SIZE - 5, length=10)
        self.assertEqual(1, len(self.central.calls))


class TestFips(ReadThroughTestCase):

    def test_md5_refused_by_hashlib_streams_uncached(self):
        real_new = hashlib.new

        def fips_new(name, *args, **kwargs):
            if name.lower() == 'md5':
                raise ValueError('[digital envelope routines] unsupported')
            return real_new(name, *args, **kwargs)
        self.useFixture(fixtures.MonkeyPatch('hashlib.new', fips_new))
        md5_only = record_of(self.data, os_hash_algo=None,
                             os_hash_value=None)
        self.assertEqual(self.data, b''.join(self.read(record=md5_only)))
        self.reader.wait_for_fills(10)
        self.assertIsNone(self.cache.entry(IMAGE))
        self.assertIn('cannot be verified', self.log.output)


class HoldingSite:
    """A site_source.SiteSource stand-in: a peer that holds the image
    complete and sends its true bytes; fills read central.
    """

    def __init__(self, data, central):
        self.data = data
        self.central = central

    def open_fill(self, record, offset, length, on_skip=None, wait=True):
        return fill.CentralSource(self.central.open_data(
            record, offset, length, on_skip=on_skip, wait=wait))

    def open_held(self, record, offset, length):
        data = self.data[offset:offset + length]
        chunks = iter([data[i:i + 8 * KiB]
                       for i in range(0, len(data), 8 * KiB)])
        stream = fill.CentralSource(chunks)
        stream.close = lambda: None
        if (offset, length) == (0, record.size):
            return stream, None, 'peer'
        return stream, hashlib.sha256(data).hexdigest(), 'peer'

    def distrust(self, peer, image_id):
        raise AssertionError('an honest peer was distrusted')

    def held_record(self, image_id):
        return None


class TestRequestResults(ReadThroughTestCase):
    """Each read is counted once, under exactly one result of
    cache_index.REQUEST_COUNTERS; a read central cannot serve under none
    here (store.py counts it as refused).
    """

    def results(self):
        counters = self.cache.counters()
        return {name: counters[name] for name in cache_index.REQUEST_COUNTERS
                if counters[name]}

    def test_a_miss_then_a_hit(self):
        self.read_all()
        self.assertTrue(self.wait_committed())
        self.read_all()
        self.read_all(offset=10, length=10)
        self.assertEqual({'misses': 1, 'hits': 2}, self.results())

    def test_followers_are_coalesced(self):
        self.central.gate = threading.Event()
        first = self.read()
        second = self.read()
        self.central.gate.set()
        self.assertEqual([self.data] * 2, [b''.join(first),
                                           b''.join(second)])
        self.assertTrue(self.wait_committed())
        self.assertEqual({'misses': 1, 'coalesced': 1}, self.results())

    def test_a_range_not_held_is_a_pass_through_its_fill_no_read(self):
        self.read_all(offset=10, length=10)
        self.assertTrue(self.wait_committed())
        self.assertEqual({'passthrough': 1}, self.results())

    def test_a_range_from_a_central_without_ranges_follows_a_fill(self):
        self.central.serves_ranges = False
        self.assertEqual(self.data[10:20], self.read_all(offset=10,
                                                         length=10))
        self.assertTrue(self.wait_committed())
        self.assertEqual({'misses': 1}, self.results())

    def test_a_refused_read_is_counted_under_nothing(self):
        self.central.down = True
        self.assertRaises(exceptions.UpstreamUnavailable, self.read)
        self.assertRaises(exceptions.UpstreamUnavailable, self.read,
                          offset=10, length=10)
        # The pass-through of an image that cannot be verified.
        unverifiable = record_of(self.data, os_hash_value=None,
                                 checksum=None)
        self.assertRaises(exceptions.UpstreamUnavailable, self.read,
                          record=unverifiable)
        self.assertEqual({}, self.results())

    def test_zero_bytes_are_a_hit(self):
        self.read_all(record=record_of(b''))
        self.assertEqual({'hits': 1}, self.results())

    def test_a_peer_read_is_only_that(self):
        self.useFixture(fixtures.MockPatchObject(
            self.cache, 'reserve', return_value=False))
        self.reader = readthrough.ReadThrough(
            self.cache, self.central, chunk_size=16 * KiB, stall_timeout=5,
            site=HoldingSite(self.data, self.central))
        self.assertEqual(self.data, self.read_all())
        self.assertEqual(self.data[5:105], self.read_all(offset=5,
                                                         length=100))
        self.assertEqual([], self.central.calls)
        counters = self.cache.counters()
        self.assertEqual({'peer_reads': 2}, self.results())
        self.assertEqual((self.SIZE + 100, 0),
                         (counters['bytes_from_peers'],
                          counters['bytes_from_central']))

    def test_a_pass_through_from_central_is_only_that(self):
        self.useFixture(fixtures.MockPatchObject(
            self.cache, 'reserve', return_value=False))
        self.assertEqual(self.data, self.read_all())
        self.assertEqual({'passthrough': 1}, self.results())

    def test_metrics_off_counts_nothing(self):
        self.cache.counting = False
        self.read_all()
        self.assertTrue(self.wait_committed())
        self.read_all()
        self.read_all(record=record_of(b''))
        self.assertEqual({}, self.results())
