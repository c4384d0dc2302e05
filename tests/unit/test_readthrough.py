"""Unit tests of readthrough.py: a real cache directory and a scripted fake
central (to fail at an exact byte, lie about the hash, or count calls).
The same behaviours are proven against real Glance servers in
tests/functional/test_readthrough.py.
"""

import concurrent.futures
import errno
import hashlib
import os
import threading
import time

import fixtures
import testtools

from glance_store_remote import cache
from glance_store_remote import exceptions
from glance_store_remote import readthrough
from glance_store_remote import upstream

KiB = 1024
IMAGE = '3f1c4a0e-8a2b-4d7e-9c55-0a1b2c3d4e5f'


class FakeCentral:
    """Serves *data* like upstream.Central.open_data, by small chunks."""

    backend = 'central'

    def __init__(self, data, chunk=8 * KiB):
        self.data = data
        self.chunk = chunk
        self.calls = []
        self.fail_at = None       # raise UpstreamStreamError at this byte
        self.down = False         # refuse before any byte
        self.gate = None          # threading.Event every chunk waits for

    def open_data(self, record, offset=0, length=None, request_id=None):
        if self.down:
            raise exceptions.UpstreamUnavailable(self.backend, 'down')
        length = record.size - offset if length is None else length
        self.calls.append((offset, length))
        return self._chunks(offset, offset + length)

    def _chunks(self, pos, end):
        while pos < end:
            if self.gate is not None:
                self.gate.wait(10)
            if self.fail_at is not None and pos >= self.fail_at:
                raise exceptions.UpstreamStreamError(self.backend, 'died')
            stop = min(end, pos + self.chunk)
            if self.fail_at is not None and pos < self.fail_at < stop:
                stop = self.fail_at
            yield self.data[pos:stop]
            pos = stop


def record_of(data, **fields):
    raw = {'id': IMAGE, 'size': len(data), 'status': 'active',
           'os_hash_algo': 'sha512',
           'os_hash_value': hashlib.sha512(data).hexdigest(),
           'checksum': hashlib.md5(data).hexdigest()}
    raw.update(fields)
    return upstream.ImageRecord(raw)


class ReadThroughTestCase(testtools.TestCase):

    SIZE = 200 * KiB
    MAX_SIZE = 1024 * KiB

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        self.log = self.useFixture(fixtures.FakeLogger())
        self.data = os.urandom(self.SIZE)
        self.record = record_of(self.data)
        self.central = FakeCentral(self.data)
        self.cache = cache.Cache(self.useFixture(fixtures.TempDir()).path,
                                 self.MAX_SIZE)
        self.reader = readthrough.ReadThrough(
            self.cache, self.central, chunk_size=16 * KiB, stall_timeout=5)

    def read(self, offset=0, length=None, record=None):
        record = record or self.record
        length = record.size - offset if length is None else length
        return self.reader.read(record, offset, length)

    def read_all(self, **kw):
        return b''.join(self.read(**kw))

    def wait_committed(self, timeout=10):
        """Join this process's fills (they count and commit in their own
        thread after the last byte is released), then look.
        """
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.cache.data_path(IMAGE)) and (
                time.monotonic() < deadline):
            time.sleep(0.01)
        self.reader.wait_for_fills(timeout)
        return os.path.exists(self.cache.data_path(IMAGE))

    def tearDown(self):
        self.reader.wait_for_fills(10)
        super().tearDown()


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


class TestVerification(ReadThroughTestCase):

    def test_a_wrong_hash_is_never_committed_and_the_client_errs(self):
        lying = record_of(self.data, os_hash_value='0' * 128)
        received = []
        error = self.assertRaises(
            exceptions.CacheIntegrityError,
            lambda: received.extend(self.read(record=lying)))
        self.assertIsInstance(error, IOError)
        # At least the last byte was held back: the client can tell.
        self.assertLessEqual(sum(map(len, received)),
                             self.SIZE - readthrough.HOLD_BACK)
        self.reader.wait_for_fills(10)
        self.assertFalse(os.path.exists(self.cache.data_path(IMAGE)))
        self.assertFalse(os.path.exists(self.cache.data_path(IMAGE, True)))
        self.assertIsNone(self.cache.entry(IMAGE))
        self.assertEqual(1, self.cache.counters()['verification_failures'])

    def test_md5_is_used_where_central_has_no_os_hash(self):
        md5_only = record_of(self.data, os_hash_algo=None,
                             os_hash_value=None)
        self.assertEqual(self.data, b''.join(self.read(record=md5_only)))
        self.assertTrue(self.wait_committed())

    def test_an_unknown_algorithm_streams_uncached(self):
        odd = record_of(self.data, os_hash_algo='no-such-hash')
        self.assertEqual(self.data, b''.join(self.read(record=odd)))
        self.assertIsNone(self.cache.entry(IMAGE))
        self.assertIn('cannot be verified', self.log.output)


class TestResume(ReadThroughTestCase):

    def test_central_failing_mid_fill_keeps_the_prefix_then_resumes(self):
        self.central.fail_at = 120 * KiB
        takeover_refused = []

        def refuse_second_call(*args, **kw):
            if self.central.calls:
                takeover_refused.append(True)
                raise exceptions.UpstreamUnavailable('central', 'still down')
            return FakeCentral.open_data(self.central, *args, **kw)
        self.central.open_data = refuse_second_call
        received = []
        self.assertRaises(exceptions.UpstreamError,
                          lambda: received.extend(self.read()))
        self.assertEqual([True], takeover_refused)
        self.assertLessEqual(sum(map(len, received)), 120 * KiB)
        self.assertEqual(120 * KiB, self.cache.resumable_length(IMAGE))
        del self.central.open_data
        self.central.fail_at = None
        self.assertEqual(self.data, self.read_all())
        self.assertEqual((120 * KiB, self.SIZE - 120 * KiB),
                         self.central.calls[-1])
        self.assertTrue(self.wait_committed())
        self.assertEqual(1, self.cache.counters()['resumes'])

    def test_a_reader_takes_over_an_interrupted_fill_transparently(self):
        self.central.fail_at = 64 * KiB

        def heal(*args, **kw):
            self.central.fail_at = None
            return FakeCentral.open_data(self.central, *args, **kw)
        original = self.central.open_data
        self.central.open_data = lambda *a, **kw: (
            setattr(self.central, 'open_data', heal) or original(*a, **kw))
        self.assertEqual(self.data, self.read_all())
        self.assertEqual([(0, self.SIZE), (64 * KiB, self.SIZE - 64 * KiB)],
                         self.central.calls)


class TestRanges(ReadThroughTestCase):

    def test_range_inside_an_interrupted_prefix_works_with_central_down(self):
        self.central.fail_at = 100 * KiB
        self.central.open_data = self._once(self.central.open_data)
        self.assertRaises(exceptions.UpstreamError, self.read_all)
        self.central.down = True
        self.assertEqual(self.data[10:20], self.read_all(offset=10,
                                                         length=10))

    def _once(self, open_data):
        def first_only(*args, **kw):
            if self.central.calls:
                raise exceptions.UpstreamUnavailable('central', 'down')
            return open_data(*args, **kw)
        return first_only

    def test_range_beyond_the_prefix_goes_to_central_and_warms(self):
        self.assertEqual(self.data[-10:], self.read_all(
            offset=self.SIZE - 10, length=10))
        self.assertIn((self.SIZE - 10, 10), self.central.calls)
        self.assertTrue(self.wait_committed())

    def test_range_beyond_the_prefix_with_central_down_raises(self):
        self.central.down = True
        self.assertRaises(exceptions.UpstreamUnavailable, self.read,
                          offset=10, length=10)


class TestPassThrough(ReadThroughTestCase):

    MAX_SIZE = 100 * KiB

    def test_an_image_that_cannot_fit_streams_uncached(self):
        self.assertEqual(self.data, self.read_all())
        self.assertIsNone(self.cache.entry(IMAGE))
        self.assertEqual(1, self.cache.counters()['passthrough'])

    def test_central_down_before_the_first_byte_raises_at_once(self):
        self.central.down = True
        self.assertRaises(exceptions.UpstreamUnavailable, self.read)


class TestDiskFull(ReadThroughTestCase):

    def test_write_errors_pass_through_log_once_and_bypass(self):
        real_write = os.write
        written = [0]

        def full_disk(fd, data):
            if written[0] >= 50 * KiB:
                raise OSError(errno.ENOSPC, 'No space left on device')
            written[0] += len(data)
            return real_write(fd, data)
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.readthrough.os.write', full_disk))
        self.assertEqual(self.data, self.read_all())
        self.assertEqual(self.data, self.read_all())
        self.assertEqual(1, self.log.output.count('refused a write'))
        self.assertIsNone(self.cache.entry(IMAGE))
        self.assertFalse(os.path.exists(self.cache.data_path(IMAGE, True)))
