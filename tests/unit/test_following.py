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

"""Unit tests of following.py: readers of a fill's growing file hold back
until the verdict of the fill of the very file they read, wait for a fill
that shows it is alive, keep the entry from eviction, and verify by
themselves what they sent when the cache fails under them; in one worker
and across worker processes.
"""

import concurrent.futures
import errno
import hashlib
import multiprocessing
import os
import sqlite3
import threading
import time
import uuid

import fixtures
import testtools

from glance_store_remote import cache
from glance_store_remote import delivery
from glance_store_remote import exceptions
from glance_store_remote import fill
from glance_store_remote import following
from glance_store_remote import readthrough
from glance_store_remote import upstream
from tests.unit import read_fakes as rt

KiB = rt.KiB
IMAGE = rt.IMAGE
FakeCentral = rt.FakeCentral
ReadThroughTestCase = rt.ReadThroughTestCase
record_of = rt.record_of
drain = rt.drain


class _SlowHasher:
    """hashlib's hasher, 0.1 s a block: hashing that lags the network."""

    real_new = staticmethod(hashlib.new)

    def __init__(self, algo):
        self._hasher = self.real_new(algo)

    def update(self, block):
        time.sleep(0.1)
        self._hasher.update(block)

    def hexdigest(self):
        return self._hasher.hexdigest()


class TestHashingLagsTheNetwork(ReadThroughTestCase):
    """The whole image has landed; its hash is not done yet."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatchObject(fill.hashlib, 'new',
                                                 _SlowHasher))

    def test_followers_wait_for_the_verdict_longer_than_the_stall(self):
        # 13 blocks of 16 KiB at 0.1 s: 1.3 s of hashing, stall 0.5 s.
        self.reader.stall_timeout = 0.5
        self.patch(fill, 'TOUCH_INTERVAL', 0.05)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            readers = [pool.submit(self.read_all) for _ in range(3)]
            self.assertEqual([self.data] * 3, [r.result() for r in readers])

    def whole_file_unverified(self, record):
        """Start a whole read of *record*; return once the fill's file is
        whole and its hash not done. Returns the future of that read.
        """
        pool = concurrent.futures.ThreadPoolExecutor(1)
        self.addCleanup(pool.shutdown)
        first = pool.submit(drain, self.read(record=record))
        partial = self.cache.data_path(IMAGE, partial=True)
        deadline = time.monotonic() + 10
        while not (os.path.exists(partial) and
                   os.path.getsize(partial) == self.SIZE):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        return first

    def test_a_range_to_the_last_byte_is_not_served_from_the_file(self):
        # Central serves ranges: the tail comes from it, not from the
        # unverified file.
        first = self.whole_file_unverified(self.record)
        self.assertEqual(self.data[-10:], self.read_all(
            offset=self.SIZE - 10, length=10))
        self.assertIn((self.SIZE - 10, 10), self.central.calls)
        self.assertIsNone(first.result()[1])

    def test_a_range_to_the_last_byte_waits_for_the_verdict(self):
        # Central serves no ranges: the tail follows the fill, and the
        # image fails verification.
        self.central.serves_ranges = False
        lying = record_of(self.data, os_hash_value='0' * 128)
        first = self.whole_file_unverified(lying)
        received, error = drain(self.read(record=lying,
                                          offset=self.SIZE - 10))
        self.assertIsInstance(error, exceptions.CacheIntegrityError)
        self.assertLess(len(received), 10)
        self.assertIsInstance(first.result()[1],
                              exceptions.CacheIntegrityError)
        self.assertEqual([(0, self.SIZE)], self.central.calls)


class TestRangeFollowerWhoseCacheFails(ReadThroughTestCase):
    """A range follows the fill (central serves no ranges) and the cache
    fails under it after its first bytes.
    """

    def read_until_the_cache_fails(self, record, offset, length):
        self.central.serves_ranges = False
        self.central.fail_at = 64 * KiB
        self.heal_after_first_call()
        chunks = self.read(record=record, offset=offset, length=length)
        first = next(chunks)
        self.useFixture(fixtures.MockPatchObject(
            self.cache, 'lock', side_effect=exceptions.CacheError('gone')))
        received, error = drain(chunks)
        return first + received, error

    def test_a_range_to_the_end_verifies_from_byte_0(self):
        got, error = self.read_until_the_cache_fails(
            self.record, 16 * KiB, self.SIZE - 16 * KiB)
        self.assertIsNone(error)
        self.assertEqual(self.data[16 * KiB:], got)

    def test_a_range_of_a_wrong_image_gets_no_byte(self):
        # Bytes of a fill nobody verified yet never reach a range.
        self.central.serves_ranges = False
        lying = record_of(self.data, os_hash_value='0' * 128)
        received, error = drain(self.read(record=lying, offset=16 * KiB,
                                          length=100 * KiB))
        self.assertIsInstance(error, exceptions.CacheIntegrityError)
        self.assertEqual(b'', received)

    def test_a_range_before_the_end_passes_through(self):
        got, error = self.read_until_the_cache_fails(
            self.record, 16 * KiB, 100 * KiB)
        self.assertIsNone(error)
        self.assertEqual(self.data[16 * KiB:116 * KiB], got)


class TestEvictionUnderAFollower(ReadThroughTestCase):
    """The cache is under pressure: another image needs the room of an
    entry whose fill just committed while a follower of it is still at its
    held-back byte, and central is down.
    """

    # Room for one image only.
    MAX_SIZE = 300 * KiB

    def test_the_entry_stays_until_the_follower_ends(self):
        self.central.hold_at = self.SIZE - 16 * KiB
        chunks = self.read()
        received = [next(chunks)]
        self.central.resume.set()
        self.assertTrue(self.wait_committed())
        self.central.down = True
        other = cache.Expected('other-image', self.SIZE, 'sha512', 'x')
        self.assertFalse(self.cache.reserve(other, {'id': 'other-image'}))
        self.assertEqual('busy', self.cache.evict(IMAGE))
        received.extend(chunks)
        self.assertEqual(self.data, b''.join(received))
        # Once the stream ended, the entry can go.
        self.assertEqual('evicted', self.cache.evict(IMAGE))

    def test_an_unstarted_follower_releases_the_entry(self):
        self.central.gate = threading.Event()
        chunks = self.read()
        self.central.gate.set()
        chunks.close()
        self.assertTrue(self.wait_committed())
        self.assertEqual('evicted', self.cache.evict(IMAGE))


class TestCacheFailingUnderAReader(ReadThroughTestCase):
    """A whole-image reader that already sent cached bytes when the cache
    failed under it reads the rest from central, and releases the last byte
    only if what it sent and central's rest together match the record.
    """

    def refuse_writes(self):
        """Make the disk refuse every write from now on: ENOSPC."""
        real_write = os.write

        def full_disk(fd, data):
            raise OSError(errno.ENOSPC, 'No space left on device')
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.fill.os.write', full_disk))
        self.addCleanup(setattr, os, 'write', real_write)

    def disk_full_after_first_chunk(self, record):
        self.central.hold_at = 64 * KiB
        chunks = self.read(record=record)
        first = next(chunks)
        self.refuse_writes()
        self.central.resume.set()
        received, error = drain(chunks)
        return first + received, error

    def test_disk_refusing_after_bytes_were_sent_verifies_centrals_rest(self):
        received, error = self.disk_full_after_first_chunk(self.record)
        self.assertIsNone(error)
        self.assertEqual(self.data, received)
        offset, length = self.central.calls[-1]
        self.assertGreater(offset, 0)
        self.assertEqual(self.SIZE, offset + length)

    def test_disk_refusing_after_bytes_were_sent_never_ends_unverified(self):
        lying = record_of(self.data, os_hash_value='0' * 128)
        received, error = self.disk_full_after_first_chunk(lying)
        self.assertIsInstance(error, exceptions.CacheIntegrityError)
        self.assertEqual(self.SIZE - delivery.HOLD_BACK, len(received))

    def cache_gone_after_first_chunk(self, record):
        self.central.fail_at = 64 * KiB
        self.heal_after_first_call()
        chunks = self.read(record=record)
        first = next(chunks)
        self.useFixture(fixtures.MockPatchObject(
            self.cache, 'lock', side_effect=exceptions.CacheError('gone')))
        received, error = drain(chunks)
        return first + received, error

    def test_cache_gone_under_a_reader_verifies_centrals_rest(self):
        received, error = self.cache_gone_after_first_chunk(self.record)
        self.assertIsNone(error)
        self.assertEqual(self.data, received)

    def test_cache_gone_under_a_reader_never_ends_unverified(self):
        lying = record_of(self.data, os_hash_value='0' * 128)
        received, error = self.cache_gone_after_first_chunk(lying)
        self.assertIsInstance(error, exceptions.CacheIntegrityError)
        self.assertEqual(self.SIZE - delivery.HOLD_BACK, len(received))

    def no_room_for_takeover_after_first_chunk(self, record):
        self.central.fail_at = 64 * KiB
        self.heal_after_first_call()
        chunks = self.read(record=record)
        first = next(chunks)
        self.useFixture(fixtures.MockPatchObject(
            self.cache, 'reserve', return_value=False))
        received, error = drain(chunks)
        return first + received, error

    def test_takeover_without_room_verifies_centrals_rest(self):
        received, error = self.no_room_for_takeover_after_first_chunk(
            self.record)
        self.assertIsNone(error)
        self.assertEqual(self.data, received)

    def test_takeover_without_room_never_ends_unverified(self):
        lying = record_of(self.data, os_hash_value='0' * 128)
        received, error = self.no_room_for_takeover_after_first_chunk(lying)
        self.assertIsInstance(error, exceptions.CacheIntegrityError)
        self.assertEqual(self.SIZE - delivery.HOLD_BACK, len(received))

    def test_a_later_fill_never_vouches_for_the_file_of_a_failed_one(self):
        # A reader holds the file of a fill that failed verification, its
        # last byte held back; a second fill of the image then verifies and
        # commits. Its verdict speaks of another file.
        good = self.data
        self.central.data = os.urandom(self.SIZE)
        # The fill waits after its first chunk until the reader has opened
        # its file (else the fill can fail and be discarded first).
        self.central.hold_at = self.central.chunk
        stale = self.read()
        received = len(next(stale))
        self.central.resume.set()
        while received < self.SIZE - delivery.HOLD_BACK:
            received += len(next(stale))
        self.reader.wait_for_fills(10)
        self.central.data = good
        self.assertEqual(good, self.read_all())
        self.assertTrue(self.wait_committed())
        self.assertRaises(IOError, next, stale)


# -- two worker processes on one cache directory ----------------------------

# Seconds an index write of the worker processes waits for a busy index (30
# in production): short, so that a run lasts a fraction of a second while
# the end of a failed fill still waits on the index.
BUSY_TIMEOUT = 0.1
# Seconds the third connection holds the index: longer than the two index
# writes at the end of a failed fill wait together.
BUSY_HOLD = 0.35
PROCESS_SIZE = 64 * KiB


class _PacedCentral(FakeCentral):
    """Central for a worker process: slow enough that the other worker
    follows the fill; after the last byte of a whole image it waits until
    the index is held busy, so that the fill ends with the index busy.
    """

    def __init__(self, fetched, busy):
        super().__init__(b'')
        self.fetched = fetched
        self.busy = busy

    def _chunks(self, pos, end, on_skip=None):
        whole = pos == 0 and end == len(self.data)
        for chunk in super()._chunks(pos, end, on_skip):
            time.sleep(0.005)
            yield chunk
        if whole:
            self.fetched.set()
            self.busy.wait(10)


def _worker(root, commands, results, fetched, busy):
    """A glance-api worker: reads each image it is sent, whole, and reports
    (bytes its client received, (is an IOError, error) or None).
    """
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        kwargs['timeout'] = BUSY_TIMEOUT
        return real_connect(*args, **kwargs)
    sqlite3.connect = connect
    central = _PacedCentral(fetched, busy)
    reader = readthrough.ReadThrough(cache.Cache(root, 1024 * KiB), central,
                                     chunk_size=16 * KiB, stall_timeout=5)
    results.put('ready')
    for raw, sent in iter(commands.get, None):
        central.data = sent
        received, error = 0, None
        try:
            for chunk in reader.read(upstream.ImageRecord(raw), 0,
                                     raw['size']):
                received += len(chunk)
        except Exception as e:
            error = (isinstance(e, IOError), '%s: %s' % (type(e).__name__, e))
        reader.wait_for_fills(10)
        results.put((received, error))


class TestVerdictAcrossProcesses(testtools.TestCase):
    """Two workers read an image whose bytes fail verification while a
    third connection holds the index busy at the end of the fill (the
    discard of the partial waits on the index).
    """

    RUNS = 20

    def test_no_reader_gets_the_whole_of_an_image_that_failed(self):
        self.useFixture(fixtures.Timeout(120, gentle=True))
        root = self.useFixture(fixtures.TempDir()).path
        cache.Cache(root, 1024 * KiB)
        context = multiprocessing.get_context('spawn')
        fetched, busy = context.Event(), context.Event()
        results = context.Queue()
        commands = []
        for _ in range(2):
            queue = context.Queue()
            worker = context.Process(target=_worker, daemon=True, args=(
                root, queue, results, fetched, busy))
            worker.start()
            self.addCleanup(worker.terminate)
            self.addCleanup(worker.join, 10)
            self.addCleanup(queue.put, None)
            commands.append(queue)
        for _ in commands:
            self.assertEqual('ready', results.get(timeout=30))
        index = sqlite3.connect(os.path.join(root, 'index.sqlite'),
                                isolation_level=None)
        self.addCleanup(index.close)
        outcomes = []
        for _ in range(self.RUNS):
            good = os.urandom(PROCESS_SIZE)
            raw = {'id': str(uuid.uuid4()), 'size': PROCESS_SIZE,
                   'status': 'active', 'os_hash_algo': 'sha512',
                   'os_hash_value': hashlib.sha512(good).hexdigest()}
            sent = os.urandom(PROCESS_SIZE)
            fetched.clear()
            busy.clear()
            for queue in commands:
                queue.put((raw, sent))
            self.assertTrue(fetched.wait(20))
            index.execute('BEGIN IMMEDIATE')
            busy.set()
            time.sleep(BUSY_HOLD)
            index.execute('COMMIT')
            outcomes += [results.get(timeout=20) for _ in commands]
        whole = [o for o in outcomes if o[0] == PROCESS_SIZE]
        self.assertEqual([], whole, '%d wrong images in %d runs'
                         % (len(whole), self.RUNS))
        for received, error in outcomes:
            self.assertIsNotNone(error)
            self.assertTrue(error[0], error[1])


class TestFollowUnverified(testtools.TestCase):
    """A peer's answer follows a partial file until its fill stops."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(30, gentle=True))
        self.cache = cache.Cache(self.useFixture(fixtures.TempDir()).path,
                                 1024 * KiB)
        path = self.cache.data_path(IMAGE, partial=True)
        with open(path, 'wb') as f:
            f.write(b'a' * 100)
        self.fd = self.cache.open_fill_file(IMAGE)
        self.addCleanup(os.close, self.fd)
        self.path = path

    def read(self, pos, end, growing):
        received = []
        stream = following.follow_unverified(self.cache, IMAGE, self.fd, pos,
                                             end, 16, growing)
        try:
            while True:
                received.append(next(stream))
        except StopIteration as stop:
            return b''.join(received), stop.value

    def test_a_complete_file_is_read_as_it_is(self):
        self.assertEqual((b'a' * 90, 100), self.read(10, 100, False))

    def test_no_fill_running_ends_short_at_the_end_of_the_file(self):
        self.assertEqual((b'a' * 100, 100), self.read(0, 200, True))

    def test_a_growing_file_is_followed_while_its_fill_runs(self):
        lock = self.cache.try_fill_lock(IMAGE)
        self.addCleanup(lock.close)

        def grow():
            time.sleep(0.1)
            with open(self.path, 'ab') as f:
                f.write(b'b' * 100)
            lock.unlock()
        writer = threading.Thread(target=grow)
        writer.start()
        self.addCleanup(writer.join)
        self.assertEqual((b'a' * 100 + b'b' * 100, 200),
                         self.read(0, 200, True))
