"""Unit tests of cache.py: layout, index, space, commit, operator actions and
crash recovery, on a real temporary directory."""

import hashlib
import json
import os

import fixtures
import testtools

from glance_store_remote import cache
from glance_store_remote import exceptions

KiB = 1024


def record_for(image_id, data):
    return {'id': image_id, 'size': len(data), 'status': 'active',
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest(),
            'checksum': hashlib.md5(data).hexdigest()}


class CacheTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.now = [1000.0]
        self.cache = self.make_cache()

    def make_cache(self, max_size=100 * KiB):
        return cache.Cache(self.root, max_size, clock=lambda: self.now[0])

    def tick(self):
        self.now[0] += 1

    def put(self, image_id, data, pinned=False):
        """Fill and commit an entry the way a fill does."""
        record = record_for(image_id, data)
        self.assertTrue(self.cache.reserve(
            cache.expected_from_record(record), record))
        with open(self.cache.data_path(image_id, partial=True), 'wb') as f:
            f.write(data)
        self.cache.commit(image_id, record)
        if pinned:
            self.cache.set_pinned(image_id, True)
        self.tick()
        return record


class TestLayout(CacheTestCase):

    def test_creates_its_folders_and_layout_file(self):
        for sub in ('entries', 'partial', 'locks'):
            self.assertTrue(os.path.isdir(os.path.join(self.root, sub)))
        with open(os.path.join(self.root, 'layout')) as f:
            self.assertEqual(cache.LAYOUT_TEXT, f.read())

    def test_another_layout_is_refused(self):
        with open(os.path.join(self.root, 'layout'), 'w') as f:
            f.write('glance-store-remote cache layout 99\n')
        error = self.assertRaises(exceptions.CacheError, self.make_cache)
        self.assertIn('layout 99', str(error))

    def test_a_file_as_directory_is_a_cache_error(self):
        path = os.path.join(self.root, 'not-a-dir')
        open(path, 'w').close()
        self.assertRaises(exceptions.CacheError, cache.Cache, path, KiB)


class TestReserveAndEvict(CacheTestCase):

    def test_reservation_counts_the_whole_image(self):
        record = record_for('a', b'x' * 30 * KiB)
        self.assertTrue(self.cache.reserve(
            cache.expected_from_record(record), record))
        self.assertEqual(30 * KiB, self.cache.used())
        self.assertEqual('partial', self.cache.entry('a').state)
        self.assertEqual(record, self.cache.stored_record('a'))

    def test_image_larger_than_the_cap_is_not_reserved(self):
        record = record_for('big', b'x' * 101 * KiB)
        self.assertFalse(self.cache.reserve(
            cache.expected_from_record(record), record))
        self.assertIsNone(self.cache.entry('big'))

    def test_least_recently_used_unpinned_idle_entry_goes_first(self):
        self.put('old-pinned', b'p' * 30 * KiB, pinned=True)
        self.put('old', b'o' * 30 * KiB)
        self.put('recent', b'r' * 30 * KiB)
        reading = self.cache.open_complete('recent')
        self.addCleanup(reading[1].close)
        self.addCleanup(os.close, reading[0])
        self.put('new', b'n' * 30 * KiB)
        ids = {e.image_id for e in self.cache.entries()}
        self.assertEqual({'old-pinned', 'recent', 'new'}, ids)
        self.assertLessEqual(self.cache.used(), self.cache.max_size)
        self.assertEqual(1, self.cache.counters()['evictions'])
        self.assertFalse(os.path.exists(self.cache.data_path('old')))

    def test_no_room_when_everything_is_pinned_or_read(self):
        self.put('pinned', b'p' * 50 * KiB, pinned=True)
        self.put('read', b'r' * 40 * KiB)
        reading = self.cache.open_complete('read')
        self.addCleanup(reading[1].close)
        self.addCleanup(os.close, reading[0])
        record = record_for('new', b'n' * 30 * KiB)
        self.assertFalse(self.cache.reserve(
            cache.expected_from_record(record), record))
        self.assertEqual(90 * KiB, self.cache.used())

    def test_evict_answers(self):
        self.put('a', b'a' * KiB, pinned=True)
        self.assertEqual('absent', self.cache.evict('zzz'))
        self.assertEqual('pinned', self.cache.evict('a'))
        reading = self.cache.open_complete('a')
        self.assertEqual('busy', self.cache.evict('a', force_pinned=True))
        os.close(reading[0])
        reading[1].close()
        self.assertEqual('evicted', self.cache.evict('a', force_pinned=True))
        self.assertIsNone(self.cache.entry('a'))

    def test_evicting_twice_from_two_processes_is_harmless(self):
        self.put('a', b'a' * KiB)
        os.unlink(self.cache.data_path('a'))
        self.assertEqual('evicted', self.cache.evict('a'))


class TestCommitAndRead(CacheTestCase):

    def test_committed_entry_opens_with_its_record(self):
        record = self.put('a', b'hello' * KiB)
        fd, lock, kept = self.cache.open_complete('a')
        self.addCleanup(lock.close)
        self.addCleanup(os.close, fd)
        self.assertEqual(record, kept)
        self.assertEqual(b'hello', os.pread(fd, 5, 0))
        self.assertEqual([], os.listdir(os.path.join(self.root, 'partial')))

    def test_entry_whose_size_disagrees_is_a_miss(self):
        self.put('a', b'hello' * KiB)
        with open(self.cache.data_path('a'), 'ab') as f:
            f.write(b'!')
        self.assertIsNone(self.cache.open_complete('a'))

    def test_missing_entry_is_a_miss(self):
        self.assertIsNone(self.cache.open_complete('nothing'))

    def test_discard_partial_frees_the_reservation(self):
        record = record_for('a', b'x' * KiB)
        self.cache.reserve(cache.expected_from_record(record), record)
        open(self.cache.data_path('a', partial=True), 'wb').close()
        self.cache.discard_partial('a')
        self.assertEqual(0, self.cache.used())
        self.assertFalse(os.path.exists(self.cache.data_path('a', True)))

    def test_resumable_length_trusts_this_boot_only(self):
        record = record_for('a', b'x' * 10 * KiB)
        self.cache.reserve(cache.expected_from_record(record), record)
        with open(self.cache.data_path('a', partial=True), 'wb') as f:
            f.write(b'x' * 6 * KiB)
        self.cache.write_partial_meta('a', record, durable=4 * KiB)
        self.assertEqual(6 * KiB, self.cache.resumable_length('a'))
        self.useFixture(fixtures.MockPatch(
            'glance_store_remote.cache.boot_id', return_value='other'))
        self.assertEqual(4 * KiB, self.cache.resumable_length('a'))

    def test_counters_persist_across_instances(self):
        self.cache.count(hits=2, bytes_from_cache=10)
        self.cache.count(hits=1)
        counters = self.make_cache().counters()
        self.assertEqual(3, counters['hits'])
        self.assertEqual(10, counters['bytes_from_cache'])
        self.assertEqual(0, counters['misses'])


class TestLocks(CacheTestCase):

    def test_fill_lock_excludes_within_one_process(self):
        first = self.cache.lock('a', 'fill')
        second = self.cache.lock('a', 'fill')
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        self.assertTrue(first.try_lock())
        self.assertFalse(second.try_lock())
        first.unlock()
        self.assertTrue(second.try_lock())

    def test_outcome_is_readable_by_another_opener(self):
        writer = self.cache.lock('a', 'fill')
        writer.write_outcome(cache.VERIFY_FAILED)
        writer.close()
        reader = self.cache.lock('a', 'fill')
        self.addCleanup(reader.close)
        self.assertEqual(cache.VERIFY_FAILED, reader.read_outcome())

    def test_read_locks_share(self):
        one, two = self.cache.lock('a', 'read'), self.cache.lock('a', 'read')
        self.addCleanup(one.close)
        self.addCleanup(two.close)
        self.assertTrue(one.try_lock(shared=True))
        self.assertTrue(two.try_lock(shared=True))


class TestVerifyAndReconcile(CacheTestCase):

    def test_verify_reports_and_fixes_a_corrupted_entry(self):
        self.put('good', b'g' * KiB)
        self.put('bad', b'b' * KiB)
        with open(self.cache.data_path('bad'), 'r+b') as f:
            f.write(b'X')
        report = dict(self.cache.verify())
        self.assertIsNone(report['good'])
        self.assertEqual('sha512 mismatch', report['bad'])
        self.assertIsNotNone(self.cache.entry('bad'))
        self.cache.verify(fix=True)
        self.assertIsNone(self.cache.entry('bad'))
        self.assertIsNotNone(self.cache.entry('good'))

    def test_reconcile_repairs_what_a_crash_leaves(self):
        self.put('lost-data', b'l' * KiB)
        os.unlink(self.cache.data_path('lost-data'))
        record = self.put('unindexed', b'u' * KiB)
        self.cache._write(('DELETE FROM entries WHERE image_id = ?',
                           ('unindexed',)))
        with open(self.cache.data_path('orphan', partial=True), 'wb') as f:
            f.write(b'o')
        with open(self.cache.data_path('x') + '.1.tmp', 'wb') as f:
            f.write(b't')
        changes = self.cache.reconcile()
        self.assertEqual(4, len(changes), changes)
        self.assertIsNone(self.cache.entry('lost-data'))
        self.assertEqual('complete', self.cache.entry('unindexed').state)
        self.assertEqual(record, self.cache.stored_record('unindexed'))
        self.assertFalse(os.path.exists(
            self.cache.data_path('orphan', partial=True)))
        self.assertEqual([], self.cache.reconcile())

    def test_reconcile_leaves_a_fill_in_progress_alone(self):
        record = record_for('busy', b'b' * KiB)
        self.cache.reserve(cache.expected_from_record(record), record)
        fill = self.cache.lock('busy', 'fill')
        self.addCleanup(fill.close)
        self.assertTrue(fill.try_lock())
        self.assertEqual([], self.cache.reconcile())
        self.assertEqual('partial', self.cache.entry('busy').state)

    def test_stats_add_sizes_to_counters(self):
        self.put('a', b'a' * KiB, pinned=True)
        stats = self.cache.stats()
        self.assertEqual(KiB, stats['current_size'])
        self.assertEqual(1, stats['complete_entries'])
        self.assertEqual(1, stats['pinned_entries'])
        self.assertEqual(100 * KiB, stats['max_size'])


class TestExpected(testtools.TestCase):

    def test_md5_checksum_only_where_there_is_no_os_hash(self):
        expected = cache.expected_from_record(
            {'id': 'a', 'size': 1, 'checksum': 'c' * 32,
             'os_hash_algo': None, 'os_hash_value': None})
        self.assertEqual(('md5', 'c' * 32), expected[2:])
        self.assertEqual('sha512', cache.expected_from_record(
            record_for('a', b'x')).algo)

    def test_meta_files_are_json(self):
        root = self.useFixture(fixtures.TempDir()).path
        store = cache.Cache(root, KiB)
        store.write_partial_meta('a', {'id': 'a'}, durable=3)
        with open(store.meta_path('a', partial=True)) as f:
            self.assertEqual(3, json.load(f)['durable'])
