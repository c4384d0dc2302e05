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

"""Unit tests of wan.py: the slots of reads from central (the node's flock
files, and the site's locks through tooz's file driver standing in for
etcd, which the functional site tier runs for real), the gate in front of
central, and the pacing (with a fake clock: no test asserts wall time).
"""

import os
import threading
import time
from unittest import mock

import fixtures
from oslo_config import cfg
import testtools

from glance_store_remote import coordination
from glance_store_remote import exceptions
from glance_store_remote import opts
from glance_store_remote import wan
from tests.unit import read_fakes as rt

KiB = 1024
SECRET = 'a-site-secret-0123456789'


class SlotsTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        self.log = self.useFixture(fixtures.FakeLogger(level='INFO'))
        self.lock_dir = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MockPatchObject(wan, 'POLL_INTERVAL', 0.01))


class TestNodeSlots(SlotsTestCase):

    def test_at_most_count_reads_hold_a_slot(self):
        slots = wan.Slots('central', 2, self.lock_dir)
        first, second = slots.acquire(0), slots.acquire(0)
        self.assertIsNotNone(first)
        self.assertIsNotNone(second)
        self.assertIsNone(slots.acquire(0))
        # Another Slots of the node (another worker, the CLI) sees them.
        self.assertIsNone(wan.Slots('central', 2, self.lock_dir).acquire(0))
        first()
        third = slots.acquire(0)
        self.assertIsNotNone(third)
        second()
        third()
        self.assertEqual(['wan-slot-0', 'wan-slot-1'],
                         sorted(os.listdir(self.lock_dir)))

    def in_thread(self, call):
        result = []
        thread = threading.Thread(target=lambda: result.append(call()))
        thread.start()
        thread.join(30)
        return result[0]

    def test_a_waiting_read_takes_the_slot_freed_meanwhile(self):
        slots = wan.Slots('central', 1, self.lock_dir)
        held = self.in_thread(lambda: slots.acquire(0))
        timer = threading.Timer(0.1, held)
        timer.start()
        self.addCleanup(timer.cancel)
        waits = []
        release = slots.acquire(30, on_wait=lambda: waits.append(1))
        self.assertIsNotNone(release)
        self.assertTrue(waits)
        release()

    def test_a_read_that_does_not_wait_takes_a_slot_only_if_free(self):
        # A range read holding a slot starts a background fill: with one
        # slot the fill is not started, at once (no hold-and-wait).
        central = rt.FakeCentral(b'x' * KiB)
        record = rt.record_of(central.data)
        gate = wan.Gate(central, wan.Slots('central', 1, self.lock_dir), 0,
                        wait=30)
        held = gate.open_data(record)
        started = time.monotonic()
        self.assertRaises(exceptions.UpstreamBusy, gate.open_data, record,
                          wait=False)
        self.assertLess(time.monotonic() - started, 5)
        held.close()
        # With two, it takes the second.
        gate = wan.Gate(central, wan.Slots('central', 2, self.lock_dir), 0,
                        wait=30)
        first = gate.open_data(record)
        second = gate.open_data(record, wait=False)
        self.assertEqual(central.data, b''.join(second))
        first.close()

    def test_waiting_reads_are_served_in_order(self):
        slots = wan.Slots('central', 1, self.lock_dir)
        held = self.in_thread(lambda: slots.acquire(0))
        order = []

        def wait(name):
            release = slots.acquire(30)
            order.append(name)
            release()
        threads = []
        for name in ('a', 'b', 'c'):
            threads.append(threading.Thread(target=wait, args=(name,)))
            threads[-1].start()
            # Each is in line before the next comes.
            while len(slots._queue) < len(threads):
                time.sleep(0.001)
        held()
        for thread in threads:
            thread.join(30)
        self.assertEqual(['a', 'b', 'c'], order)

    def test_unusable_slot_files_do_not_fail_reads(self):
        # A 'folder' that is a file (root ignores permissions).
        not_a_folder = os.path.join(self.lock_dir, 'file')
        open(not_a_folder, 'w').close()
        slots = wan.Slots('central', 1, not_a_folder)
        self.assertIsNotNone(slots.acquire(0))
        self.assertIsNotNone(slots.acquire(0))
        self.assertIn('cannot be used', self.log.output)

    def test_a_slot_of_a_process_that_died_is_free(self):
        slots = wan.Slots('central', 1, self.lock_dir)
        pid = os.fork()
        if pid == 0:  # the child takes the slot and dies holding it
            slots.acquire(0)
            os._exit(0)
        os.waitpid(pid, 0)
        release = slots.acquire(0)
        self.assertIsNotNone(release)
        release()


class TestSiteSlots(SlotsTestCase):

    def site(self, peer_url, secret=SECRET):
        site = coordination.Site('central', self.url, peer_url,
                                 secret=secret)
        self.addCleanup(site.stop)
        return site

    def setUp(self):
        super().setUp()
        self.url = 'file://' + self.useFixture(fixtures.TempDir()).path

    def test_the_cap_is_the_sites(self):
        one = wan.Slots('central', 1, self.lock_dir, self.site('http://a'))
        other_dir = self.useFixture(fixtures.TempDir()).path
        two = wan.Slots('central', 1, other_dir, self.site('http://b'))
        held = one.acquire(0)
        self.assertIsNotNone(held)
        # Another node, with free slots of its own, waits for the site's.
        self.assertIsNone(two.acquire(0))
        held()
        release = two.acquire(0)
        self.assertIsNotNone(release)
        release()

    def test_a_coordinator_down_means_the_nodes_own_slots(self):
        site = self.site('http://a')
        site.try_lock = mock.Mock(side_effect=coordination.Unavailable('x'))
        slots = wan.Slots('central', 1, self.lock_dir, site)
        held = slots.acquire(0)
        self.assertIsNotNone(held)
        self.assertIsNone(slots.acquire(0))
        held()

    def slots_on(self, site):
        clock = FakeClock()
        slots = wan.Slots('central', 1, self.lock_dir, site,
                          clock=clock.monotonic)
        return slots, clock

    def test_a_slot_held_by_no_node_of_the_site_is_broken(self):
        # Someone who can write to the coordinator holds the only slot (a
        # member the site's key did not sign).
        intruder = self.site('http://evil', secret='not-the-site-key-01')
        held = intruder.try_lock('wan-slot-0', claim=True)
        site = self.site('http://a')
        # etcd's break deletes the lock's key; the file driver cannot.
        site.break_lock = mock.Mock(side_effect=lambda name: (
            held.release() or True))
        slots, clock = self.slots_on(site)
        self.assertIsNone(slots.acquire(0))
        clock.now += wan.SLOT_UNCLAIMED_GRACE - 1
        self.assertIsNone(slots.acquire(0))
        site.break_lock.assert_not_called()
        clock.now += wan.SLOT_CHECK_INTERVAL
        self.assertIsNone(slots.acquire(0))
        site.break_lock.assert_called_once_with('wan-slot-0')
        self.assertIn("WAN slot 0 was held for 19 s or more by no node of "
                      "the site: broken", self.log.output)
        release = slots.acquire(0)
        self.assertIsNotNone(release)
        release()

    def test_a_slot_a_node_holds_and_renews_is_honoured(self):
        other = self.site('http://b')
        held = other.try_lock('wan-slot-0', claim=True)
        self.addCleanup(held.release)
        site = self.site('http://a')
        site.break_lock = mock.Mock(return_value=True)
        slots, clock = self.slots_on(site)
        for _ in range(10):
            self.assertIsNone(slots.acquire(0))
            clock.now += wan.SLOT_UNCLAIMED_GRACE
        site.break_lock.assert_not_called()
        # A claim not renewed for longer than the bound is not honoured.
        later = time.time() + wan.SLOT_CLAIM_MAX_AGE + 1
        with mock.patch.object(coordination.time, 'time',
                               return_value=later):
            for _ in range(2):
                self.assertIsNone(slots.acquire(0))
                clock.now += wan.SLOT_UNCLAIMED_GRACE + 1
            self.assertIsNone(slots.acquire(0))
        site.break_lock.assert_called_once_with('wan-slot-0')
        self.assertIn('stopped renewing its claim', self.log.output)


class TestGate(SlotsTestCase):

    def setUp(self):
        super().setUp()
        self.data = os.urandom(100 * KiB)
        self.record = rt.record_of(self.data)
        self.central = rt.FakeCentral(self.data)

    def gate(self, count=1, bandwidth=0, wait=0):
        slots = wan.Slots('central', count, self.lock_dir) if count else None
        return wan.Gate(self.central, slots, bandwidth, wait)

    def test_a_read_holds_its_slot_until_its_stream_closes(self):
        gate = self.gate()
        stream = gate.open_data(self.record)
        e = self.assertRaises(exceptions.UpstreamBusy,
                              gate.open_data, self.record)
        self.assertIn('already reads 1 images from central at once',
                      str(e))
        self.assertEqual(self.data, b''.join(stream))
        stream = gate.open_data(self.record, 10, 20)
        self.assertEqual(self.data[10:30], b''.join(stream))
        self.assertEqual(0, self.central.open_streams)
        # Closed before its first chunk: freed too.
        gate.open_data(self.record).close()
        gate.open_data(self.record).close()

    def test_an_unread_stream_does_not_hold_its_slot(self):
        self.useFixture(fixtures.MockPatchObject(wan, 'SLOT_IDLE', 0.1))
        self.useFixture(fixtures.MockPatchObject(wan, 'IDLE_CHECK', 0.02))
        gate = self.gate()
        slow = gate.open_data(self.record)
        received = next(slow)
        # Its client stops reading: another read gets the slot.
        time.sleep(0.5)
        other = gate.open_data(self.record, 0, 10)
        self.assertIn('its reader is idle; its WAN slot is given back',
                      self.log.output)
        # The slow client reads on while the slot is taken: its stream
        # ends (short) rather than read outside the cap.
        self.assertRaises(IOError, next, slow)
        self.assertEqual(self.data[:10], b''.join(other))
        # Read on once a slot is free: the whole image.
        again = gate.open_data(self.record)
        received = next(again)
        time.sleep(0.5)
        received += b''.join(again)
        self.assertEqual(self.data, received)
        self.assertEqual(0, self.central.open_streams)
        gate.open_data(self.record).close()

    def test_central_refusing_frees_the_slot(self):
        gate = self.gate()
        self.central.down = True
        self.assertRaises(exceptions.UpstreamUnavailable, gate.open_data,
                          self.record)
        self.central.down = False
        gate.open_data(self.record).close()

    def test_no_read_from_byte_zero_frees_the_slot(self):
        gate = self.gate()
        self.central.serves_ranges = False
        self.assertIsNone(gate.open_data(self.record, 10, 20,
                                         skip_to_offset=False))
        gate.open_data(self.record).close()

    def test_the_gate_names_centrals_backend(self):
        self.assertEqual('central', self.gate().backend)

    def test_each_slot_reads_its_share_of_the_bandwidth(self):
        clock = FakeClock()
        self.useFixture(fixtures.MockPatchObject(wan, 'time', clock))
        # 2 slots share 20 KiB/s: 10 KiB/s each; 100 KiB take 10 s.
        stream = self.gate(count=2, bandwidth=20 * KiB).open_data(
            self.record)
        self.assertEqual(self.data, b''.join(stream))
        self.assertAlmostEqual(10.0, clock.now, places=3)

    def test_a_slow_central_is_not_made_up_for_by_a_burst(self):
        clock = FakeClock()
        self.useFixture(fixtures.MockPatchObject(wan, 'time', clock))
        stream = self.gate(count=0, bandwidth=80 * KiB).open_data(
            self.record)
        received = next(stream)
        clock.now += 5  # central stalled for 5 s
        received += b''.join(stream)
        self.assertEqual(self.data, received)
        # The rest (92 KiB) at 80 KiB/s after the stall, not at once.
        self.assertAlmostEqual(5 + 92 / 80, clock.now, places=3)


class FakeClock:
    """Stands in for the time module in wan.py."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class TestFromConf(testtools.TestCase):

    def group(self, **values):
        conf = cfg.ConfigOpts()
        conf.register_opts(opts.store_opts, group='central')
        conf([])
        for name, value in values.items():
            conf.set_override(name, value, group='central')
        return conf.central

    def test_without_limits_the_gate_passes_centrals_streams_on(self):
        central = rt.FakeCentral(b'y' * KiB)
        gate = wan.gate_from_conf(central, self.group(), '/nowhere')
        self.assertEqual(central.data, b''.join(gate.open_data(
            rt.record_of(central.data))))
        self.assertEqual(0, central.open_streams)

    def test_max_fills_needs_a_lock_folder(self):
        self.assertRaises(ValueError, wan.gate_from_conf,
                          rt.FakeCentral(b''),
                          self.group(remote_glance_max_fills=2), None)

    def test_bandwidth_alone_needs_no_slots(self):
        gate = wan.gate_from_conf(
            rt.FakeCentral(b''),
            self.group(remote_glance_max_bandwidth=1000000), None)
        self.assertIsInstance(gate, wan.Gate)

    def test_a_share_too_small_for_a_chunk_is_refused(self):
        # 4 MiB chunks at 100 KB/s a slot: 42 s a chunk.
        e = self.assertRaises(
            ValueError, wan.gate_from_conf, rt.FakeCentral(b''),
            self.group(remote_glance_max_bandwidth=400000,
                       remote_glance_max_fills=4), '/tmp')
        self.assertIn('lower remote_glance_chunk_size', str(e))
