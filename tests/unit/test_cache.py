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

"""Unit tests of cache.py: layout, index, space, commit, operator actions,
crash recovery, permissions and fork safety, on a real temporary directory."""

import ctypes
import hashlib
import json
import os
import stat
import threading
from unittest import mock

import fixtures
import testtools

from glance_store_remote import cache
from glance_store_remote import cache_index
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

    def test_without_counting_nothing_is_counted_and_hits_still_refresh(self):
        self.put('a', b'x' * KiB)
        quiet = cache.Cache(self.root, 100 * KiB, clock=lambda: self.now[0],
                            counting=False)
        self.now[0] = 5000.0
        fd, lock, _ = quiet.open_complete('a')
        os.close(fd)
        lock.close()
        quiet.count(misses=1, bytes_from_central=10)
        quiet.record_fill('verified', 3.0)
        quiet.save_central('central', False, 1.0)
        self.assertEqual(5000.0, quiet.entry('a').last_access)
        self.assertEqual(dict.fromkeys(cache_index.COUNTERS, 0),
                         quiet.counters())
        self.assertEqual(0, quiet.fill_durations()['verified'].count)
        self.assertIsNone(quiet.load_central('central'))
        self.assertEqual('evicted', quiet.evict('a'))
        self.assertEqual(0, quiet.counters()['evictions'])

    def test_an_uncounted_read_refreshes_the_entry_but_counts_no_hit(self):
        self.put('a', b'x' * KiB)
        self.now[0] = 5000.0
        fd, lock, _ = self.cache.open_complete('a', counted=False)
        os.close(fd)
        lock.close()
        self.assertEqual(5000.0, self.cache.entry('a').last_access)
        self.assertEqual(0, self.cache.counters()['hits'])

    def test_fills_and_central_are_recorded_through_the_cache(self):
        self.cache.record_fill('failed', 2.0)
        self.cache.save_central('central', True, 7.0)
        self.assertEqual(1, self.cache.fill_durations()['failed'].count)
        self.assertEqual(7.0, self.cache.load_central('central').last_success)


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

    def test_fill_locked_says_whether_a_fill_holds_the_lock(self):
        self.assertFalse(self.cache.fill_locked('a'))
        filler = self.cache.lock('a', 'fill')
        self.addCleanup(filler.close)
        self.assertTrue(filler.try_lock())
        self.assertTrue(self.cache.fill_locked('a'))
        filler.unlock()
        self.assertFalse(self.cache.fill_locked('a'))
        # Looking never takes the lock from a filler.
        self.assertTrue(filler.try_lock())

    def test_read_locks_share(self):
        one, two = self.cache.lock('a', 'read'), self.cache.lock('a', 'read')
        self.addCleanup(one.close)
        self.addCleanup(two.close)
        self.assertTrue(one.try_lock(shared=True))
        self.assertTrue(two.try_lock(shared=True))


class TestFillFile(CacheTestCase):
    """The fill-file API: what a fill and its followers ask of the cache
    instead of building paths themselves.
    """

    DATA = b'x' * (10 * KiB)

    def begin(self, lock=None):
        record = record_for('img', self.DATA)
        lock = lock or self.cache.try_fill_lock('img')
        self.addCleanup(lock.close)
        return lock, self.cache.begin_fill(
            lock, cache.expected_from_record(record), record)

    def test_the_fill_lock_is_had_once(self):
        lock = self.cache.try_fill_lock('img')
        self.addCleanup(lock.close)
        self.assertIsNone(self.cache.try_fill_lock('img'))
        self.assertTrue(self.cache.fill_locked('img'))
        lock.unlock()
        self.assertFalse(self.cache.fill_locked('img'))

    def test_begin_records_filling_reserves_and_opens_the_partial(self):
        _, opened = self.begin()
        self.addCleanup(os.close, opened.fd)
        self.assertEqual(cache.FILLING, self.cache.fill_outcome('img'))
        self.assertEqual('partial', self.cache.entry('img').state)
        self.assertEqual(0, opened.start)
        os.write(opened.fd, b'abc')
        fd = self.cache.open_fill_file('img')
        self.addCleanup(os.close, fd)
        self.assertEqual(b'abc', os.pread(fd, 10, 0))
        self.assertEqual(opened.file, (os.fstat(fd).st_dev,
                                       os.fstat(fd).st_ino))

    def test_begin_keeps_the_resumable_prefix_only(self):
        record = record_for('img', self.DATA)
        self.cache.reserve(cache.expected_from_record(record), record)
        with open(self.cache.data_path('img', partial=True), 'wb') as f:
            f.write(self.DATA[:4 * KiB])
        with open(self.cache.meta_path('img', partial=True), 'w') as f:
            json.dump({'record': record, 'durable': 1024,
                       'boot_id': 'another boot'}, f)
        _, opened = self.begin()
        self.addCleanup(os.close, opened.fd)
        self.assertEqual(1024, opened.start)
        self.assertEqual(1024, os.fstat(opened.fd).st_size)
        self.assertEqual(1024, os.lseek(opened.fd, 0, os.SEEK_CUR))

    def test_begin_without_room_opens_nothing(self):
        self.cache = self.make_cache(max_size=KiB)
        _, opened = self.begin()
        self.assertIsNone(opened)
        self.assertIsNone(self.cache.open_fill_file('img'))

    def test_a_committed_file_is_still_the_current_one(self):
        self.assertFalse(self.cache.holds_complete('img'))
        record = self.put('img', self.DATA)
        self.assertTrue(self.cache.holds_complete('img'))
        fd = self.cache.open_fill_file('img')
        self.addCleanup(os.close, fd)
        self.assertTrue(self.cache.is_current_fill_file('img',
                                                        os.fstat(fd)))
        # Discarded and filled anew: the old file is not the current one.
        self.assertEqual('evicted', self.cache.evict('img'))
        self.put('img', self.DATA)
        self.assertFalse(self.cache.is_current_fill_file('img',
                                                         os.fstat(fd)))
        self.assertEqual(record, self.cache.stored_record('img'))

    def test_no_outcome_before_any_fill(self):
        self.assertIsNone(self.cache.fill_outcome('img'))
        self.assertIsNone(self.cache.open_fill_file('img'))


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

    def test_verify_reports_an_md5_entry_it_cannot_hash_and_keeps_it(self):
        # Cached before FIPS was on, with md5 as its only hash.
        record = self.put('old', b'o' * KiB)
        del record['os_hash_algo'], record['os_hash_value']
        with open(self.cache.meta_path('old'), 'w') as f:
            json.dump(record, f)
        self.put('good', b'g' * KiB)
        real_new = hashlib.new

        def fips_new(name, *args, **kwargs):
            if name.lower() == 'md5':
                raise ValueError('[digital envelope routines] unsupported')
            return real_new(name, *args, **kwargs)

        with mock.patch('hashlib.new', fips_new):
            report = dict(self.cache.verify(fix=True))
        self.assertIsNone(report['good'])
        self.assertIsInstance(report['old'], cache.Unchecked)
        self.assertIn('cannot hash md5 here', report['old'])
        self.assertIsNotNone(self.cache.entry('old'))

    def test_verify_without_the_hash_still_catches_a_wrong_size(self):
        record = self.put('old', b'o' * KiB)
        del record['os_hash_algo'], record['os_hash_value']
        with open(self.cache.meta_path('old'), 'w') as f:
            json.dump(record, f)
        with open(self.cache.data_path('old'), 'ab') as f:
            f.write(b'X')
        with mock.patch('hashlib.new', side_effect=ValueError('no md5')):
            report = dict(self.cache.verify())
        self.assertEqual('size %d, expected %d' % (KiB + 1, KiB),
                         report['old'])
        self.assertNotIsInstance(report['old'], cache.Unchecked)

    def test_reconcile_repairs_what_a_crash_leaves(self):
        self.put('lost-data', b'l' * KiB)
        os.unlink(self.cache.data_path('lost-data'))
        record = self.put('unindexed', b'u' * KiB)
        self.cache.index.write(('DELETE FROM entries WHERE image_id = ?',
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


def posix_locks(pid, path):
    """The POSIX (fcntl) locks the kernel says *pid* holds on *path*."""
    inode = os.stat(path).st_ino
    found = []
    with open('/proc/locks') as f:
        for line in f:
            fields = line.split()
            if fields[1] == '->':
                continue  # a waiter, not a holder
            if (fields[1] == 'POSIX' and fields[4] == str(pid) and
                    int(fields[5].rsplit(':', 1)[1]) == inode):
                found.append(fields[3])
    return found


INDEX_FILES = ('index.sqlite', 'index.sqlite-wal', 'index.sqlite-shm')


def descriptors_of(path):
    """How many of this process's file descriptors are open on *path*."""
    return sum(os.path.realpath(os.path.join('/proc/self/fd', fd)) == path
               for fd in os.listdir('/proc/self/fd'))


def c_fork():
    """fork() as uWSGI calls it: from C, with no Python fork hook run."""
    return ctypes.PyDLL(None).fork()


class TestFork(CacheTestCase):
    """A Cache made before a fork (Store.configure in a uWSGI or gunicorn
    --preload master): the child must open its own index connection.
    """

    def in_child(self, fork, probe):
        """Fork with *fork*, run *probe* in the child and return what it
        returned (JSON) or the error it raised.
        """
        read_end, write_end = os.pipe()
        pid = fork()
        if pid == 0:
            try:
                os.close(read_end)
                try:
                    answer = {'value': probe()}
                except BaseException as e:
                    answer = {'error': '%s: %s' % (type(e).__name__, e)}
                os.write(write_end, json.dumps(answer).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, 'rb') as f:
            raw = f.read()
        self.assertEqual(0, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        answer = json.loads(raw)
        self.assertNotIn('error', answer)
        return answer['value']

    def check_child_opens_a_new_connection(self, fork):
        index = os.path.join(self.root, 'index.sqlite')
        self.cache.count(hits=1)
        parent_db = self.cache.index.db()

        def probe():
            db = self.cache.index.db()
            self.cache.count(hits=10)
            return {'same': db is parent_db,
                    'hits': self.cache.counters()['hits'],
                    # A connection of its own holds its own kernel locks;
                    # the parent's, inherited, holds none in the child.
                    'locks': posix_locks(os.getpid(), index)}

        child = self.in_child(fork, probe)
        self.assertFalse(child['same'])
        self.assertEqual(11, child['hits'])
        self.assertIn('READ', child['locks'])
        # The parent keeps its connection, its locks and what both wrote.
        self.assertIs(parent_db, self.cache.index.db())
        self.assertIn('READ', posix_locks(os.getpid(), index))
        self.cache.count(hits=100)
        self.assertEqual(111, self.make_cache().counters()['hits'])
        self.assertEqual([], self.cache.verify())

    def test_child_of_os_fork_opens_its_own_connection(self):
        self.check_child_opens_a_new_connection(os.fork)

    def test_child_of_a_c_fork_opens_its_own_connection(self):
        # uWSGI's workers: no Python fork hook ran, the PID tells.
        self.check_child_opens_a_new_connection(c_fork)

    def test_the_child_closes_what_it_inherited_before_opening_its_own(self):
        # Two threads of the parent have a connection (a descriptor each);
        # the child is left with one descriptor: its own.
        index = os.path.realpath(os.path.join(self.root, 'index.sqlite'))
        thread = threading.Thread(target=self.cache.count,
                                  kwargs={'misses': 1})
        thread.start()
        thread.join()
        self.cache.count(misses=1)
        self.assertEqual(2, descriptors_of(index))
        child = self.in_child(c_fork, lambda: [
            self.cache.count(misses=1), descriptors_of(index),
            posix_locks(os.getpid(), index)])
        self.assertEqual(1, child[1])
        self.assertIn('READ', child[2])
        self.assertEqual(3, self.cache.counters()['misses'])

    def test_nothing_is_closed_until_the_child_needs_the_index(self):
        # A child about to exec must not call into SQLite: even the
        # connection of a thread CPython drops in the child stays open.
        index = os.path.realpath(os.path.join(self.root, 'index.sqlite'))
        ready, done = threading.Event(), threading.Event()

        def hold():
            self.cache.count(misses=1)
            ready.set()
            done.wait(30)

        thread = threading.Thread(target=hold)
        thread.start()
        self.addCleanup(thread.join)
        self.addCleanup(done.set)
        self.assertTrue(ready.wait(30))
        self.cache.count(misses=1)
        child = self.in_child(os.fork, lambda: [
            descriptors_of(index), self.cache.count(misses=1),
            descriptors_of(index)])
        self.assertEqual([2, None, 1], child)
        self.assertEqual(3, self.cache.counters()['misses'])

    def test_a_connection_in_a_transaction_at_fork_is_never_closed(self):
        # Closing it would roll back the parent's transaction in the
        # shared -shm: the child keeps it open and unused.
        db = self.cache.index.db()
        db.execute('BEGIN IMMEDIATE')
        db.execute('INSERT INTO counters (name, value) VALUES (?, ?)',
                   ('hits', 5))
        child = self.in_child(c_fork, lambda: [self.cache.index.db() is db,
                                               db.in_transaction])
        self.assertEqual([False, True], child)
        db.execute('COMMIT')
        self.assertEqual(5, self.make_cache().counters()['hits'])


class TestPermissions(CacheTestCase):
    """Files 0640 and folders 0750 whatever the umask (022 here)."""

    def setUp(self):
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        super().setUp()

    def modes(self, root):
        found = {}
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(folder, name)
                found[os.path.relpath(path, root)] = stat.S_IMODE(
                    os.lstat(path).st_mode)
        return found

    def test_everything_is_created_0640_and_0750(self):
        root = os.path.join(self.root, 'new-cache')
        self.cache = cache.Cache(root, 100 * KiB)
        self.put('done', b'd' * KiB)
        record = record_for('filling', b'f' * KiB)
        self.cache.reserve(cache.expected_from_record(record), record)
        self.cache.lock('filling', 'fill').close()
        self.cache.lock('filling', 'read').close()
        modes = self.modes(root)
        for name in ('layout', 'entries/done.data', 'entries/done.json',
                     'partial/filling.json', 'locks/filling.fill',
                     'locks/filling.read') + INDEX_FILES:
            self.assertEqual(0o640, modes.pop(name), name)
        for name in ('entries', 'partial', 'locks'):
            self.assertEqual(0o750, modes.pop(name), name)
        self.assertEqual(0o750, stat.S_IMODE(os.stat(root).st_mode))
        self.assertEqual({}, {k: v for k, v in modes.items()
                              if v & 0o027})

    def test_files_of_an_earlier_release_are_tightened(self):
        self.cache.count(hits=1)
        for name in ('entries', 'partial', 'locks'):
            os.chmod(os.path.join(self.root, name), 0o755)
        for name in ('layout',) + INDEX_FILES:
            os.chmod(os.path.join(self.root, name), 0o644)
        self.make_cache()
        modes = self.modes(self.root)
        self.assertEqual({'entries': 0o750, 'partial': 0o750,
                          'locks': 0o750, 'layout': 0o640,
                          'index.sqlite': 0o640, 'index.sqlite-wal': 0o640,
                          'index.sqlite-shm': 0o640}, modes)

    def test_owner_may_write(self):
        cache.check_owner(self.root)
        cache.check_owner(os.path.join(self.root, 'not', 'yet'))

    def test_another_user_is_refused_naming_the_owner(self):
        owner = os.stat(self.root).st_uid
        self.useFixture(fixtures.MonkeyPatch('os.geteuid',
                                             lambda: owner + 4242))
        error = self.assertRaises(exceptions.CacheError, cache.check_owner,
                                  self.root)
        self.assertIn('uid %d)' % owner, str(error))
        self.assertIn('uid %d' % (owner + 4242), str(error))
        self.assertIn(self.root, str(error))

    def test_a_cache_dir_not_made_yet_belongs_to_its_parent_owner(self):
        real_stat = os.stat

        def stat_as_glance(path, *args, **kw):
            result = real_stat(path, *args, **kw)
            if path == self.root:
                fields = list(result)
                fields[stat.ST_UID] = 161
                return os.stat_result(fields)
            return result

        with mock.patch('os.stat', stat_as_glance), \
                mock.patch('pwd.getpwuid', side_effect=KeyError):
            error = self.assertRaises(
                exceptions.CacheError, cache.check_owner,
                os.path.join(self.root, 'cache'))
        self.assertIn('its parent %s' % self.root, str(error))
        self.assertIn('belongs to uid 161', str(error))
        self.assertIn('sudo -u #161', str(error))
