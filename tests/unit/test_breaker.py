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
