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

"""Unit tests of cache_index.py: the index of a cache directory on its own
(its fork safety is tested through the cache, tests/unit/test_cache.py
TestFork).
"""

import os
import stat
import threading

import fixtures
import testtools

from glance_store_remote import cache_index


class TestIndex(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.index = cache_index.Index(self.root, 0o640)
        self.index.create_schema()

    def test_the_index_file_is_made_with_the_mode_given(self):
        self.assertEqual(0o640, stat.S_IMODE(os.stat(os.path.join(
            self.root, cache_index.INDEX)).st_mode))

    def test_counters_start_at_zero_and_add_up(self):
        self.assertEqual(dict.fromkeys(cache_index.COUNTERS, 0),
                         self.index.counters())
        self.index.count(hits=2, misses=0)
        self.index.count(hits=1, evictions=3)
        counters = self.index.counters()
        self.assertEqual((3, 0, 3), (counters['hits'], counters['misses'],
                                     counters['evictions']))

    def test_counters_of_older_or_newer_releases_are_not_listed(self):
        self.index.count(hits=1, some_counter_of_another_release=5)
        self.assertEqual(sorted(cache_index.COUNTERS),
                         sorted(self.index.counters()))
        self.assertEqual(1, self.index.counters()['hits'])

    def test_fill_durations_fall_in_their_buckets(self):
        for seconds in (0.5, 1.0, 2.0, 4000.0):
            self.index.record_fill('verified', seconds)
        self.index.record_fill('failed', 30.0)
        durations = self.index.fill_durations()
        self.assertEqual(set(cache_index.FILL_OUTCOMES), set(durations))
        verified = durations['verified']
        self.assertEqual(len(cache_index.FILL_BUCKETS) + 1,
                         len(verified.buckets))
        # 0.5 and 1.0 are within 1 s, 2.0 within 5 s, 4000 above the last.
        self.assertEqual((2, 1), verified.buckets[:2])
        self.assertEqual(1, verified.buckets[-1])
        self.assertEqual(4, verified.count)
        self.assertEqual(4003.5, verified.seconds)
        failed = durations['failed']
        self.assertEqual(1, failed.buckets[cache_index.FILL_BUCKETS.index(30)])
        self.assertEqual((1, 30.0), (failed.count, failed.seconds))

    def test_rows_of_other_bounds_count_in_the_bucket_that_holds_them(self):
        # As an earlier or later release with other bounds wrote them.
        for le in (0.5, 2.0, 7200.0, float('inf')):
            self.index.write((
                'INSERT INTO fill_durations (outcome, le, count, seconds) '
                'VALUES (?, ?, 1, 1.0)', ('verified', le)))
        self.index.record_fill('verified', 0.2)
        verified = self.index.fill_durations()['verified']
        self.assertEqual((2, 1), verified.buckets[:2])
        self.assertEqual(2, verified.buckets[-1])
        self.assertEqual((5, 4.2), (verified.count, verified.seconds))

    def test_no_fill_yet_gives_empty_histograms(self):
        for durations in self.index.fill_durations().values():
            self.assertEqual((0, 0.0), (durations.count, durations.seconds))
            self.assertFalse(any(durations.buckets))

    def test_central_keeps_its_last_outcome_and_both_times(self):
        self.assertIsNone(self.index.load_central('central'))
        self.index.save_central('central', True, 10.0)
        self.assertEqual(cache_index.CentralSeen(True, 10.0, None),
                         self.index.load_central('central'))
        self.index.save_central('central', False, 12.0)
        self.assertEqual(cache_index.CentralSeen(False, 10.0, 12.0),
                         self.index.load_central('central'))
        self.index.save_central('central', True, 15.0)
        self.assertEqual(cache_index.CentralSeen(True, 15.0, 12.0),
                         self.index.load_central('central'))
        self.assertIsNone(self.index.load_central('other'))

    def test_entries_least_recently_used_first(self):
        for image_id, last_access in (('b', 2.0), ('a', 1.0)):
            self.index.write((
                'INSERT INTO entries (image_id, state, size, last_access, '
                'created) VALUES (?, ?, ?, ?, ?)',
                (image_id, 'complete', 10, last_access, last_access)))
        self.assertEqual(['a', 'b'],
                         [e.image_id for e in self.index.entries()])
        self.assertEqual(cache_index.Entry('a', 'complete', 10, 0, 1.0, 1.0),
                         self.index.entry('a'))
        self.assertIsNone(self.index.entry('c'))
        self.assertEqual(20, self.index.used())

    def test_totals_sum_the_entries_in_one_query(self):
        self.assertEqual(cache_index.Totals(0, 0, 0, 0, 0),
                         self.index.totals())
        for image_id, state, pinned in (('a', 'complete', 1),
                                        ('b', 'complete', 0),
                                        ('c', 'partial', 0)):
            self.index.write((
                'INSERT INTO entries (image_id, state, size, pinned, '
                'last_access, created) VALUES (?, ?, 10, ?, 1, 1)',
                (image_id, state, pinned)))
        self.assertEqual(cache_index.Totals(30, 2, 1, 1, 10),
                         self.index.totals())

    def test_breaker_rows_are_kept(self):
        self.assertIsNone(self.index.load_breaker('central'))
        self.index.save_breaker('central', 'open', 3, 5.0)
        self.index.save_breaker('central', 'closed', 0, 6.0)
        self.assertEqual(('closed', 0, 6.0),
                         tuple(self.index.load_breaker('central')))

    def test_each_thread_has_its_own_connection(self):
        mine = self.index.db()
        theirs = []
        worker = threading.Thread(target=lambda: theirs.append(
            self.index.db()))
        worker.start()
        worker.join()
        self.assertIs(mine, self.index.db())
        self.assertIsNot(mine, theirs[0])
