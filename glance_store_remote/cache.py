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

"""The edge's local copy of central images: on-disk layout, index and space.

The layout below is a contract between glance-api workers, the
``glance-remote`` command and later releases; changing it needs a new
``LAYOUT_VERSION`` and a migration::

    <cache_dir>/
      layout                 "glance-store-remote cache layout 1"
      index.sqlite           entries, counters, breaker state (WAL mode)
      entries/<id>.data      a complete image, verified against central's
                             size and hash before it was renamed here
      entries/<id>.json      central's image record, kept with the data
      partial/<id>.data      a fill in progress or interrupted: a prefix
      partial/<id>.json      {"record": ..., "durable": n, "boot_id": ...}
      locks/<id>.fill        flock held by the one filler of the image; its
                             first bytes hold the last fill's outcome
      locks/<id>.read        flock shared by readers, taken exclusively by
                             eviction so an image being read stays

Sizes: the cap (``max_size``) counts image bytes. A partial entry reserves
its whole image size from the moment its fill starts, so the sum of
reservations, and with it the bytes on disk, never exceeds the cap.

Many glance-api worker processes share one directory: the index is SQLite
(one short transaction per event, never per chunk) and exclusion between
processes is flock on the files under ``locks/``.

Index connections are per thread and per process: a Cache made before a
fork (``Store.configure`` runs in uWSGI's master unless ``lazy-apps``, and
in gunicorn's with ``--preload``) opens new connections in each child, as
SQLite requires (see cache_index.py, which holds the index apart from the
files).

Permissions: everything is created ``0640`` (files) or ``0750`` (folders),
whatever the umask, for the user glance-api runs as; ``glance-remote``
refuses to write to a cache directory another user owns (check_owner).

A fill's file is the cache's too: a fill begins with begin_fill, and its
followers find its file, tell it from a later fill's and read its verdict
with open_fill_file, is_current_fill_file and fill_outcome; no other module
builds a path under the cache directory (the fill is fill.py, following it
is following.py).

No Glance import here: the cache knows images by ID, size and hash.
"""

import collections
import errno
import fcntl
import hashlib
import json
import logging
import os
import pwd
import sqlite3
import time

from glance_store_remote import cache_fs
from glance_store_remote import cache_index
from glance_store_remote import exceptions

LOG = logging.getLogger(__name__)

LAYOUT_VERSION = 1
LAYOUT_TEXT = 'glance-store-remote cache layout %d\n' % LAYOUT_VERSION


# A fill's outcome, kept in the first bytes of its lock file so that it can
# be read by another process after the filler died or gave up, and written
# in place, without new blocks, on a full disk.
OUTCOME_BYTES = 128
FILLING, VERIFIED, COMMITTED = 'filling', 'verified', 'committed'
UPSTREAM_FAILED, WRITE_FAILED, VERIFY_FAILED = 'upstream', 'write', 'verify'


Expected = collections.namedtuple('Expected', 'image_id size algo digest')
Expected.__doc__ = """What a fill must produce: central's size and hash.

``algo`` is central's os_hash_algo (md5 for the ``checksum`` where central
has no os_hash)."""

FILE_MODE = 0o640  # data, records, locks, layout and the index files
DIR_MODE = 0o750


def file_identity(stat):
    """The identity of a file, from its os.stat or os.fstat: what tells a
    fill's file from a later fill's (FillFile.file).
    """
    return stat.st_dev, stat.st_ino


FillFile = collections.namedtuple('FillFile', 'fd start file')
FillFile.__doc__ = """The partial file a fill writes (Cache.begin_fill).

``fd`` is open for writing at ``start``, the prefix it keeps; ``file`` is
its file_identity: a follower trusts a verdict only for that file."""


class Unchecked(str):
    """A problem ``verify`` reports about an entry it cannot check here (its
    hash is one this Python refuses): not a sign of corruption, and never
    removed by ``fix``.
    """


def expected_from_record(record):
    """The Expected of a central image record (a dict)."""
    if record.get('os_hash_algo') and record.get('os_hash_value'):
        algo, digest = record['os_hash_algo'], record['os_hash_value']
    else:
        algo, digest = 'md5', record.get('checksum')
    return Expected(record['id'], record['size'], algo, digest)


def boot_id():
    """This boot's ID: page-cache contents survive a killed process, not a
    reboot.
    """
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            return f.read().strip()
    except OSError:
        return None


def _write_atomically(path, data):
    tmp = '%s.%d.tmp' % (path, os.getpid())
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                           FILE_MODE), 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _unlink(path):
    """Remove *path*; another process having removed it first is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _tighten(path, mode):
    """Take from *path* the permissions *mode* does not grant (files and
    folders made world-readable by an earlier release); only our own files.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    current = st.st_mode & 0o777
    if current & ~mode and st.st_uid == os.geteuid():
        os.chmod(path, current & mode)


def _user(uid):
    """(text naming the user, name for ``sudo -u``)."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return 'uid %d' % uid, '#%d' % uid
    return '%s (uid %d)' % (name, uid), name


def check_owner(root):
    """Refuse to write to a cache directory another user owns.

    For ``glance-remote``, run by an operator who may be root while
    glance-api runs as ``glance``: a file it created (a lock, a partial, a
    record) would belong to the operator, mode 0640, and glance-api could
    not open it. The owner is the directory's or, when it
    does not exist yet, its nearest existing parent's (where glance-api
    would create it).

    Refusing rather than fixing the ownership: only root can chown; the
    run would have to chown every file made meanwhile, including those
    SQLite and the fill threads create, racing the glance-api workers; a
    refused run leaves nothing behind, and the fix is ``sudo -u OWNER``.

    :raises CacheError: the directory belongs to another user (named)
    """
    path = os.path.abspath(root)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    owner, me = os.stat(path).st_uid, os.geteuid()
    if owner != me:
        where = root if path == os.path.abspath(root) else (
            '%s (not created yet; its parent %s)' % (root, path))
        raise exceptions.CacheError(
            'cache directory %s belongs to %s but this command runs as %s: '
            'glance-api could not open the files it would make; run it as '
            'the owner (sudo -u %s glance-remote ...)'
            % (where, _user(owner)[0], _user(me)[0], _user(owner)[1]))


class FileLock:
    """An flock on one file; exclusion is per open file, so two threads of
    one process exclude each other as two processes do.
    """

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)

    def try_lock(self, shared=False):
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def unlock(self):
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # The outcome record of a fill lock.

    def read_outcome(self):
        try:
            raw = os.pread(self.fd, OUTCOME_BYTES, 0)
            return json.loads(raw.decode() or '{}').get('outcome')
        except (OSError, ValueError):
            return None

    def write_outcome(self, outcome):
        """Record *outcome*; best effort (False when the disk refused)."""
        text = json.dumps({'outcome': outcome}).ljust(OUTCOME_BYTES - 1)
        try:
            os.pwrite(self.fd, (text + '\n').encode(), 0)
            return True
        except OSError:
            return False


class Cache:
    """One backend's cache directory.

    Thread safe; each thread gets its own SQLite connection.

    :param root: the cache directory (created if missing)
    :param max_size: the cap, in bytes
    :param counting: keep the counters, the fills' durations and central's
        last outcome in the index (the node's metrics); False writes none
        of them (``remote_glance_metrics = False``)
    :raises CacheError: the directory or its index cannot be used
    """

    def __init__(self, root, max_size, clock=time.time, counting=True):
        self.root = root
        self.max_size = max_size
        self.counting = counting
        self._clock = clock
        self.index = cache_index.Index(root, FILE_MODE)
        try:
            cache_fs.check(root)  # before creating anything: see cache_fs
            os.makedirs(root, DIR_MODE, exist_ok=True)
            for sub in ('entries', 'partial', 'locks'):
                os.makedirs(os.path.join(root, sub), DIR_MODE, exist_ok=True)
                _tighten(os.path.join(root, sub), DIR_MODE)
            for name in cache_index.INDEX_FILES + ('layout',):
                _tighten(os.path.join(root, name), FILE_MODE)
            self._check_layout()
            self.index.create_schema()
        except (OSError, sqlite3.Error, exceptions.CacheError) as e:
            raise exceptions.CacheError(
                'cache directory %s cannot be used: %s' % (root, e))

    # -- paths and layout --------------------------------------------------

    def data_path(self, image_id, partial=False):
        return os.path.join(self.root, 'partial' if partial else 'entries',
                            image_id + '.data')

    def meta_path(self, image_id, partial=False):
        return os.path.join(self.root, 'partial' if partial else 'entries',
                            image_id + '.json')

    @property
    def lock_dir(self):
        """The folder of the cache's lock files."""
        return os.path.join(self.root, 'locks')

    @property
    def wan_slot_dir(self):
        """The folder of the node's WAN slot files (wan.Slots): beside the
        cache's locks, which every worker process of the node shares.
        """
        return self.lock_dir

    @property
    def peer_nonce_dir(self):
        """The folder of the nonces the node's peer server has seen
        (peers.signing.Nonces), shared by its worker processes.
        """
        return os.path.join(self.lock_dir, 'peer-nonces')

    def lock(self, image_id, kind):
        """The ``fill`` or ``read`` FileLock of an image (caller closes).

        :raises CacheError: the lock file cannot be created or opened
        """
        try:
            return FileLock(os.path.join(self.root, 'locks',
                                         '%s.%s' % (image_id, kind)))
        except OSError as e:
            raise exceptions.CacheError('cache lock of %s: %s'
                                        % (image_id, e))

    def fill_locked(self, image_id):
        """Whether a process holds the image's fill lock (a fill runs).

        Cost: one open and one non-blocking flock.

        :raises CacheError: the lock file cannot be created or opened
        """
        lock = self.lock(image_id, 'fill')
        try:
            if lock.try_lock():
                lock.unlock()
                return False
            return True
        finally:
            lock.close()

    def _check_layout(self):
        path = os.path.join(self.root, 'layout')
        try:
            with open(path) as f:
                found = f.read()
        except FileNotFoundError:
            _write_atomically(path, LAYOUT_TEXT.encode())
            return
        if found != LAYOUT_TEXT:
            raise exceptions.CacheError(
                'cache directory %s has layout %r; this release reads %r'
                % (self.root, found.strip(), LAYOUT_TEXT.strip()))

    # -- index (cache_index.py) -------------------------------------------

    def count(self, **increments):
        """Add to counters; a failure only loses the count."""
        if self.counting:
            self.index.count(**increments)

    def counters(self):
        """Every counter of cache_index.COUNTERS, by name."""
        return self.index.counters()

    def record_fill(self, outcome, seconds):
        """Count a fill that ended (cache_index.FILL_OUTCOMES) after
        *seconds*; a failure only loses the record.
        """
        if self.counting:
            self.index.record_fill(outcome, seconds)

    def fill_durations(self):
        """{outcome: cache_index.FillDurations}."""
        return self.index.fill_durations()

    def save_central(self, name, up, when):
        """Record the outcome of a request to central *name*."""
        if self.counting:
            self.index.save_central(name, up, when)

    def load_central(self, name):
        """cache_index.CentralSeen of central *name*, or None."""
        return self.index.load_central(name)

    def entry(self, image_id):
        """The image's cache_index.Entry, or None."""
        return self.index.entry(image_id)

    def entries(self):
        """Every entry, least recently used first."""
        return self.index.entries()

    def used(self):
        """Bytes reserved by all entries (complete and partial)."""
        return self.index.used()

    def totals(self):
        """cache_index.Totals of the entries, in one query."""
        return self.index.totals()

    def load_breaker(self, name):
        """The breaker's row: (state, failures, opened_at), or None."""
        return self.index.load_breaker(name)

    def save_breaker(self, name, state, failures, opened_at):
        self.index.save_breaker(name, state, failures, opened_at)

    # -- complete entries (the fast path) ------------------------------------

    def open_complete(self, image_id, hit=True, counted=True):
        """Open a complete entry for reading: (fd, read lock, record) or
        None; counts the hit and refreshes the entry's last access, unless
        *hit* is False (a peer only asking whether the entry is here).
        With *counted* False the last access is refreshed but no hit is
        counted: a peer reading the entry for its own fill or read is no
        client request of this node (that node counts it).

        Fast path: one open, one shared flock and one index transaction
        (last access and the hit counter). An unreadable entry counts as a
        miss, not an error. The caller closes the fd and the lock.
        """
        try:
            fd = os.open(self.data_path(image_id), os.O_RDONLY)
        except OSError:
            return None
        lock = None
        try:
            lock = self.lock(image_id, 'read')
            if not lock.try_lock(shared=True):
                raise OSError(errno.EBUSY, 'entry is being evicted')
            record = self.stored_record(image_id, partial=False)
            if record is None or os.fstat(fd).st_size != record['size']:
                raise OSError(errno.EIO, 'entry and its record disagree')
        except (OSError, exceptions.CacheError) as e:
            os.close(fd)
            if lock is not None:
                lock.close()
            LOG.debug('cache entry %s unreadable, treated as a miss: %s',
                      image_id, e)
            return None
        if not hit:
            return fd, lock, record
        try:
            self.index.write(('UPDATE entries SET last_access = ? '
                              'WHERE image_id = ?', (self._clock(), image_id)),
                             *cache_index.Index.bump(
                                 hits=int(self.counting and counted)))
        except exceptions.CacheError as e:
            LOG.debug('hit on %s not recorded: %s', image_id, e)
        return fd, lock, record

    def stored_record(self, image_id, partial=None):
        """Central's record kept with a complete (or, with partial=None, a
        complete or partial) entry; None when there is none.
        """
        places = (False, True) if partial is None else (partial,)
        for place in places:
            try:
                with open(self.meta_path(image_id, place)) as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                continue
            return meta['record'] if place else meta
        return None

    # -- fills ---------------------------------------------------------------

    def reserve(self, expected, record):
        """Reserve space for a fill of *expected*, evicting least recently
        used, unpinned entries that nobody reads; write the partial's
        metadata.

        :returns: True if reserved (or already reserved), False if the image
            cannot fit: it is then streamed uncached
        :raises CacheError: the index or the disk refused
        """
        image_id, size = expected.image_id, expected.size
        if size > self.max_size:
            return False
        db = self.index.db()
        evicted = []
        try:
            db.execute('BEGIN IMMEDIATE')
            try:
                if db.execute('SELECT 1 FROM entries WHERE image_id = ?',
                              (image_id,)).fetchone():
                    db.execute('COMMIT')
                    return True
                free = self.max_size - db.execute(
                    'SELECT COALESCE(SUM(size), 0) FROM entries'
                ).fetchone()[0]
                if free < size:
                    candidates = db.execute(
                        'SELECT image_id, size, state FROM entries '
                        'WHERE pinned = 0 ORDER BY last_access').fetchall()
                    for victim, victim_size, state in candidates:
                        if free >= size:
                            break
                        if self._remove_if_idle(victim, state):
                            db.execute('DELETE FROM entries WHERE '
                                       'image_id = ?', (victim,))
                            free += victim_size
                            evicted.append(victim)
                if free < size:
                    db.execute('ROLLBACK')
                    return False
                now = self._clock()
                db.execute('INSERT INTO entries (image_id, state, size, '
                           'last_access, created) VALUES (?, ?, ?, ?, ?)',
                           (image_id, 'partial', size, now, now))
                bumps = cache_index.Index.bump(
                    evictions=len(evicted) * self.counting)
                for sql, args in bumps:
                    db.execute(sql, args)
                db.execute('COMMIT')
            except BaseException:
                if db.in_transaction:
                    db.execute('ROLLBACK')
                raise
        except sqlite3.Error as e:
            raise exceptions.CacheError('cache index of %s: %s'
                                        % (self.root, e))
        for victim in evicted:
            LOG.info('cache: evicted image %s to make room for %s',
                     victim, image_id)
        self.write_partial_meta(expected.image_id, record, durable=0)
        return True

    def _remove_if_idle(self, image_id, state):
        """Remove the files of an entry that no one fills or reads."""
        fill, read = self.lock(image_id, 'fill'), self.lock(image_id, 'read')
        try:
            if not (fill.try_lock() and read.try_lock()):
                return False
            partial = state == 'partial'
            _unlink(self.data_path(image_id, partial))
            _unlink(self.meta_path(image_id, partial))
            return True
        finally:
            fill.close()
            read.close()

    def write_partial_meta(self, image_id, record, durable):
        try:
            _write_atomically(self.meta_path(image_id, partial=True),
                              json.dumps({'record': record,
                                          'durable': durable,
                                          'boot_id': boot_id()}).encode())
        except OSError as e:
            raise exceptions.CacheError('cannot write partial metadata of %s:'
                                        ' %s' % (image_id, e))

    def resumable_length(self, image_id):
        """How much of the partial data file a new fill may keep.

        The whole file when it was written during this boot (a killed
        process loses nothing from the page cache), else only what was
        fsync'ed (``durable``).
        """
        try:
            size = os.stat(self.data_path(image_id, partial=True)).st_size
            with open(self.meta_path(image_id, partial=True)) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return 0
        if meta.get('boot_id') and meta.get('boot_id') == boot_id():
            return size
        return min(size, meta.get('durable', 0))

    def commit(self, image_id, record):
        """Make a verified partial a complete entry: record first, then the
        atomic rename of the data, then the directory and the index.

        :raises CacheError: the disk refused; the partial stays
        """
        try:
            _write_atomically(self.meta_path(image_id),
                              json.dumps(record).encode())
            # Whoever wrote the data, the entry is not world-readable.
            _tighten(self.data_path(image_id, partial=True), FILE_MODE)
            os.rename(self.data_path(image_id, partial=True),
                      self.data_path(image_id))
            dir_fd = os.open(os.path.join(self.root, 'entries'),
                             os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            raise exceptions.CacheError('cannot commit image %s: %s'
                                        % (image_id, e))
        _unlink(self.meta_path(image_id, partial=True))
        self.index.write(('UPDATE entries SET state = ?, last_access = ? '
                          'WHERE image_id = ?',
                          ('complete', self._clock(), image_id)))

    def discard_partial(self, image_id):
        """Drop a partial entry and its reservation (verification failed or
        the disk refused). Never raises: what the disk or the index will not
        let go of is left for reconcile.
        """
        for path in (self.data_path(image_id, partial=True),
                     self.meta_path(image_id, partial=True)):
            try:
                _unlink(path)
            except OSError as e:
                LOG.warning('cache: cannot remove %s: %s', path, e)
        try:
            self.index.write(('DELETE FROM entries WHERE image_id = ? AND '
                              'state = ?', (image_id, 'partial')))
        except exceptions.CacheError as e:
            LOG.debug('reservation of %s not released: %s', image_id, e)

    # -- a fill's file -----------------------------------------------------
    #
    # The one place that knows where a fill writes and how its followers
    # (in this process, in another worker, in a peer's answer) find that
    # file, tell it from a later fill's and read its verdict: the fill
    # (fill.py) and its followers (following.py) never build a path.

    def holds_complete(self, image_id):
        """Whether the image's complete entry is on disk. Cost: one stat."""
        return os.path.exists(self.data_path(image_id))

    def try_fill_lock(self, image_id):
        """The image's fill lock, held by the caller, or None when another
        fill holds it. The holder releases it (unlock and close).

        :raises CacheError: the lock file cannot be created or opened
        """
        lock = self.lock(image_id, 'fill')
        if lock.try_lock():
            return lock
        lock.close()
        return None

    def begin_fill(self, lock, expected, record):
        """Begin a fill of *expected* under its fill *lock*, held: record
        that a fill runs (the lock's outcome speaks of this fill from here
        on), reserve the image's room (reserve), and open the partial file
        cut back to the prefix a fill may keep (resumable_length), its
        position at the end of that prefix.

        :param record: central's record (a dict), kept with the partial
        :returns: a FillFile (the caller closes its fd), or None when the
            image cannot fit: it is then streamed uncached
        :raises CacheError: the index refused
        :raises OSError: the disk refused (nothing is left open)
        """
        image_id = expected.image_id
        lock.write_outcome(FILLING)
        if not self.reserve(expected, record):
            return None
        start = self.resumable_length(image_id)
        fd = os.open(self.data_path(image_id, partial=True),
                     os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            stat = os.fstat(fd)
            os.ftruncate(fd, start)
            os.lseek(fd, start, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return FillFile(fd, start, file_identity(stat))

    def open_fill_file(self, image_id):
        """Open the file a fill of the image writes, or wrote: the partial
        file, else the complete entry it was committed to; None when there
        is neither. The caller closes the fd.

        :raises OSError: the file exists and cannot be opened
        """
        for partial in (True, False):
            try:
                return os.open(self.data_path(image_id, partial),
                               os.O_RDONLY)
            except FileNotFoundError:
                continue
        return None

    def is_current_fill_file(self, image_id, stat):
        """Whether the open file *stat* describes (os.fstat) is still the
        image's partial or complete file: a recorded outcome speaks of the
        fill of that file, not of a later one that started anew after it
        was discarded. Cost: one or two stat calls.
        """
        # Partial first: a commit renames it to the complete one.
        for partial in (True, False):
            try:
                named = os.stat(self.data_path(image_id, partial))
            except OSError:
                continue
            if file_identity(named) == file_identity(stat):
                return True
        return False

    def fill_outcome(self, image_id):
        """The outcome the image's last fill recorded (FILLING, VERIFIED,
        COMMITTED, UPSTREAM_FAILED, WRITE_FAILED, VERIFY_FAILED), or None.
        Readable after the filler died or gave up.

        :raises CacheError: the lock file cannot be created or opened
        """
        lock = self.lock(image_id, 'fill')
        try:
            return lock.read_outcome()
        finally:
            lock.close()

    # -- operator actions ----------------------------------------------------

    def set_pinned(self, image_id, pinned):
        """Pin or unpin an entry; False if the image is not in the cache."""
        if self.entry(image_id) is None:
            return False
        self.index.write(('UPDATE entries SET pinned = ? WHERE image_id = ?',
                          (1 if pinned else 0, image_id)))
        return True

    def evict(self, image_id, force_pinned=False):
        """Remove an entry now.

        :returns: 'evicted', 'absent', 'pinned' or 'busy' (being filled or
            read)
        """
        entry = self.entry(image_id)
        if entry is None:
            return 'absent'
        if entry.pinned and not force_pinned:
            return 'pinned'
        if not self._remove_if_idle(image_id, entry.state):
            return 'busy'
        self.index.write(('DELETE FROM entries WHERE image_id = ?',
                          (image_id,)),
                         *cache_index.Index.bump(evictions=int(self.counting)))
        return 'evicted'

    def verify(self, fix=False, chunk_size=4 * 1024 * 1024):
        """Re-hash complete entries against the record kept with them.

        Reports rather than raises. With *fix*, a bad entry is removed; an
        entry whose hash this Python cannot compute (md5 under FIPS, for an
        entry cached before FIPS was on) is reported as an Unchecked
        problem and kept: its size is checked, its bytes cannot be.
        Cost: reads every complete entry once.

        :returns: list of (image_id, problem or None)
        """
        report = []
        for entry in self.entries():
            if entry.state != 'complete':
                continue
            problem = self._check_entry(entry.image_id, chunk_size)
            report.append((entry.image_id, problem))
            if problem and fix and not isinstance(problem, Unchecked):
                self.evict(entry.image_id, force_pinned=True)
        return report

    def _check_entry(self, image_id, chunk_size):
        record = self.stored_record(image_id, partial=False)
        if record is None:
            return 'no record kept with the data'
        expected = expected_from_record(record)
        try:
            hasher = hashlib.new(expected.algo)
        except (ValueError, TypeError) as refused:
            try:
                size = os.stat(self.data_path(image_id)).st_size
            except OSError as e:
                return 'unreadable: %s' % e
            if size != expected.size:
                return 'size %d, expected %d' % (size, expected.size)
            return Unchecked('cannot hash %s here (%s): size checked only'
                             % (expected.algo, refused))
        size = 0
        try:
            with open(self.data_path(image_id), 'rb') as f:
                for block in iter(lambda: f.read(chunk_size), b''):
                    hasher.update(block)
                    size += len(block)
        except OSError as e:
            return 'unreadable: %s' % e
        if size != expected.size:
            return 'size %d, expected %d' % (size, expected.size)
        if hasher.hexdigest() != expected.digest:
            return '%s mismatch' % expected.algo
        return None

    def reconcile(self):
        """Make the index and the disk agree after a crash or restart.

        Complete rows without data are dropped; committed data without a row
        (a crash between rename and index update) is indexed again; idle
        partials whose files are gone lose their row; stray temporary files
        and unindexed partial files nobody fills are removed. Safe while
        other workers serve.

        :returns: list of the changes made, as text
        """
        changes = []
        indexed = {e.image_id: e for e in self.entries()}
        for image_id, entry in indexed.items():
            partial = entry.state == 'partial'
            if os.path.exists(self.data_path(image_id, partial)):
                continue
            if partial:
                fill = self.lock(image_id, 'fill')
                try:
                    if not fill.try_lock():
                        continue  # a fill is creating it right now
                    self.index.write(('DELETE FROM entries WHERE image_id = ? '
                                      'AND state = ?', (image_id, 'partial')))
                finally:
                    fill.close()
            else:
                self.index.write(('DELETE FROM entries WHERE image_id = ? AND '
                                  'state = ?', (image_id, 'complete')))
            changes.append('dropped index row of missing %s entry %s'
                           % (entry.state, image_id))
        for name in os.listdir(os.path.join(self.root, 'entries')):
            image_id, _, kind = name.partition('.')
            if kind != 'data' or image_id in indexed:
                continue
            record = self.stored_record(image_id, partial=False)
            size = os.stat(self.data_path(image_id)).st_size
            if record and record.get('size') == size:
                now = self._clock()
                self.index.write(('INSERT OR IGNORE INTO entries (image_id, '
                                  'state, size, last_access, created) VALUES '
                                  '(?, ?, ?, ?, ?)',
                                  (image_id, 'complete', size, now, now)))
                changes.append('indexed committed entry %s' % image_id)
            else:
                _unlink(self.data_path(image_id))
                _unlink(self.meta_path(image_id))
                changes.append('removed entry %s without a matching record'
                               % image_id)
        for sub in ('entries', 'partial'):
            for name in os.listdir(os.path.join(self.root, sub)):
                path = os.path.join(self.root, sub, name)
                image_id = name.partition('.')[0]
                if name.endswith('.tmp'):
                    _unlink(path)
                    changes.append('removed temporary file %s' % name)
                elif sub == 'partial' and image_id not in indexed:
                    fill = self.lock(image_id, 'fill')
                    try:
                        if fill.try_lock() and self.entry(image_id) is None:
                            _unlink(path)
                            changes.append('removed orphan %s' % name)
                    finally:
                        fill.close()
        return changes

    def stats(self):
        """Counters, sizes and entry counts, for ``glance-remote cache
        stats``.
        """
        entries = self.entries()
        stats = self.counters()
        stats.update({
            'max_size': self.max_size,
            'current_size': sum(e.size for e in entries),
            'complete_entries': sum(e.state == 'complete' for e in entries),
            'partial_entries': sum(e.state == 'partial' for e in entries),
            'pinned_entries': sum(bool(e.pinned) for e in entries),
        })
        return stats
