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

"""Unit tests of streams.py: the iterators handed to Glance release what
their read opened, whether or not Glance ever starts them.

Glance closes an image iterator before its first chunk on error paths (a
copy to a failing store), or drops it inside a wrapper that never closes it
(glance.common.utils.cooperative_iter).
"""

import gc
import hashlib
import os
import threading
import time

import fixtures
import testtools

from glance_store_remote import exceptions
from glance_store_remote import streams
from tests.unit import base


def open_fds():
    """Open descriptors once fill threads have ended and garbage is
    collected.
    """
    for thread in threading.enumerate():
        if thread.name.startswith(('fill-', 'hash-')):
            thread.join(10)
    gc.collect()
    return len(os.listdir('/proc/self/fd'))


class TestUnstartedStoreReads(base.StoreTestCase):
    """Through the store, as Glance calls it, with a cache."""

    def setUp(self):
        super().setUp()
        self.store = self.make_cached_store()
        data = os.urandom(64 * 1024)
        self.body = self.serve_record(
            size=len(data), os_hash_value=hashlib.sha512(data).hexdigest())
        self.serve_data(self.body['id'], data)
        self.loc = self.location(self.body['id'])
        chunks, _ = self.store.get(self.loc)
        self.assertEqual(data, b''.join(chunks))
        deadline = time.monotonic() + 10
        while (self.store._cache.entry(self.body['id']).state != 'complete' and
               time.monotonic() < deadline):
            time.sleep(0.01)
        self.store._readthrough.wait_for_fills(10)

    def test_a_thousand_closed_and_a_thousand_dropped_leak_nothing(self):
        before = open_fds()
        for _ in range(1000):
            chunks, _ = self.store.get(self.loc)
            chunks.close()
        for _ in range(1000):
            self.store.get(self.loc)
        # A leak is two descriptors per read: thousands here. Two of slack
        # for threads of other tests.
        self.assertLessEqual(open_fds(), before + 2)
        self.assertEqual('evicted', self.store._cache.evict(self.body['id']))


class TestChunks(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())
        self.released = []
        self.ran_finally = []

    def stream(self, chunks=(b'a', b'b'), fail=None):
        def generate():
            try:
                for chunk in chunks:
                    yield chunk
                if fail is not None:
                    raise fail
            finally:
                self.ran_finally.append(True)
        return streams.Chunks(generate(),
                              lambda: self.released.append('file'),
                              lambda: self.released.append('lock'),
                              name='image x')

    def test_closed_before_the_first_chunk_releases_everything_once(self):
        chunks = self.stream()
        chunks.close()
        chunks.close()
        self.assertEqual(['file', 'lock'], self.released)
        self.assertEqual([], list(chunks))

    def test_dropped_before_the_first_chunk_releases_everything(self):
        self.stream()
        gc.collect()
        self.assertEqual(['file', 'lock'], self.released)

    def test_the_last_chunk_releases_at_once(self):
        chunks = self.stream()
        self.assertEqual(b'ab', b''.join(chunks))
        self.assertEqual(['file', 'lock'], self.released)
        chunks.close()
        self.assertEqual(['file', 'lock'], self.released)

    def test_closed_part_way_runs_the_generators_finally_first(self):
        chunks = self.stream()
        next(chunks)
        self.released.clear()
        order = []
        self.ran_finally = order
        self.released = order
        chunks.close()
        self.assertEqual([True, 'file', 'lock'], order)

    def test_an_ioerror_part_way_passes_unchanged_and_releases(self):
        error = ConnectionResetError('reset')
        chunks = self.stream(fail=error)
        raised = self.assertRaises(IOError, list, chunks)
        self.assertIs(error, raised)
        self.assertEqual(['file', 'lock'], self.released)

    def test_any_other_error_part_way_becomes_an_ioerror(self):
        chunks = self.stream(fail=KeyError('bug'))
        raised = self.assertRaises(exceptions.StreamError, list, chunks)
        self.assertIsInstance(raised, IOError)
        self.assertIsInstance(raised.__cause__, KeyError)
        self.assertIn('image x', str(raised))
        self.assertEqual(['file', 'lock'], self.released)

    def test_a_failing_release_step_does_not_stop_the_others(self):
        chunks = streams.Chunks(iter(()), lambda: 1 / 0,
                                lambda: self.released.append('lock'))
        chunks.close()
        self.assertEqual(['lock'], self.released)
        self.assertIn('releasing the stream failed', self.log.output)

    def test_empty_yields_nothing(self):
        self.assertEqual([], list(streams.empty()))
