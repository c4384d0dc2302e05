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

"""Functional tests of the read-through cache (readthrough.py, cache.py)
against the REAL lab: central and edge Glance on loopback, with
tests.harness.faults.FaultyCentral between them where central must lie, crawl
or stall at an exact byte.
"""

import concurrent.futures
import os
import signal
import time

from tests.functional import base

MiB = base.MiB


class TestHitsAndMisses(base.CacheTestCase):

    def test_miss_fills_then_hits_never_contact_central(self):
        central, data, edge = self.linked_image()
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual([None], self.image_gets(central.id))
        self.assertIn(central.id + '.data', self.cache_files())
        self.assertEqual([], self.cached(central.id, 'partial'))

    def test_ranges_come_from_the_cache_once_filled(self):
        central, data, edge = self.linked_image()
        self.download(edge.id, central)
        for spec, expected in (('bytes=10-19', data[10:20]),
                               ('bytes=-7', data[-7:]),
                               ('bytes=%d-' % (len(data) - 3), data[-3:])):
            response, received, error = self.fetch(edge.id, Range=spec)
            self.assertIsNone(error)
            self.assertEqual(206, response.status_code)
            self.assertEqual(expected, received)
        self.assertEqual([None], self.image_gets(central.id))

    def test_range_before_any_fill_is_served_and_warms_the_cache(self):
        central, data, edge = self.linked_image()
        response, received, _ = self.fetch(edge.id, Range='bytes=100-199')
        self.assertEqual(206, response.status_code)
        self.assertEqual(data[100:200], received)
        deadline = time.monotonic() + 30
        while (central.id + '.data' not in self.cache_files() and
               time.monotonic() < deadline):
            time.sleep(0.1)
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual({'bytes=100-199', None},
                         set(self.image_gets(central.id)))


class TestSingleFlight(base.CacheTestCase):

    LAB = {'proxy': True, 'edge_workers': 3}

    def test_concurrent_misses_across_workers_make_one_fetch(self):
        central, data, edge = self.linked_image(size=32 * MiB)
        before = self.cache_stats()
        faults = self.lab.proxy.arm(stall_at=16 * MiB)
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            downloads = [pool.submit(self.fetch, edge.id) for _ in range(10)]
            self.assertTrue(faults.stalled.wait(60))
            time.sleep(1)  # let every request reach a worker
            faults.release()
            results = [d.result() for d in downloads]
        for response, received, error in results:
            self.assertIsNone(error)
            self.assertEqual(data, received)
        self.assertEqual([None], self.image_gets(central.id))
        stats = self.cache_stats()
        self.assertEqual(1, stats['misses'] - before['misses'])
        self.assertEqual(9, stats['coalesced'] + stats['hits'] -
                         before['coalesced'] - before['hits'])

    def test_followers_stream_before_the_fill_ends(self):
        central, data, edge = self.linked_image(size=32 * MiB)
        faults = self.lab.proxy.arm(stall_at=16 * MiB)
        responses = [self.edge_session().get(
            '%s/v2/images/%s/file' % (self.lab.edge.url, edge.id),
            stream=True, timeout=120) for _ in range(4)]
        self.assertTrue(faults.stalled.wait(60))
        # Central is stalled half way: every client already has bytes.
        firsts = [next(r.iter_content(MiB)) for r in responses]
        self.assertEqual([data[:MiB]] * 4, firsts)
        faults.release()
        for response in responses:
            rest = b''.join(response.iter_content(MiB))
            self.assertEqual(data[MiB:], rest)

    def test_first_client_leaving_does_not_stop_the_fill(self):
        central, data, edge = self.linked_image(size=32 * MiB)
        faults = self.lab.proxy.arm(stall_at=8 * MiB)
        url = '%s/v2/images/%s/file' % (self.lab.edge.url, edge.id)
        first = self.edge_session().get(url, stream=True, timeout=120)
        self.assertTrue(faults.stalled.wait(60))
        second = self.edge_session().get(url, stream=True, timeout=120)
        next(first.iter_content(MiB))
        first.close()
        faults.release()
        self.assertEqual(data, b''.join(second.iter_content(MiB)))
        # The last byte leaves once the data is verified; the commit follows.
        self.wait_fills_done()
        self.assertIn(central.id + '.data', self.cache_files())
        self.assertEqual([None], self.image_gets(central.id))


class TestFailures(base.CacheTestCase):

    def test_flipped_byte_is_never_committed_and_the_client_sees_it(self):
        central, data, edge = self.linked_image()
        failures = self.cache_stats()['verification_failures']
        self.lab.proxy.arm(flip_at=len(data) // 2)
        response, received, error = self.fetch(edge.id)
        self.assertEqual(200, response.status_code)
        self.assert_failed_visibly(data, received, error)
        self.assertLess(len(received), len(data))
        self.assertEqual([], self.cached(central.id))
        self.assertEqual([], self.cached(central.id, 'partial'))
        self.assertEqual(failures + 1,
                         self.cache_stats()['verification_failures'])
        self.assertIn('does not match its record', self.lab.edge.log_text())
        self.assertEqual(data, self.download(edge.id, central))
        self.assertIn(central.id + '.data', self.cache_files())

    def test_truncated_stream_is_resumed_for_the_client_in_flight(self):
        central, data, edge = self.linked_image()
        resumes = self.cache_stats()['resumes']
        cut = 10 * MiB + 123
        self.lab.proxy.arm(cut_at=cut)
        # The follower takes the interrupted fill over and resumes it with
        # a Range request: the client never notices.
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual([central.id + '.data'],
                         self.cached(central.id)[:1])
        self.assertEqual([None, 'bytes=%d-%d' % (cut, len(data) - 1)],
                         self.image_gets(central.id))
        self.assertEqual(resumes + 1, self.cache_stats()['resumes'])

    def test_central_dying_mid_fill_resumes_with_the_missing_part(self):
        central, data, edge = self.linked_image(size=48 * MiB)
        _, received, error = self.break_fill_at(
            central.id, edge.id, 24 * MiB, self.lab.central.stop)
        self.assert_failed_visibly(data, received, error)
        self.start_central()
        self.assertEqual(data, self.download(edge.id, central))
        resumed = [e for e in self.central_requests('GET', central.id)
                   if e.path.endswith('/file')]
        self.assertEqual(1, len(resumed))
        start = int(resumed[0].range.split('=')[1].split('-')[0])
        self.assertGreaterEqual(start, 24 * MiB)
        # Central sent the missing part only (its log counts body bytes).
        self.assertEqual(len(data) - start, int(resumed[0].sent))


class TestKilledWorker(base.CacheTestCase):

    def test_worker_killed_mid_fill_serves_nothing_partial(self):
        central, data, edge = self.linked_image(size=32 * MiB)

        def kill_workers():
            for pid in self.lab.edge.worker_pids():
                os.kill(pid, signal.SIGKILL)
        _, received, error = self.break_fill_at(
            central.id, edge.id, 12 * MiB, kill_workers)
        self.assert_failed_visibly(data, received, error)
        self.assertEqual([], self.cached(central.id))
        self.lab.edge.wait_ready()
        self.assertEqual(data, self.download(edge.id, central))
        gets = self.image_gets(central.id)
        self.assertEqual(2, len(gets))
        self.assertEqual('bytes=%d-%d' % (12 * MiB, len(data) - 1), gets[1])


class TestOffline(base.CacheTestCase):

    LAB = {'proxy': True,
           'edge_options': {'central': {
               'remote_glance_breaker_threshold': 2,
               'remote_glance_breaker_reset': 300}}}

    def test_cached_images_serve_and_uncached_fail_fast(self):
        central, data, edge = self.linked_image()
        other_central, _, other_edge = self.linked_image(size=MiB)
        self.download(edge.id, central)
        self.lab.central.stop()
        self.assertEqual(data, self.download(edge.id, central))
        response, received, _ = self.fetch(edge.id, Range='bytes=5-9')
        self.assertEqual((206, data[5:10]), (response.status_code, received))
        for _ in range(3):
            response, _, _ = self.fetch(other_edge.id)
            self.assertEqual(503, response.status_code)
        stats = self.cache_stats()
        self.assertEqual('open', stats['breaker'])
        self.assertIn('circuit breaker is open', self.lab.edge.log_text())

    def test_central_back_is_noticed_long_before_the_reset(self):
        # The breaker would stay open 300 s; the edge's cheap probe (once a
        # second per worker) notices central is back, and the next request
        # after it is served.
        central, data, edge = self.linked_image(size=MiB)
        self.lab.central.stop()
        for _ in range(3):
            response, _, _ = self.fetch(edge.id)
            self.assertEqual(503, response.status_code)
        self.assertEqual('open', self.cache_stats()['breaker'])
        self.lab.central.start()   # the breakers are left as they are
        deadline = time.monotonic() + 30
        while True:
            response, received, _ = self.fetch(edge.id)
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            self.assertEqual(503, response.status_code)
            time.sleep(0.2)
        self.assertEqual((200, data), (response.status_code, received))
        self.assertEqual('closed', self.cache_stats()['breaker'])
        self.assertIn('central answers again', self.lab.edge.log_text())


class TestSpace(base.CacheTestCase):

    LAB = {'proxy': True, 'cache_max_size': 3 * 8 * MiB}

    def used_bytes(self):
        folder = os.path.join(self.lab.cache_dir, 'entries')
        return sum(os.path.getsize(os.path.join(folder, name))
                   for name in os.listdir(folder) if name.endswith('.data'))

    def test_lru_eviction_spares_pinned_entries_and_keeps_the_cap(self):
        evictions = self.cache_stats()['evictions']
        images = [self.linked_image(size=8 * MiB) for _ in range(5)]
        ids = [central.id for central, _, _ in images]
        for central, data, edge in images[:3]:
            self.assertEqual(data, self.download(edge.id, central))
        result = self.cli('cache', 'pin', ids[0])
        self.assertEqual(0, result.returncode, result.stderr)
        for central, data, edge in images[3:]:
            self.assertEqual(data, self.download(edge.id, central))
            self.assertLessEqual(self.used_bytes(), 3 * 8 * MiB)
        cached = {name.split('.')[0] for name in self.cache_files()}
        self.assertEqual({ids[0], ids[3], ids[4]}, cached)
        self.assertEqual(evictions + 2, self.cache_stats()['evictions'])

    def test_image_larger_than_the_cap_streams_uncached(self):
        central, data, edge = self.linked_image(size=25 * MiB)
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual([], self.cached(central.id))
        self.assertEqual([], self.cached(central.id, 'partial'))


class TestRelease(base.CacheTestCase):

    def test_delete_releases_the_entry_once_no_edge_image_uses_it(self):
        central, data, first = self.linked_image(size=4 * MiB)
        second = self.link_with_patch(central.id)
        self.download(first.id, central)
        self.edge_glance().images.delete(first.id)
        self.assertIn(central.id + '.data', self.cache_files())
        self.assertEqual(data, self.download(second.id, central))
        self.edge_glance().images.delete(second.id)
        self.assertNotIn(central.id + '.data', self.cache_files())


class TestCountersAndCli(base.CacheTestCase):

    def test_counters_survive_an_edge_restart(self):
        central, data, edge = self.linked_image(size=4 * MiB)
        self.download(edge.id, central)
        self.download(edge.id, central)
        before = self.cache_stats()
        self.lab.edge.restart()
        after = self.cache_stats()
        self.assertEqual(before, after)
        self.assertGreaterEqual(after['hits'], 1)
        self.assertGreaterEqual(after['misses'], 1)
        self.assertEqual(after['bytes_from_central'], len(data))

    def test_list_verify_and_evict(self):
        central, data, edge = self.linked_image(size=2 * MiB)
        self.download(edge.id, central)
        listed = self.cli('--json', 'cache', 'list')
        self.assertEqual(0, listed.returncode, listed.stderr)
        self.assertIn('"state": "complete"', listed.stdout)
        self.assertEqual(0, self.cli('cache', 'verify').returncode)
        path = os.path.join(self.lab.cache_dir, 'entries',
                            central.id + '.data')
        with open(path, 'r+b') as f:
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 1]))
        bad = self.cli('cache', 'verify', '--fix')
        self.assertEqual(1, bad.returncode)
        self.assertIn('mismatch (removed)', bad.stdout)
        self.assertNotIn(central.id + '.data', self.cache_files())
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual(0, self.cli('cache', 'evict', central.id).returncode)
        self.assertNotIn(central.id + '.data', self.cache_files())


class TestDiskFull(base.TmpfsCacheTestCase):
    """The cache on a tmpfs far smaller than the image."""

    TMPFS_SIZE = '6m'

    def test_full_disk_still_serves_every_byte_and_logs_once(self):
        central, data, edge = self.linked_image(size=16 * MiB)
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual(1, self.lab.edge.log_text().count(
            'refused a write; images stream from central uncached'))
        self.assertEqual([], self.cached(central.id))
        self.assertTrue(self.lab.edge.running)
