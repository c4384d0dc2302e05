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

"""Unit tests of fill.py: one fill per image, verification before commit,
resume, a fill without a thread, a disk that refuses writes; through the
read path (readthrough.py) with a real cache directory and a scripted
central (tests.unit.test_readthrough).
"""

import errno
import os
import threading

import fixtures

from glance_store_remote import cache_index
from glance_store_remote import delivery
from glance_store_remote import exceptions
from tests.unit import read_fakes as rt

KiB = rt.KiB
IMAGE = rt.IMAGE
FakeCentral = rt.FakeCentral
ReadThroughTestCase = rt.ReadThroughTestCase
record_of = rt.record_of
open_fds = rt.open_fds


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
                             self.SIZE - delivery.HOLD_BACK)
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


class TestNoThreadForTheFill(ReadThroughTestCase):

    def test_the_read_passes_through_and_nothing_is_left_open(self):
        start = threading.Thread.start

        def refuse_fills(thread):
            if thread.name.startswith('fill-'):
                raise RuntimeError("can't start new thread")
            return start(thread)
        # The descriptors of this cache's files (the process's others may
        # come and go with other tests' threads in the same worker).
        before = open_fds(self.cache.root)
        with fixtures.MockPatchObject(threading.Thread, 'start',
                                      refuse_fills):
            self.assertEqual(self.data, self.read_all())
        self.assertEqual(before, open_fds(self.cache.root))
        self.assertEqual([], self.reader._filler.fills())
        self.assertEqual(0, self.central.open_streams)
        self.assertIn('not started', self.log.output)
        # The fill lock was released: the next read fills the cache.
        self.assertEqual(self.data, self.read_all())
        self.assertTrue(self.wait_committed())


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
            'glance_store_remote.fill.os.write', full_disk))
        self.assertEqual(self.data, self.read_all())
        self.assertEqual(self.data, self.read_all())
        self.assertEqual(1, self.log.output.count('refused a write'))
        self.assertIsNone(self.cache.entry(IMAGE))
        self.assertFalse(os.path.exists(self.cache.data_path(IMAGE, True)))


class TestFillDurations(ReadThroughTestCase):
    """Each fill that ends records its duration once: 'verified' when it
    committed its entry, else 'failed'.
    """

    STEP = 2.0

    def setUp(self):
        super().setUp()
        # Every reading of the fills' clock is STEP seconds after the last.
        now = [0.0]

        def clock():
            now[0] += self.STEP
            return now[0]
        self.reader._filler.clock = clock

    def durations(self):
        return self.cache.fill_durations()

    def bucket(self, seconds):
        """The histogram row of one fill of *seconds*."""
        return tuple(int(index == next(
            (i for i, bound in enumerate(cache_index.FILL_BUCKETS)
             if seconds <= bound), len(cache_index.FILL_BUCKETS)))
            for index in range(len(cache_index.FILL_BUCKETS) + 1))

    def test_a_committed_fill_is_verified_with_its_duration(self):
        self.assertEqual(self.data, self.read_all())
        self.assertTrue(self.wait_committed())
        durations = self.durations()
        self.assertEqual(
            cache_index.FillDurations(self.bucket(self.STEP), 1, self.STEP),
            durations['verified'])
        self.assertEqual(0, durations['failed'].count)

    def test_a_fill_that_fails_verification_is_failed(self):
        lying = record_of(self.data, os_hash_value='0' * 128)
        self.assertRaises(exceptions.CacheIntegrityError,
                          lambda: b''.join(self.read(record=lying)))
        self.reader.wait_for_fills(10)
        durations = self.durations()
        self.assertEqual((0, 1), (durations['verified'].count,
                                  durations['failed'].count))

    def test_an_interrupted_fill_is_failed_its_resume_counts_alone(self):
        self.central.fail_at = 120 * KiB
        self.first_call_only()
        self.assertRaises(exceptions.UpstreamError, self.read_all)
        self.reader.wait_for_fills(10)
        self.assertEqual(1, self.durations()['failed'].count)
        del self.central.open_data
        self.central.fail_at = None
        self.assertEqual(self.data, self.read_all())
        self.assertTrue(self.wait_committed())
        durations = self.durations()
        self.assertEqual(1, durations['failed'].count)
        # From the resume's own start, not the first fill's.
        self.assertEqual(
            cache_index.FillDurations(self.bucket(self.STEP), 1, self.STEP),
            durations['verified'])

    def test_a_fill_without_a_thread_is_failed(self):
        start = threading.Thread.start

        def refuse_fills(thread):
            if thread.name.startswith('fill-'):
                raise RuntimeError("can't start new thread")
            return start(thread)
        with fixtures.MockPatchObject(threading.Thread, 'start',
                                      refuse_fills):
            self.assertEqual(self.data, self.read_all())
        self.assertEqual((0, 1), (self.durations()['verified'].count,
                                  self.durations()['failed'].count))

    def test_a_long_fill_lands_in_the_last_bucket(self):
        self.STEP = 2 * cache_index.FILL_BUCKETS[-1]
        self.read_all()
        self.assertTrue(self.wait_committed())
        verified = self.durations()['verified']
        self.assertEqual((1,), verified.buckets[-1:])
        self.assertEqual(self.STEP, verified.seconds)

    def test_metrics_off_records_no_duration(self):
        self.cache.counting = False
        self.read_all()
        self.assertTrue(self.wait_committed())
        self.assertEqual(0, sum(d.count for d in self.durations().values()))
