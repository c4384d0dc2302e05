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

"""Unit tests of breaker.py, on a fake clock."""

import fixtures
import testtools

from glance_store_remote import breaker
from glance_store_remote import cache
from glance_store_remote import cache_index


class TestBreaker(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.now = [100.0]
        self.breaker = self.make(threshold=3, reset_after=30)

    def make(self, state=None, **kw):
        return breaker.Breaker(state=state, clock=lambda: self.now[0], **kw)

    def test_opens_after_threshold_consecutive_failures(self):
        self.assertFalse(self.breaker.failed())
        self.assertFalse(self.breaker.failed())
        self.assertTrue(self.breaker.allow())
        self.assertTrue(self.breaker.failed())
        self.assertFalse(self.breaker.allow())
        self.assertEqual((breaker.OPEN, 3, 30.0), self.breaker.state())

    def test_a_success_resets_the_count(self):
        self.breaker.failed()
        self.breaker.failed()
        self.breaker.succeeded()
        self.breaker.failed()
        self.assertTrue(self.breaker.allow())

    def test_one_probe_after_the_reset_time_then_closed_on_success(self):
        for _ in range(3):
            self.breaker.failed()
        self.now[0] += 31
        self.assertEqual(breaker.HALF_OPEN, self.breaker.state()[0])
        self.assertTrue(self.breaker.allow())     # the probe
        self.assertFalse(self.breaker.allow())    # the others wait
        self.breaker.succeeded()
        self.assertTrue(self.breaker.allow())
        self.assertEqual(breaker.CLOSED, self.breaker.state()[0])

    def test_a_failed_probe_opens_it_again(self):
        for _ in range(3):
            self.breaker.failed()
        self.now[0] += 31
        self.assertTrue(self.breaker.allow())
        self.breaker.failed()
        self.assertFalse(self.breaker.allow())

    def test_cheap_probes_are_spaced_by_their_interval(self):
        probing = self.make(threshold=3, reset_after=30, probe_interval=1)
        self.assertTrue(probing.cheap_probe_due())
        self.assertFalse(probing.cheap_probe_due())
        self.now[0] += 0.5
        self.assertFalse(probing.cheap_probe_due())
        self.now[0] += 0.6
        self.assertTrue(probing.cheap_probe_due())

    def test_no_cheap_probe_when_disabled(self):
        self.assertFalse(self.breaker.cheap_probe_due())

    def test_threshold_zero_never_opens(self):
        never = self.make(threshold=0, reset_after=30)
        for _ in range(10):
            self.assertFalse(never.failed())
        self.assertTrue(never.allow())

    def test_index_state_is_shared_by_workers_and_survives_restarts(self):
        root = self.useFixture(fixtures.TempDir()).path
        worker_one = self.make(
            state=breaker.IndexState(cache.Cache(root, 1024), 'central'),
            threshold=2, reset_after=30)
        worker_two = self.make(
            state=breaker.IndexState(cache.Cache(root, 1024), 'central'),
            threshold=2, reset_after=30)
        worker_one.failed()
        worker_two.failed()
        self.assertFalse(worker_one.allow())
        restarted = self.make(
            state=breaker.IndexState(cache.Cache(root, 1024), 'central'),
            threshold=2, reset_after=30)
        self.assertEqual(breaker.OPEN, restarted.state()[0])


class TestCentralSeen(testtools.TestCase):
    """Central's last outcome, recorded in the index for the metrics."""

    def setUp(self):
        super().setUp()
        self.now = [1000.0]
        self.root = self.useFixture(fixtures.TempDir()).path
        self.cache = cache.Cache(self.root, 1024)
        self.writes = []
        save = self.cache.save_central

        def counted(*args):
            self.writes.append(args)
            save(*args)
        self.cache.save_central = counted

    def make(self, threshold=3, the_cache=None):
        return breaker.Breaker(
            threshold, 30, clock=lambda: self.now[0],
            state=breaker.IndexState(the_cache or self.cache, 'central'))

    def test_an_outcome_is_recorded_with_its_time(self):
        worker = self.make()
        worker.succeeded()
        self.assertEqual(cache_index.CentralSeen(True, 1000.0, None),
                         self.cache.load_central('central'))
        self.now[0] = 1005.0
        worker.failed()
        self.assertEqual(cache_index.CentralSeen(False, 1000.0, 1005.0),
                         self.cache.load_central('central'))

    def test_the_same_outcome_is_written_at_most_once_a_second(self):
        worker = self.make()
        for _ in range(100):
            worker.succeeded()
            self.now[0] += 0.001
        self.assertEqual(1, len(self.writes))
        self.now[0] = 1001.0
        worker.succeeded()
        self.assertEqual(2, len(self.writes))
        self.assertEqual(1001.0, self.cache.load_central('central')
                         .last_success)
        for _ in range(10):
            worker.failed()
        self.assertEqual(3, len(self.writes))

    def test_a_change_is_written_at_once(self):
        worker = self.make(threshold=0)
        worker.succeeded()
        worker.failed()
        worker.succeeded()
        self.assertEqual([True, False, True],
                         [up for _, up, _ in self.writes])
        self.assertTrue(self.cache.load_central('central').up)

    def test_a_clock_stepped_back_writes_at_once(self):
        worker = self.make()
        worker.succeeded()
        self.now[0] -= 3600
        worker.succeeded()
        self.assertEqual(2, len(self.writes))

    def test_another_worker_sees_it(self):
        self.make().failed()
        other = cache.Cache(self.root, 1024)
        self.assertFalse(other.load_central('central').up)

    def test_metrics_off_writes_nothing(self):
        quiet = cache.Cache(self.root, 1024, counting=False)
        self.make(the_cache=quiet).succeeded()
        self.assertIsNone(quiet.load_central('central'))
